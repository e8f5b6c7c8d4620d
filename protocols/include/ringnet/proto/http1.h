// Http1Codec: the server side of HTTP/1.1 (RFC 9112). Bytes in, HttpRequest out.
//
//   Http1Codec codec;              // limits: Http1Options
//   HttpRequest req;               // reuse it: its storage is kept between calls
//   Decoded d = codec.decode(in, req);
//
// A request is one frame: head (request line + fields) and its whole body. Views in the
// request point into `in`, except the body of a chunked request with more than one chunk,
// which is decoded into storage owned by the request.
//
// Errors carry the status the server answers with (write_error_reply formats it):
//   400 malformed line, field or chunk framing; both Content-Length and Transfer-Encoding;
//       conflicting Content-Length; HTTP/1.1 without exactly one Host
//   413 body over max_body (seen from Content-Length or a chunk size, before the bytes)
//   414 request line over max_request_line     431 head over max_header_bytes/max_headers
//   417 Expect other than 100-continue         501 a transfer coding other than chunked
//   505 a version other than HTTP/1.0 and HTTP/1.1
//
// Line endings in the head may be CRLF or a bare LF (RFC 9112 section 2.2); a bare CR is
// always an error. Inside a chunked body (sizes, data ends, trailers) only CRLF is taken:
// leniency there is what request smuggling feeds on.
//
// decode is stateless: a head that arrives in pieces is scanned again on every call, which
// stays bounded because the head is at most max_header_bytes; a chunked body's framing is
// walked again too (its data is skipped by size), bounded by the framing budget below.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

struct Http1Options {
  size_t max_request_line = 8 * 1024;   // method SP target SP version, without CRLF -> 414
  size_t max_header_bytes = 16 * 1024;  // whole head incl. request line, plus trailers -> 431
  size_t max_headers = 100;             // header fields (and trailer fields) -> 431
  size_t max_body = 1024 * 1024;        // decoded body -> 413
  // A chunked body's framing (size lines, extensions, CRLFs, trailers) may take at most
  // max_header_bytes + max_body / 8 bytes (-> 413): it bounds how much a body sent in tiny
  // chunks costs to walk again on every arrival.
};

// Decoded::hint for a partial request whose head asked for "Expect: 100-continue": the
// head is complete and valid, the body has not fully arrived.
inline constexpr uint8_t kHttpHintContinue = 1;

// The largest error reply write_error_reply produces (status line, Server, Date,
// Content-Length, Connection).
inline constexpr size_t kHttpErrorReplyMax = 192;

struct HttpHeader {
  std::string_view name;
  std::string_view value;
};

// ASCII case-insensitive equality (header names, connection options, codings).
bool http_iequals(std::string_view a, std::string_view b);

// Header fields in arrival order. The first kInline live inside the object; a request with
// more moves them all to a vector (kept across reuse), so the fields are always contiguous.
class HttpHeaders {
 public:
  static constexpr size_t kInline = 24;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const HttpHeader* begin() const { return data(); }
  const HttpHeader* end() const { return data() + size_; }
  const HttpHeader& operator[](size_t i) const { return data()[i]; }

  // The first field named `name` (case-insensitive), or nullptr.
  const HttpHeader* find(std::string_view name) const;
  // How many fields are named `name` (case-insensitive).
  size_t count(std::string_view name) const;

  void clear() {
    size_ = 0;
    overflow_.clear();
  }
  void push_back(HttpHeader h);

 private:
  const HttpHeader* data() const { return overflow_.empty() ? inline_.data() : overflow_.data(); }

  std::array<HttpHeader, kInline> inline_{};
  std::vector<HttpHeader> overflow_;
  size_t size_ = 0;
};

enum class HttpVersion : uint8_t { k10, k11 };

// One request. Not copyable or movable: `body` may point into `chunked_storage`.
struct HttpRequest {
  std::string_view method;  // token, case-sensitive ("GET")
  std::string_view target;  // as sent: origin-, absolute-, authority- or asterisk-form
  std::string_view path;    // target up to '?'; for absolute-form the part after the
                            // authority (empty if none); "*" for asterisk-form
  std::string_view query;   // after the first '?' (without it); empty if none
  HttpVersion version = HttpVersion::k11;
  HttpHeaders headers;
  std::string_view body;
  uint64_t content_length = 0;  // Content-Length, or the decoded size of a chunked body
  bool chunked = false;         // Transfer-Encoding: chunked
  bool keep_alive = true;       // the connection may carry another request after this one
  bool expect_continue = false; // HTTP/1.1 with "Expect: 100-continue"
  std::string chunked_storage;  // decoded chunked body when it spans several chunks

  HttpRequest() = default;
  HttpRequest(const HttpRequest&) = delete;
  HttpRequest& operator=(const HttpRequest&) = delete;

  // Back to the empty state, keeping allocated storage.
  void reset();
};

// Formats the reply for a decode error (defined with the response writer): status line,
// Server, Date, Content-Length: 0, Connection: close. Status 0 is answered as 400.
std::string_view format_error_reply(int status, std::span<char, kHttpErrorReplyMax> buf);

class Http1Codec {
 public:
  using Frame = HttpRequest;

  Http1Codec() = default;
  explicit Http1Codec(Http1Options options) : options_(options) {}

  Decoded decode(std::string_view in, HttpRequest& request) const;

  // The complete answer to a decode error; the caller closes the connection after it.
  template <ByteSink S>
  Status write_error_reply(const ProtocolError& error, S& sink) const {
    std::array<char, kHttpErrorReplyMax> buf;
    return sink.write(format_error_reply(error.status, buf));
  }

  const Http1Options& options() const { return options_; }

 private:
  Http1Options options_;
};

}  // namespace ringnet::proto
