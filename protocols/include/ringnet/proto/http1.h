// SPDX-License-Identifier: MIT
/// @file
/// Http1Codec: the server side of HTTP/1.1 (RFC 9112). Bytes in, HttpRequest out.
///
///   Http1Codec codec;              // limits: Http1Options
///   HttpRequest req;               // reuse it: its storage is kept between calls
///   Decoded d = codec.decode(in, req);
///
/// A request is one frame: head (request line + fields) and its whole body. Views in the
/// request point into `in`, except the body of a chunked request with more than one chunk,
/// which is decoded into storage owned by the request.
///
/// Errors carry the status the server answers with (write_error_reply formats it):
///   400 malformed line, field or chunk framing; both Content-Length and Transfer-Encoding;
///       conflicting Content-Length; HTTP/1.1 without exactly one Host
///   413 body over max_body (seen from Content-Length or a chunk size, before the bytes)
///   414 request line over max_request_line     431 head over max_header_bytes/max_headers
///   417 Expect other than 100-continue         501 a transfer coding other than chunked
///   505 a version other than HTTP/1.0 and HTTP/1.1
///
/// Line endings in the head may be CRLF or a bare LF (RFC 9112 section 2.2); a bare CR is
/// always an error. Inside a chunked body (sizes, data ends, trailers) only CRLF is taken:
/// leniency there is what request smuggling feeds on.
///
/// A request that trickles in is not parsed again from its start on every arrival: with a
/// State (see codec.h) decode keeps the head lines parsed so far (as offsets), the framing
/// the head declared, and for a chunked body where the next chunk starts and the data
/// decoded so far. While a body's bytes are awaited, Decoded::need says how many.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/config.h"
#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Limits of Http1Codec; each names the status a request over it is answered with.
struct Http1Options {
  size_t max_request_line = 8 * 1024;   ///< method SP target SP version, without CRLF -> 414
  size_t max_header_bytes = 16 * 1024;  ///< whole head incl. request line, plus trailers -> 431
  size_t max_headers = 100;             ///< header fields (and trailer fields) -> 431
  size_t max_body = 1024 * 1024;        ///< decoded body -> 413
  // A chunked body's framing (size lines, extensions, CRLFs, trailers) may take at most
  // max_header_bytes + max_body / 8 bytes (-> 413): it bounds how much a body sent in tiny
  // chunks costs to walk again on every arrival.
};

/// Decoded::hint for a partial request whose head asked for "Expect: 100-continue": the
/// head is complete and valid, the body has not fully arrived.
inline constexpr uint8_t kHttpHintContinue = 1;

/// The largest error reply write_error_reply produces (status line, Server, Date,
/// Content-Length, Connection).
inline constexpr size_t kHttpErrorReplyMax = 192;

/// One header field as received.
/// Threads: a plain value; its views are valid while the decoded input is.
struct HttpHeader {
  std::string_view name;  ///< field name as sent (compare with http_iequals)
  std::string_view value;  ///< field value, without leading and trailing spaces or tabs
};

/// ASCII case-insensitive equality (header names, connection options, codings).
RINGNET_PROTO_EXPORT bool http_iequals(std::string_view a, std::string_view b);

/// Header fields in arrival order. The first kInline live inside the object; a request with
/// more moves them all to a vector (kept across reuse), so the fields are always contiguous.
/// Threads: not synchronised; used by the thread that decodes into its request.
class RINGNET_PROTO_EXPORT HttpHeaders {
 public:
  /// Fields stored inside the object before spilling to a vector.
  static constexpr size_t kInline = 24;

  /// Number of fields.
  size_t size() const { return size_; }
  /// True when there are no fields.
  bool empty() const { return size_ == 0; }
  /// First field, for range-for.
  const HttpHeader* begin() const { return data(); }
  /// Past the last field.
  const HttpHeader* end() const { return data() + size_; }
  /// Field `i` in arrival order; `i` < size().
  const HttpHeader& operator[](size_t i) const { return data()[i]; }

  /// The first field named `name` (case-insensitive), or nullptr.
  const HttpHeader* find(std::string_view name) const;
  /// How many fields are named `name` (case-insensitive).
  size_t count(std::string_view name) const;

  /// Removes every field, keeping allocated storage.
  void clear() {
    size_ = 0;
    overflow_.clear();
  }
  /// Appends `h`; past kInline fields all move to the vector.
  void push_back(HttpHeader h);

 private:
  const HttpHeader* data() const { return overflow_.empty() ? inline_.data() : overflow_.data(); }

  std::array<HttpHeader, kInline> inline_{};
  std::vector<HttpHeader> overflow_;
  size_t size_ = 0;
};

/// The request's HTTP version: k10 is HTTP/1.0, k11 is HTTP/1.1.
enum class HttpVersion : uint8_t { k10, k11 };

/// One request. Not copyable or movable: `body` may point into `chunked_storage`.
/// Threads: not synchronised; filled and read on the decoding connection's loop thread.
struct RINGNET_PROTO_EXPORT HttpRequest {
  std::string_view method;  ///< token, case-sensitive ("GET")
  std::string_view target;  ///< as sent: origin-, absolute-, authority- or asterisk-form
  std::string_view path;    ///< target up to '?'; for absolute-form the part after the
                            ///< authority (empty if none); "*" for asterisk-form
  std::string_view query;   ///< after the first '?' (without it); empty if none
  HttpVersion version = HttpVersion::k11;  ///< HTTP/1.0 or HTTP/1.1
  HttpHeaders headers;  ///< header fields in arrival order
  std::string_view body;  ///< the whole decoded body; empty if none
  uint64_t content_length = 0;  ///< Content-Length, or the decoded size of a chunked body
  bool chunked = false;         ///< Transfer-Encoding: chunked
  bool keep_alive = true;       ///< the connection may carry another request after this one
  bool expect_continue = false; ///< HTTP/1.1 with "Expect: 100-continue"
  std::string chunked_storage;  ///< decoded chunked body when it spans several chunks

  HttpRequest() = default;
  HttpRequest(const HttpRequest&) = delete;
  HttpRequest& operator=(const HttpRequest&) = delete;

  /// Back to the empty state, keeping allocated storage.
  void reset();
};

namespace detail {
/// A view kept as an offset from the front of the input, which may move between calls.
struct Http1Span {
  size_t offset = 0;
  size_t size = 0;
};
struct Http1FieldSpan {
  Http1Span name;
  Http1Span value;
};
/// Where the parse of a head stands.
struct Http1HeadScan {
  size_t pos = 0;        ///< the next line
  size_t scan = 0;       ///< a partial line at pos has no LF before this
  size_t checked = 0;    ///< a partial request line's method is checked up to here
  bool method_done = false;
  bool request_line_done = false;
};
/// Where the walk of a chunked body stands.
struct Http1ChunkWalk {
  size_t pos = 0;            ///< the next size line, chunk data or trailer line
  size_t scan = 0;           ///< a partial line at pos has no LF before this
  size_t framing = 0;        ///< size lines, extensions, CRLFs and trailers so far
  uint64_t size = 0;         ///< the chunk whose data starts at pos (when have_size)
  bool have_size = false;
  bool in_trailers = false;
  uint64_t data_size = 0;    ///< decoded body bytes so far
  size_t data_chunks = 0;    ///< chunks with data so far
  size_t first_data = 0;     ///< offset of the first chunk's data
  size_t trailer_bytes = 0;
  size_t trailers = 0;
};
/// A partial request, as Http1Codec keeps it between calls. Offsets are from the front of
/// the input.
struct RINGNET_PROTO_EXPORT Http1Partial {
  void reset();

  size_t resume = 0;          ///< bytes examined and kept (0: fresh, nothing kept)
  bool body_phase = false;    ///< the head is parsed and its framing applied
  /// The head: where its parse stands, and the lines parsed before that.
  Http1HeadScan head;
  Http1Span method, target, path, query;
  HttpVersion version = HttpVersion::k11;
  std::vector<Http1FieldSpan> fields;
  /// What the head declared (body phase).
  size_t head_size = 0;
  uint64_t content_length = 0;
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;
  Http1ChunkWalk walk;
  std::string body;           ///< a chunked body of several chunks, decoded so far
};
}  // namespace detail

/// One connection's partial request (see codec.h and the file comment).
/// Threads: belongs to one connection; used on that connection's loop thread only.
class Http1State {
 public:
  /// Bytes at the front of `in` already examined and kept (0: none).
  size_t resume_at() const { return partial_.resume; }

 private:
  friend class Http1Codec;
  detail::Http1Partial partial_;
};

/// Formats the reply for a decode error (defined with the response writer): status line,
/// Server, Date, Content-Length: 0, Connection: close. Status 0 is answered as 400.
RINGNET_PROTO_EXPORT std::string_view format_error_reply(int status,
                                                       std::span<char, kHttpErrorReplyMax> buf);

/// Codec for the server side of HTTP/1.1: bytes in, HttpRequest out (see the file comment).
/// Threads: decode and encode are const, so one codec object may be shared by every connection on
/// every loop; a State belongs to one connection and is used on that connection's loop thread.
class RINGNET_PROTO_EXPORT Http1Codec {
 public:
  using Frame = HttpRequest;  ///< see HttpRequest
  using State = Http1State;  ///< see Http1State

  Http1Codec() = default;
  /// A codec with the limits in `options`.
  explicit Http1Codec(Http1Options options) : options_(options) {}

  /// See codec.h. Errors carry the HTTP status to answer with (see the file comment).
  Decoded decode(std::string_view in, HttpRequest& request, State& state) const {
    return decode_from(in, request, &state.partial_);
  }
  /// decode() with a fresh State: parses `in` from its start.
  Decoded decode(std::string_view in, HttpRequest& request) const {
    return decode_from(in, request, nullptr);
  }

  /// The complete answer to a decode error; the caller closes the connection after it.
  template <ByteSink S>
  Status write_error_reply(const ProtocolError& error, S& sink) const {
    std::array<char, kHttpErrorReplyMax> buf;
    return sink.write(format_error_reply(error.status, buf));
  }

  /// The options this codec was built with.
  const Http1Options& options() const { return options_; }

 private:
  // `st` is null when no checkpoint is wanted (the two-argument decode).
  Decoded decode_from(std::string_view in, HttpRequest& req, detail::Http1Partial* st) const;

  Http1Options options_;
};

}  // namespace ringnet::proto
