// SPDX-License-Identifier: MIT
// libFuzzer target for Http1Codec. The first input byte picks the options, the rest is the
// byte stream:
//   bit 0   0: the defaults; 1: tight limits (request line 64, head 256, 4 fields, body
//           100), so the limit paths are reached by small inputs
// Requests are consumed until need-more or error. Checked for every frame: consumed within
// the input and > 0; every view lies inside the consumed bytes, except a chunked body,
// which lies in the request's own storage; the same frame comes back from exactly the
// consumed bytes; prefixes of those bytes never fail; re-encoding the request (request
// line, fields, body as one chunk or as Content-Length bytes) and decoding it gives the
// same request. Errors carry a non-empty reason and one of the statuses the codec answers.
#include <ringnet/proto/http1.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "resume_check.h"

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::Http1Codec;
using ringnet::proto::Http1Options;
using ringnet::proto::HttpHeader;
using ringnet::proto::HttpRequest;
using ringnet::proto::HttpVersion;

void check(bool ok) {
  if (!ok) std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

bool same_request(const HttpRequest& a, const HttpRequest& b) {
  if (a.method != b.method || a.target != b.target || a.path != b.path || a.query != b.query ||
      a.version != b.version || a.body != b.body || a.content_length != b.content_length ||
      a.chunked != b.chunked || a.keep_alive != b.keep_alive ||
      a.expect_continue != b.expect_continue || a.headers.size() != b.headers.size()) {
    return false;
  }
  for (size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

// The request in canonical form: CRLF lines, "name: value", the body as a single chunk.
std::string encode(const HttpRequest& r) {
  std::string out;
  out.append(r.method).append(" ").append(r.target);
  out.append(r.version == HttpVersion::k11 ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
  for (const HttpHeader& h : r.headers) out.append(h.name).append(": ").append(h.value).append("\r\n");
  out.append("\r\n");
  if (r.chunked) {
    if (!r.body.empty()) {
      char size[32];
      std::snprintf(size, sizeof size, "%zx\r\n", r.body.size());
      out.append(size).append(r.body).append("\r\n");
    }
    out.append("0\r\n\r\n");
  } else {
    out.append(r.body);
  }
  return out;
}

void check_frame(const Http1Codec& codec, std::string_view in, const Decoded& d,
                 const HttpRequest& req) {
  check(d.consumed > 0 && d.consumed <= in.size());
  std::string_view used = in.substr(0, d.consumed);
  for (std::string_view v : {req.method, req.target, req.path, req.query}) check(inside(v, used));
  check(!req.method.empty() && !req.target.empty());
  check(inside(req.path, req.target) && inside(req.query, req.target));
  for (const HttpHeader& h : req.headers) check(inside(h.name, used) && inside(h.value, used));
  check(inside(req.body, used) || (req.chunked && inside(req.body, req.chunked_storage)));
  check(req.body.size() == req.content_length && req.body.size() <= codec.options().max_body);
  check(req.headers.size() <= codec.options().max_headers);

  // The frame depends on the bytes it consumed and nothing after them.
  HttpRequest again;
  Decoded d2 = codec.decode(used, again);
  check(d2.kind == Decoded::kFrame && d2.consumed == d.consumed && same_request(req, again));
  // A prefix of good bytes is never an error.
  for (size_t cut = 0; cut < d.consumed; cut += (d.consumed <= 300 ? 1 : d.consumed / 97 + 1)) {
    HttpRequest part;
    check(codec.decode(used.substr(0, cut), part).kind == Decoded::kNeedMore);
  }
  // Re-encoded canonically (which may add a byte per field line) it decodes the same.
  Http1Options roomy = codec.options();
  roomy.max_header_bytes = roomy.max_header_bytes * 2 + 2 * req.headers.size() + 64;
  Http1Codec relaxed(roomy);
  std::string wire = encode(req);
  HttpRequest round;
  Decoded d3 = relaxed.decode(wire, round);
  check(d3.kind == Decoded::kFrame && d3.consumed == wire.size() && same_request(req, round));
}

void run(const Http1Codec& codec, std::string_view in) {
  HttpRequest req;
  while (!in.empty()) {
    Decoded d = codec.decode(in, req);
    if (d.kind == Decoded::kNeedMore) {
      check(d.consumed == 0);
      check(d.hint == 0 || d.hint == ringnet::proto::kHttpHintContinue);
      return;
    }
    if (d.kind == Decoded::kError) {
      check(d.error.reason != nullptr && d.error.reason[0] != '\0');
      int s = d.error.status;
      check(s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 501 || s == 505);
      return;
    }
    check_frame(codec, in, d, req);
    in.remove_prefix(d.consumed);
  }
}

Http1Options tight_options() {
  Http1Options o;
  o.max_request_line = 64;
  o.max_header_bytes = 256;
  o.max_headers = 4;
  o.max_body = 100;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const Http1Codec defaults;
  static const Http1Codec tight(tight_options());
  const Http1Codec& codec = (data[0] & 1) ? tight : defaults;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  run(codec, in);
  ringnet::fuzz::check_resume(codec, in, size, same_request);
  return 0;
}
