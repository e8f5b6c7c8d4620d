// HTTP/1.1 request parsing (RFC 9112, server side). See http1.h for the contract.
//
// One pass over the head, line by line: each complete line is checked as soon as it is
// here, so garbage is refused without waiting for the rest of the head. Then the framing
// fields are interpreted, then the body is measured (Content-Length) or walked (chunked).
#include "ringnet/proto/http1.h"

#include <array>
#include <cstring>
#include <limits>

namespace ringnet::proto {
namespace {

constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTchar = make_tchar_table();

constexpr std::array<unsigned char, 256> make_lower_table() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return t;
}
constexpr std::array<unsigned char, 256> kLower = make_lower_table();

bool is_tchar(char c) { return kTchar[static_cast<unsigned char>(c)]; }
// field-value bytes: VCHAR, SP, HT and obs-text; no other control byte, no DEL.
bool is_value_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}
// request-target bytes: visible ASCII (a URI has no spaces, controls or raw 8-bit bytes).
bool is_target_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f;
}
// Internal "no error" result of the parsing steps.
Decoded ok() { return Decoded::frame(0); }

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// A bad byte in the head: name a bare CR as such, it is the classic smuggling vector.
Decoded bad_byte(char c, const char* reason) {
  return Decoded::fail(c == '\r' ? "bare CR in request head" : reason, 400);
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

// One line of `in` starting at `begin`: content is [begin, end) without CR LF; the next
// line starts at `next`.
struct Line {
  size_t begin = 0;
  size_t end = 0;
  size_t next = 0;
  bool empty() const { return begin == end; }
  size_t size() const { return end - begin; }
};

// False when no LF follows `pos` in `in`. A line may end in CRLF or a bare LF.
bool find_line(std::string_view in, size_t pos, Line* line) {
  const void* lf = std::memchr(in.data() + pos, '\n', in.size() - pos);
  if (lf == nullptr) return false;
  size_t nl = static_cast<size_t>(static_cast<const char*>(lf) - in.data());
  size_t end = (nl > pos && in[nl - 1] == '\r') ? nl - 1 : nl;
  *line = {pos, end, nl + 1};
  return true;
}

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

// name ":" OWS value OWS. Used for header and trailer fields.
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

// The head has not ended within the bytes we have (or may look at). Fail if it can no
// longer fit the limits, or if the request line seen so far is already invalid.
Decoded head_incomplete(std::string_view in, std::string_view scan, size_t line_start,
                        bool in_request_line, const Http1Options& opt) {
  if (in_request_line) {
    std::string_view partial = scan.substr(line_start);
    if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);
    if (partial.size() > opt.max_request_line) return Decoded::fail("request line too long", 414);
    // Refuse non-HTTP bytes (a TLS hello, binary junk) now rather than after 16 KiB.
    for (char c : partial.substr(0, partial.find(' '))) {
      if (!is_tchar(c)) return bad_byte(c, "bad character in method");
    }
  }
  if (in.size() > opt.max_header_bytes) return Decoded::fail("request head too large", 431);
  return Decoded::need_more();
}

// Parses request line and fields. On success `*head_size` is the bytes through the empty
// line that ends the head.
Decoded parse_head(std::string_view in, const Http1Options& opt, HttpRequest& req,
                   size_t* head_size) {
  // The head must end within max_header_bytes: never look further.
  std::string_view scan = in.substr(0, opt.max_header_bytes);
  size_t pos = 0;
  Line line;
  // Empty lines before the request line are skipped (RFC 9112 section 2.2): some clients
  // send an extra CRLF after a body.
  for (;;) {
    if (!find_line(scan, pos, &line)) return head_incomplete(in, scan, pos, true, opt);
    if (!line.empty()) break;
    pos = line.next;
  }
  if (line.size() > opt.max_request_line) return Decoded::fail("request line too long", 414);
  Decoded d = parse_request_line(in.substr(line.begin, line.size()), req);
  if (d.kind == Decoded::kError) return d;
  pos = line.next;
  for (;;) {
    if (!find_line(scan, pos, &line)) return head_incomplete(in, scan, pos, false, opt);
    pos = line.next;
    if (line.empty()) break;
    if (req.headers.size() >= opt.max_headers) return Decoded::fail("too many header fields", 431);
    HttpHeader field;
    d = parse_field_line(in.substr(line.begin, line.size()), &field);
    if (d.kind == Decoded::kError) return d;
    req.headers.push_back(field);
  }
  *head_size = pos;
  return Decoded::frame(pos);
}

// ---- framing fields --------------------------------------------------------------------

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

// ---- chunked body ----------------------------------------------------------------------

struct ChunkLimits {
  uint64_t max_body = 0;
  size_t max_framing = 0;        // size lines, extensions, CRLFs, trailers
  size_t max_trailer_bytes = 0;  // what max_header_bytes leaves after the head
  size_t max_trailers = 0;       // what max_headers leaves after the header fields
};

struct ChunkWalk {
  Decoded result;            // kFrame: complete; kNeedMore; kError
  size_t wire_size = 0;      // bytes through the CRLF that ends the trailer section
  uint64_t data_size = 0;    // decoded body size
  size_t data_chunks = 0;    // chunks with data (size > 0)
  size_t first_data = 0;     // offset of the first chunk's data
};

// Parses "<hex>[ext]\r\n" at in[pos..]. On success *size holds the chunk size and *pos the
// start of its data.
Decoded parse_chunk_size_line(std::string_view in, size_t* pos, size_t* framing,
                              const ChunkLimits& lim, uint64_t* size) {
  size_t budget = lim.max_framing - *framing;
  std::string_view window = in.substr(*pos, budget);
  const void* lf = std::memchr(window.data(), '\n', window.size());
  if (lf == nullptr) {
    if (in.size() - *pos > budget) return Decoded::fail("chunk framing over limit", 413);
    return Decoded::need_more();
  }
  size_t nl = static_cast<size_t>(static_cast<const char*>(lf) - window.data());
  if (nl == 0 || window[nl - 1] != '\r') return Decoded::fail("chunk size line not ended by CRLF", 400);
  std::string_view line = window.substr(0, nl - 1);
  uint64_t n = 0;
  size_t i = 0;
  size_t significant = 0;
  for (; i < line.size(); ++i) {
    char c = line[i];
    uint64_t digit;
    if (c >= '0' && c <= '9') digit = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f') digit = static_cast<uint64_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') digit = static_cast<uint64_t>(c - 'A' + 10);
    else break;
    if (n != 0 || digit != 0) ++significant;
    if (significant > 16) return Decoded::fail("chunk size overflows", 400);
    n = (n << 4) | digit;
  }
  if (i == 0) return Decoded::fail("bad chunk size", 400);
  // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): skipped, bytes checked.
  while (i < line.size() && is_ows(line[i])) ++i;
  if (i < line.size()) {
    if (line[i] != ';') return Decoded::fail("bad chunk size", 400);
    for (; i < line.size(); ++i) {
      if (!is_value_char(line[i])) return Decoded::fail("bad character in chunk extension", 400);
    }
  }
  *framing += nl + 1;
  *pos += nl + 1;
  *size = n;
  return ok();
}

// Parses trailer fields up to the empty line; they are checked and dropped.
Decoded parse_trailers(std::string_view in, size_t* pos, size_t* framing,
                       const ChunkLimits& lim) {
  size_t trailer_bytes = 0;
  size_t trailers = 0;
  for (;;) {
    size_t budget = std::min(lim.max_framing - *framing, lim.max_trailer_bytes - trailer_bytes);
    std::string_view window = in.substr(*pos, budget);
    const void* lf = std::memchr(window.data(), '\n', window.size());
    if (lf == nullptr) {
      if (in.size() - *pos > budget) return Decoded::fail("trailer section too large", 431);
      return Decoded::need_more();
    }
    size_t nl = static_cast<size_t>(static_cast<const char*>(lf) - window.data());
    if (nl == 0 || window[nl - 1] != '\r') return Decoded::fail("trailer line not ended by CRLF", 400);
    *pos += nl + 1;
    *framing += nl + 1;
    trailer_bytes += nl + 1;
    if (nl == 1) return ok();  // the empty line
    if (++trailers > lim.max_trailers) return Decoded::fail("too many trailer fields", 431);
    HttpHeader ignored;
    Decoded d = parse_field_line(window.substr(0, nl - 1), &ignored);
    if (d.kind == Decoded::kError) return d;
  }
}

// Walks the chunked body at the front of `in`. With `out`, appends the data of each chunk
// (used once the whole body is known to be here and valid).
ChunkWalk walk_chunks(std::string_view in, const ChunkLimits& lim, std::string* out) {
  ChunkWalk w;
  size_t pos = 0;
  size_t framing = 0;
  for (;;) {
    uint64_t size = 0;
    Decoded d = parse_chunk_size_line(in, &pos, &framing, lim, &size);
    if (d.kind != Decoded::kFrame) {
      w.result = d;
      return w;
    }
    if (size == 0) break;
    if (size > lim.max_body - w.data_size) {
      w.result = Decoded::fail("chunked body over the body limit", 413);
      return w;
    }
    w.data_size += size;
    size_t avail = in.size() - pos;
    if (avail < size) return w;  // need more (the default result)
    if (w.data_chunks++ == 0) w.first_data = pos;
    if (out != nullptr) out->append(in.substr(pos, size));
    pos += size;
    avail -= size;
    if ((avail >= 1 && in[pos] != '\r') || (avail >= 2 && in[pos + 1] != '\n')) {
      w.result = Decoded::fail("chunk data not followed by CRLF", 400);
      return w;
    }
    if (avail < 2) return w;
    pos += 2;
    framing += 2;
    if (framing > lim.max_framing) {
      w.result = Decoded::fail("chunk framing over limit", 413);
      return w;
    }
  }
  Decoded d = parse_trailers(in, &pos, &framing, lim);
  if (d.kind != Decoded::kFrame) {
    w.result = d;
    return w;
  }
  w.wire_size = pos;
  w.result = Decoded::frame(pos);
  return w;
}

}  // namespace

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

Decoded Http1Codec::decode(std::string_view in, HttpRequest& req) const {
  req.reset();
  size_t head_size = 0;
  Decoded d = parse_head(in, options_, req, &head_size);
  if (d.kind != Decoded::kFrame) return d;
  d = apply_framing(req, options_);
  if (d.kind == Decoded::kError) return d;

  std::string_view rest = in.substr(head_size);
  uint8_t waiting_hint = req.expect_continue ? kHttpHintContinue : 0;
  if (!req.chunked) {
    if (rest.size() < req.content_length) return Decoded::need_more(waiting_hint);
    req.body = rest.substr(0, req.content_length);
    return Decoded::frame(head_size + req.content_length);
  }

  ChunkLimits lim;
  lim.max_body = options_.max_body;
  lim.max_framing = options_.max_header_bytes + options_.max_body / 8;
  lim.max_trailer_bytes = options_.max_header_bytes - std::min(head_size, options_.max_header_bytes);
  lim.max_trailers = options_.max_headers - std::min(req.headers.size(), options_.max_headers);
  ChunkWalk w = walk_chunks(rest, lim, nullptr);
  if (w.result.kind == Decoded::kError) return w.result;
  if (w.result.kind == Decoded::kNeedMore) return Decoded::need_more(waiting_hint);
  if (w.data_chunks == 1) {
    req.body = rest.substr(w.first_data, w.data_size);  // contiguous already: no copy
  } else if (w.data_chunks > 1) {
    req.chunked_storage.reserve(w.data_size);
    walk_chunks(rest, lim, &req.chunked_storage);
    req.body = req.chunked_storage;
  }
  req.content_length = w.data_size;
  return Decoded::frame(head_size + w.wire_size);
}

}  // namespace ringnet::proto
