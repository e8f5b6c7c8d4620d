// SPDX-License-Identifier: MIT
// HTTP/1.1 request parsing (RFC 9112, server side). See http1.h for the contract.
//
// One pass over the head, line by line: each complete line is checked as soon as it is
// here, so garbage is refused without waiting for the rest of the head. Then the framing
// fields are interpreted, then the body is measured (Content-Length) or walked (chunked,
// http1_chunked.cc). A State carries the pass from one call to the next.
#include "ringnet/proto/http1.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "http1_syntax.h"

namespace ringnet::proto {
namespace {

using namespace http1_syntax;

constexpr std::array<unsigned char, 256> make_lower_table() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return t;
}
constexpr std::array<unsigned char, 256> kLower = make_lower_table();

// request-target bytes: visible ASCII (a URI has no spaces, controls or raw 8-bit bytes).
bool is_target_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f;
}

// Calls fn(element) for each non-empty element of a comma-separated list, OWS trimmed.
// Stops early (returning false) when fn returns false.
template <typename Fn>
bool for_each_list_element(std::string_view list, Fn&& fn) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty() && !fn(element)) return false;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return true;
}

// ---- head ------------------------------------------------------------------------------

Decoded parse_version(std::string_view v, HttpVersion* version) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !digit(v[5]) || v[6] != '.' ||
      !digit(v[7])) {
    for (char c : v) {
      if (c == '\r') return bad_byte(c, "");
    }
    return Decoded::fail("malformed HTTP version", 400);
  }
  if (v[5] == '1' && v[7] == '1') {
    *version = HttpVersion::k11;
  } else if (v[5] == '1' && v[7] == '0') {
    *version = HttpVersion::k10;
  } else {
    return Decoded::fail("HTTP version not supported", 505);
  }
  return ok();
}

// Splits the target into path and query. Origin-form "/p?q"; absolute-form
// "http://host/p?q" (path after the authority); asterisk-form "*"; authority-form
// "host:port" (CONNECT) has neither.
void split_target(HttpRequest& req) {
  std::string_view t = req.target;
  size_t qmark = t.find('?');
  if (qmark != std::string_view::npos) req.query = t.substr(qmark + 1);
  std::string_view before_query = t.substr(0, qmark);
  if (t.front() == '/' || t == "*") {
    req.path = before_query;
    return;
  }
  size_t scheme_end = before_query.find("://");
  if (scheme_end == std::string_view::npos) return;  // authority-form
  size_t slash = before_query.find('/', scheme_end + 3);
  if (slash != std::string_view::npos) req.path = before_query.substr(slash);
}

Decoded parse_request_line(std::string_view line, HttpRequest& req) {
  size_t sp1 = line.find(' ');
  std::string_view method = line.substr(0, sp1);
  if (method.empty()) return Decoded::fail("empty method", 400);
  for (char c : method) {
    if (!is_tchar(c)) return bad_byte(c, "bad character in method");
  }
  if (sp1 == std::string_view::npos) return Decoded::fail("request line without target", 400);
  std::string_view rest = line.substr(sp1 + 1);
  size_t sp2 = rest.find(' ');
  std::string_view target = rest.substr(0, sp2);
  if (target.empty()) return Decoded::fail("empty request target", 400);
  for (char c : target) {
    if (!is_target_char(c)) return bad_byte(c, "bad character in request target");
  }
  if (sp2 == std::string_view::npos) return Decoded::fail("request line without version", 400);
  Decoded v = parse_version(rest.substr(sp2 + 1), &req.version);
  if (v.kind == Decoded::kError) return v;
  req.method = method;
  req.target = target;
  split_target(req);
  return ok();
}


// The head has not ended within the bytes we have (or may look at). Fail if it can no
// longer fit the limits, or if the request line seen so far is already invalid. Method
// bytes before cur.checked were judged by an earlier call.
Decoded head_incomplete(std::string_view in, std::string_view scan, detail::Http1HeadScan& cur,
                        const Http1Options& opt) {
  if (!cur.request_line_done) {
    std::string_view partial = scan.substr(cur.pos);
    // A last CR may be a CRLF cut short: judged once the next byte is here.
    if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);
    if (partial.size() > opt.max_request_line) return Decoded::fail("request line too long", 414);
    // Refuse non-HTTP bytes (a TLS hello, binary junk) now rather than after 16 KiB.
    const size_t end = cur.pos + partial.size();
    for (size_t i = std::max(cur.checked, cur.pos); !cur.method_done && i < end; ++i) {
      if (scan[i] == ' ') {
        cur.method_done = true;
      } else if (!is_tchar(scan[i])) {
        return bad_byte(scan[i], "bad character in method");
      }
    }
    cur.checked = end;
  }
  if (in.size() > opt.max_header_bytes) return Decoded::fail("request head too large", 431);
  return Decoded::need_more();
}

// ---- framing fields (RFC 9112 section 6) ----------------------------------------------

// What the head says about the body and the connection.
struct Framing {
  size_t host_fields = 0;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool content_length_too_big = false;
  bool has_transfer_encoding = false;
  bool chunked_seen = false;
  bool chunked_twice = false;
  bool chunked_last = false;
  bool other_coding = false;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool expect_continue = false;
};

// One Content-Length field: a comma list of decimals that must all be equal, and equal to
// any earlier field. Values too big for uint64 are kept as "too big" (answered 413).
Decoded add_content_length(std::string_view value, Framing& f) {
  bool any = false;
  bool valid = for_each_list_element(value, [&](std::string_view element) {
    uint64_t n = 0;
    bool too_big = false;
    for (char c : element) {
      if (c < '0' || c > '9') return false;
      auto digit = static_cast<uint64_t>(c - '0');
      if (n > (std::numeric_limits<uint64_t>::max() - digit) / 10) too_big = true;
      if (!too_big) n = n * 10 + digit;
    }
    if (f.has_content_length &&
        (too_big != f.content_length_too_big || (!too_big && n != f.content_length))) {
      return false;
    }
    f.has_content_length = true;
    f.content_length = n;
    f.content_length_too_big = too_big;
    any = true;
    return true;
  });
  if (!valid || !any) return Decoded::fail("bad or conflicting Content-Length", 400);
  return ok();
}

void add_transfer_encoding(std::string_view value, Framing& f) {
  f.has_transfer_encoding = true;
  for_each_list_element(value, [&](std::string_view coding) {
    if (http_iequals(coding, "chunked")) {
      if (f.chunked_seen) f.chunked_twice = true;
      f.chunked_seen = true;
      f.chunked_last = true;
    } else {
      f.other_coding = true;
      f.chunked_last = false;
    }
    return true;
  });
}

void add_connection(std::string_view value, Framing& f) {
  for_each_list_element(value, [&](std::string_view option) {
    if (http_iequals(option, "close")) f.connection_close = true;
    if (http_iequals(option, "keep-alive")) f.connection_keep_alive = true;
    return true;
  });
}

// Reads the fields that frame the message, then applies RFC 9112 section 6 to decide how
// the body is delimited. Fills content_length, chunked, keep_alive, expect_continue.
Decoded apply_framing(HttpRequest& req, const Http1Options& opt) {
  Framing f;
  for (const HttpHeader& h : req.headers) {
    switch (h.name.size()) {
      case 4:
        if (http_iequals(h.name, "host")) ++f.host_fields;
        break;
      case 6:
        if (http_iequals(h.name, "expect")) {
          if (!http_iequals(h.value, "100-continue")) {
            return Decoded::fail("unsupported expectation", 417);
          }
          f.expect_continue = true;
        }
        break;
      case 10:
        if (http_iequals(h.name, "connection")) add_connection(h.value, f);
        break;
      case 14:
        if (http_iequals(h.name, "content-length")) {
          Decoded d = add_content_length(h.value, f);
          if (d.kind == Decoded::kError) return d;
        }
        break;
      case 17:
        if (http_iequals(h.name, "transfer-encoding")) add_transfer_encoding(h.value, f);
        break;
      default:
        break;
    }
  }
  bool v11 = req.version == HttpVersion::k11;
  if (v11 && f.host_fields != 1) return Decoded::fail("HTTP/1.1 request without exactly one Host", 400);
  if (f.has_transfer_encoding) {
    if (!v11) return Decoded::fail("Transfer-Encoding in an HTTP/1.0 request", 400);
    if (f.has_content_length) return Decoded::fail("both Content-Length and Transfer-Encoding", 400);
    // RFC 9112 section 6.3: without chunked as the final coding (once) the body length
    // cannot be known.
    if (!f.chunked_last || f.chunked_twice) {
      return Decoded::fail("chunked is not the final transfer coding", 400);
    }
    if (f.other_coding) return Decoded::fail("unsupported transfer coding", 501);
    req.chunked = true;
  }
  if (f.content_length_too_big || f.content_length > opt.max_body) {
    return Decoded::fail("Content-Length over the body limit", 413);
  }
  req.content_length = f.content_length;
  req.keep_alive = v11 ? !f.connection_close : (f.connection_keep_alive && !f.connection_close);
  // RFC 9110 section 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
  req.expect_continue = v11 && f.expect_continue;
  return ok();
}

// ---- pieces of the resumable decode ---------------------------------------------------

// What a chunked body may use, given the head it follows.
ChunkLimits chunk_limits(const Http1Options& opt, size_t head_size, size_t fields) {
  ChunkLimits lim;
  lim.max_body = opt.max_body;
  lim.max_framing = opt.max_header_bytes + opt.max_body / 8;
  lim.max_trailer_bytes = opt.max_header_bytes - std::min(head_size, opt.max_header_bytes);
  lim.max_trailers = opt.max_headers - std::min(fields, opt.max_headers);
  return lim;
}

// The next complete line at cur.pos (without its CRLF or bare LF), moving cur past it;
// false when its LF is not here yet (cur.scan: no LF before it).
bool next_line(std::string_view in, std::string_view scan, detail::Http1HeadScan& cur,
               std::string_view* line) {
  const size_t nl = find_lf(scan, std::max(cur.pos, cur.scan));
  if (nl == std::string_view::npos) return false;
  const size_t end = (nl > cur.pos && in[nl - 1] == '\r') ? nl - 1 : nl;
  *line = in.substr(cur.pos, end - cur.pos);
  cur.pos = cur.scan = nl + 1;
  return true;
}

detail::Http1Span span_of(std::string_view in, std::string_view v) {
  if (v.empty()) return {};
  return {static_cast<size_t>(v.data() - in.data()), v.size()};
}

std::string_view view_of(std::string_view in, detail::Http1Span s) {
  return in.substr(s.offset, s.size);
}

}  // namespace

namespace http1_syntax {

// name ":" OWS value OWS.
Decoded parse_field_line(std::string_view line, HttpHeader* field) {
  if (is_ows(line.front())) {
    return Decoded::fail("line folding (obs-fold) or whitespace before a field name", 400);
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return Decoded::fail("field line without colon", 400);
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return Decoded::fail("empty field name", 400);
  for (char c : name) {
    if (is_ows(c)) return Decoded::fail("whitespace before colon in field line", 400);
    if (!is_tchar(c)) return bad_byte(c, "bad character in field name");
  }
  std::string_view value = trim_ows(line.substr(colon + 1));
  for (char c : value) {
    if (!is_value_char(c)) return bad_byte(c, "bad character in field value");
  }
  *field = {name, value};
  return ok();
}

}  // namespace http1_syntax

// ---- public ----------------------------------------------------------------------------

bool http_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<unsigned char>(a[i])] != kLower[static_cast<unsigned char>(b[i])]) {
      return false;
    }
  }
  return true;
}

const HttpHeader* HttpHeaders::find(std::string_view name) const {
  for (const HttpHeader& h : *this) {
    if (http_iequals(h.name, name)) return &h;
  }
  return nullptr;
}

size_t HttpHeaders::count(std::string_view name) const {
  size_t n = 0;
  for (const HttpHeader& h : *this) n += http_iequals(h.name, name) ? 1 : 0;
  return n;
}

void HttpHeaders::push_back(HttpHeader h) {
  if (size_ < kInline) {
    inline_[size_++] = h;
    return;
  }
  // Keep the fields contiguous: the first overflow moves the inline ones over.
  if (overflow_.empty()) overflow_.assign(inline_.begin(), inline_.end());
  overflow_.push_back(h);
  ++size_;
}

void HttpRequest::reset() {
  method = target = path = query = body = {};
  version = HttpVersion::k11;
  headers.clear();
  content_length = 0;
  chunked = false;
  keep_alive = true;
  expect_continue = false;
  chunked_storage.clear();
}

void detail::Http1Partial::reset() {
  resume = 0;
  body_phase = false;
  head = {};
  fields.clear();
  head_size = 0;
  walk = {};
  body.clear();
}

// ---- decoding, resumable ---------------------------------------------------------------
//
// `st` is null for a decode without a checkpoint. A fresh state (resume == 0) is only
// written when a checkpoint is taken, so whole requests never touch it. Results are
// returned in place or rebuilt, never copied whole: copying a Decoded the callee just
// wrote stalls on store forwarding (BM_HttpDecodeWrkGet: +20%).

namespace {

using detail::Http1Partial;

// The request line (once parsed) and the fields of `req` as offsets, after those in st.
void save_head(std::string_view in, const HttpRequest& req, Http1Partial& st) {
  if (!req.method.empty()) {
    st.method = span_of(in, req.method);
    st.target = span_of(in, req.target);
    st.path = span_of(in, req.path);
    st.query = span_of(in, req.query);
    st.version = req.version;
  }
  for (const HttpHeader& h : req.headers) {
    st.fields.push_back({span_of(in, h.name), span_of(in, h.value)});
  }
}

void load_head(std::string_view in, const Http1Partial& st, HttpRequest& req) {
  req.method = view_of(in, st.method);
  req.target = view_of(in, st.target);
  req.path = view_of(in, st.path);
  req.query = view_of(in, st.query);
  req.version = st.version;
  req.headers.clear();
  for (const detail::Http1FieldSpan& f : st.fields) {
    req.headers.push_back({view_of(in, f.name), view_of(in, f.value)});
  }
}

void load_framing(const Http1Partial& st, HttpRequest& req) {
  req.content_length = st.content_length;
  req.chunked = st.chunked;
  req.keep_alive = st.keep_alive;
  req.expect_continue = st.expect_continue;
}

// The head has no complete line at cur.pos yet: refuse it if it can no longer become valid,
// else checkpoint it when there is a state and it is kept already or worth it.
Decoded pause_head(std::string_view in, std::string_view scan, const HttpRequest& req,
                   Http1Partial* st, detail::Http1HeadScan cur, const Http1Options& opt) {
  Decoded d = head_incomplete(in, scan, cur, opt);
  if (d.kind == Decoded::kError || st == nullptr) return d;
  const bool kept = st->resume != 0;
  if (!kept && scan.size() < kCheckpointMin) return d;  // cheaper to start over
  if (!kept) save_head(in, req, *st);
  cur.scan = scan.size();
  st->head = cur;
  st->resume = scan.size();
  return d;
}

// Request line and fields. A resumed head starts at the line where the last call stopped
// and collects offsets into st; a fresh one fills `req`. On success the head is in `req`
// either way, and kFrame says how many bytes it took.
Decoded parse_head(std::string_view in, HttpRequest& req, Http1Partial* st,
                   const Http1Options& opt) {
  // The head must end within max_header_bytes: never look further.
  const std::string_view scan = in.substr(0, opt.max_header_bytes);
  Http1Partial* resumed = st != nullptr && st->resume != 0 ? st : nullptr;
  detail::Http1HeadScan cur = resumed != nullptr ? st->head : detail::Http1HeadScan{};
  std::string_view line;
  if (!cur.request_line_done) {
    // Empty lines before the request line are skipped (RFC 9112 section 2.2): some
    // clients send an extra CRLF after a body.
    do {
      if (!next_line(in, scan, cur, &line)) return pause_head(in, scan, req, st, cur, opt);
    } while (line.empty());
    if (line.size() > opt.max_request_line) return Decoded::fail("request line too long", 414);
    Decoded d = parse_request_line(line, req);
    if (d.kind == Decoded::kError) return d;
    cur.request_line_done = true;
    if (resumed != nullptr) save_head(in, req, *resumed);  // the request line: no fields yet
  }
  for (;;) {
    if (!next_line(in, scan, cur, &line)) return pause_head(in, scan, req, st, cur, opt);
    if (line.empty()) break;
    const size_t fields = resumed != nullptr ? resumed->fields.size() : req.headers.size();
    if (fields >= opt.max_headers) return Decoded::fail("too many header fields", 431);
    HttpHeader field;
    Decoded d = parse_field_line(line, &field);
    if (d.kind == Decoded::kError) return d;
    if (resumed != nullptr) {
      resumed->fields.push_back({span_of(in, field.name), span_of(in, field.value)});
    } else {
      req.headers.push_back(field);
    }
  }
  if (resumed != nullptr) load_head(in, *resumed, req);
  return Decoded::frame(cur.pos);
}

// A partial body, examined up to `at`. Keep a checkpoint when one is kept already or it
// is worth it (kCheckpointMin); otherwise the state stays fresh, and the next call starts
// over. A chunked walk to keep is in st->walk already.
Decoded pause_body(std::string_view in, HttpRequest& req, Http1Partial* st, size_t head_size,
                   size_t at, uint8_t hint, size_t need) {
  if (st == nullptr) return Decoded::need_more(hint, need);
  const bool head_kept = st->resume != 0;  // kept before this call: the head is in st
  if (!head_kept && at < kCheckpointMin) return Decoded::need_more(hint, need);
  if (!st->body_phase) {
    if (!head_kept) save_head(in, req, *st);
    st->head_size = head_size;
    st->content_length = req.content_length;
    st->chunked = req.chunked;
    st->keep_alive = req.keep_alive;
    st->expect_continue = req.expect_continue;
    st->body_phase = true;
    if (req.chunked) st->body.swap(req.chunked_storage);  // the chunks decoded so far
  }
  st->resume = at;
  return Decoded::need_more(hint, need);
}

Decoded decode_chunked(std::string_view in, HttpRequest& req, Http1Partial* st,
                       size_t head_size, const Http1Options& opt) {
  Http1Partial* resumed = st != nullptr && st->body_phase ? st : nullptr;
  detail::Http1ChunkWalk fresh{.pos = head_size, .scan = head_size};
  detail::Http1ChunkWalk& walk = resumed != nullptr ? resumed->walk : fresh;
  // A body of several chunks is decoded into the request, or into the state while it is
  // kept (pause_body moves it there).
  std::string& body = resumed != nullptr ? resumed->body : req.chunked_storage;
  const size_t fields = resumed != nullptr ? resumed->fields.size() : req.headers.size();
  Decoded d = walk_chunks(in, chunk_limits(opt, head_size, fields), walk, body);
  if (d.kind == Decoded::kError) {
    if (st != nullptr) st->reset();
    return Decoded::fail(d.error.reason, d.error.status);
  }
  if (d.kind == Decoded::kNeedMore) {
    if (resumed == nullptr && st != nullptr) st->walk = walk;  // in case it is kept
    const uint8_t hint = req.expect_continue ? kHttpHintContinue : 0;
    return pause_body(in, req, st, head_size, std::max(walk.pos, walk.scan), hint, d.need);
  }
  if (walk.data_chunks == 1) {
    req.body = in.substr(walk.first_data, walk.data_size);  // contiguous already: no copy
  } else if (walk.data_chunks > 1) {
    if (resumed != nullptr) req.chunked_storage.swap(resumed->body);
    req.body = req.chunked_storage;
  }
  req.content_length = walk.data_size;
  const size_t end = walk.pos;
  if (resumed != nullptr) load_head(in, *resumed, req);
  if (st != nullptr && st->resume != 0) st->reset();
  return Decoded::frame(end);
}

// The body after a head of `head_size` bytes, measured (Content-Length) or walked
// (chunked). In the body phase the head lives in `st`, not in `req`, and goes to `req`
// once the request is complete.
Decoded decode_body(std::string_view in, HttpRequest& req, Http1Partial* st,
                    size_t head_size, const Http1Options& opt) {
  const Http1Partial* resumed = st != nullptr && st->body_phase ? st : nullptr;
  if (resumed != nullptr) load_framing(*resumed, req);
  if (req.chunked) return decode_chunked(in, req, st, head_size, opt);
  const size_t end = head_size + req.content_length;
  if (in.size() < end) {
    const uint8_t hint = req.expect_continue ? kHttpHintContinue : 0;
    return pause_body(in, req, st, head_size, head_size, hint, end);
  }
  req.body = in.substr(head_size, req.content_length);
  if (resumed != nullptr) load_head(in, *resumed, req);
  if (st != nullptr && st->resume != 0) st->reset();
  return Decoded::frame(end);
}

}  // namespace

Decoded Http1Codec::decode_from(std::string_view in, HttpRequest& req,
                                Http1Partial* st) const {
  req.reset();
  if (st != nullptr && st->body_phase) return decode_body(in, req, st, st->head_size, options_);
  const Decoded head = parse_head(in, req, st, options_);
  if (head.kind == Decoded::kNeedMore) return Decoded::need_more();
  ProtocolError error = head.error;
  if (head.kind == Decoded::kFrame) {
    const Decoded framing = apply_framing(req, options_);
    if (framing.kind == Decoded::kFrame) {
      // The common case, a whole request with no body or a Content-Length one, is done
      // here rather than through decode_body: measured, the call costs ~5% of a GET.
      const size_t end = head.consumed + req.content_length;
      const bool kept = st != nullptr && st->resume != 0;
      if (req.chunked || in.size() < end || kept) {
        return decode_body(in, req, st, head.consumed, options_);
      }
      req.body = in.substr(head.consumed, req.content_length);
      return Decoded::frame(end);
    }
    error = framing.error;
  }
  if (st != nullptr) st->reset();
  return Decoded::fail(error.reason, error.status);
}

}  // namespace ringnet::proto
