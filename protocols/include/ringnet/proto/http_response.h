// SPDX-License-Identifier: MIT
/// @file
/// Writing HTTP/1.1 responses: reason phrases, the Date header value (cached per thread,
/// re-formatted once a second), and a writer that puts a whole small response into one
/// sink.write.
///
///   write_response(conn, 200, "text/plain", "Hello, World!", req.keep_alive);
///   write_response(conn, 405, "", "", true, {{"Allow", "GET, HEAD"}});
///   respond(conn, req, 200, "text/plain", body);   // HEAD and HTTP/1.0 keep-alive handled
///
/// Every response carries Server: ringnet, Date, Content-Type (when not empty),
/// Content-Length (except 1xx and 204) and Connection: close when !keep_alive. Extra field
/// names and values are written as given: they must not contain CR or LF.
///
/// Thread-safety: every function here may be called from any thread (the Date cache is
/// per thread).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/proto/codec.h"
#include "ringnet/proto/http1.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// "Sun, 06 Nov 1994 08:49:37 GMT" (IMF-fixdate, RFC 9110 section 5.6.7).
inline constexpr size_t kHttpDateLength = 29;

/// The reason phrase of a status code ("Not Found"), or "" for codes without one here.
RINGNET_PROTO_EXPORT std::string_view http_reason_phrase(int status);

/// Formats `unix_seconds` (UTC) as IMF-fixdate into out[0..29). Years 0..9999.
RINGNET_PROTO_EXPORT void format_http_date(int64_t unix_seconds, char* out);

/// The current time as IMF-fixdate. Cached per thread and re-formatted only when the second
/// changes (CLOCK_REALTIME_COARSE, a vDSO read). The view stays valid on this thread; its
/// text changes when the second does.
RINGNET_PROTO_EXPORT std::string_view http_date();

/// Formats a response head (status line, fields, empty line) into buf[0..cap). Returns its
/// size; when that is more than cap, nothing useful was written and the caller retries with
/// a buffer of that size. Status codes outside 100..999 are sent as 500. Content-Length is
/// left out for 1xx and 204 (RFC 9110 section 8.6 forbids it there).
RINGNET_PROTO_EXPORT size_t format_response_head(char* buf, size_t cap, int status,
                                                 std::string_view content_type,
                                                 uint64_t content_length, bool keep_alive,
                                                 std::span<const HttpHeader> extra);

namespace detail {

/// Responses whose head and body fit here go out in one write without a heap allocation.
inline constexpr size_t kResponseStackBytes = 4096;

/// Head for `content_length` bytes, then `body` (empty for HEAD responses).
template <ByteSink S>
Status write_head_and_body(S& sink, int status, std::string_view content_type,
                           uint64_t content_length, std::string_view body, bool keep_alive,
                           std::span<const HttpHeader> extra) {
  char buf[kResponseStackBytes];
  size_t head = format_response_head(buf, sizeof buf, status, content_type, content_length,
                                     keep_alive, extra);
  if (head <= sizeof buf) {
    if (body.size() <= sizeof buf - head) {
      if (!body.empty()) std::memcpy(buf + head, body.data(), body.size());
      return sink.write(std::string_view(buf, head + body.size()));
    }
    return write_parts(sink, std::string_view(buf, head), body);
  }
  // Very large extra fields: format on the heap.
  std::string big(head, '\0');
  format_response_head(big.data(), big.size(), status, content_type, content_length, keep_alive,
                       extra);
  return write_parts(sink, big, body);
}

}  // namespace detail

/// A complete response with `body`. Small responses are exactly one sink.write; larger ones
/// one writev where the sink has it (Conn does), else two writes.
template <ByteSink S>
Status write_response(S& sink, int status, std::string_view content_type, std::string_view body,
                      bool keep_alive, std::initializer_list<HttpHeader> extra = {}) {
  return detail::write_head_and_body(sink, status, content_type, body.size(), body, keep_alive,
                                     std::span<const HttpHeader>(extra.begin(), extra.size()));
}

/// The head alone, announcing `content_length` bytes that are not sent (the answer to HEAD).
template <ByteSink S>
Status write_response_head(S& sink, int status, std::string_view content_type,
                           uint64_t content_length, bool keep_alive,
                           std::initializer_list<HttpHeader> extra = {}) {
  return detail::write_head_and_body(sink, status, content_type, content_length, {}, keep_alive,
                                     std::span<const HttpHeader>(extra.begin(), extra.size()));
}

/// The answer to `req`: keep-alive as the request allows, "Connection: keep-alive" for an
/// HTTP/1.0 client that asked for it (1.0 closes by default), headers only for HEAD. While
/// the engine drains (Conn::draining(), on a Conn sink) the answer says "Connection: close".
template <ByteSink S>
Status respond(S& sink, const HttpRequest& req, int status, std::string_view content_type,
               std::string_view body, std::initializer_list<HttpHeader> extra = {}) {
  std::string_view sent_body = req.method == "HEAD" ? std::string_view() : body;
  std::span<const HttpHeader> fields(extra.begin(), extra.size());
  HttpHeader with_keep_alive[16];
  bool keep_alive = req.keep_alive;
  if constexpr (requires { sink.draining(); }) keep_alive = keep_alive && !sink.draining();
  if (keep_alive && req.version == HttpVersion::k10) {
    if (extra.size() >= std::size(with_keep_alive)) {
      return Status::invalid("respond: too many extra header fields");
    }
    with_keep_alive[0] = {"Connection", "keep-alive"};
    std::copy(extra.begin(), extra.end(), with_keep_alive + 1);
    fields = std::span<const HttpHeader>(with_keep_alive, extra.size() + 1);
  }
  return detail::write_head_and_body(sink, status, content_type, body.size(), sent_body,
                                     keep_alive, fields);
}

}  // namespace ringnet::proto
