// SPDX-License-Identifier: MIT
/// @file
/// HttpServerHandler: an HTTP/1.1 server on the engine. The application answers requests:
///
///   struct Hello : ringnet::proto::HttpServerHandler {
///     ringnet::Action on_request(ringnet::Conn& c, const ringnet::proto::HttpRequest& req) override {
///       return respond(c, req, 200, "text/plain", "hi").is_ok() ? ringnet::Action::kNone
///                                                              : ringnet::Action::kClose;
///     }
///   };
///
/// What the adapter does around on_request:
///   - requests are delivered in arrival order, so pipelined requests are answered in order
///     as long as on_request writes its response before returning;
///   - "HTTP/1.1 100 Continue" goes out once per request whose head carried
///     "Expect: 100-continue" and whose body has not arrived yet (a request too large is
///     answered 413 by the codec instead);
///   - after a request that does not keep the connection alive (HTTP/1.0 without
///     keep-alive, "Connection: close") the connection is closed once the response is
///     flushed, and bytes after that request are ignored;
///   - malformed requests are answered with their 4xx/5xx status and the connection closes
///     (FramedHandler::on_protocol_error).
/// Threading is EventHandler's: on_request runs on the connection's loop thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/proto/framed_handler.h"
#include "ringnet/proto/http1.h"
#include "ringnet/proto/http_response.h"

namespace ringnet::proto {

/// An HTTP/1.1 server handler: subclass it and implement on_request (see the file comment).
/// Threads: EventHandler's; on_request and the other callbacks run on the connection's loop thread.
class RINGNET_PROTO_EXPORT HttpServerHandler : public FramedHandler<Http1Codec> {
 public:
  /// The bit of Conn::codec_word() that says "100 Continue sent for the current request".
  static constexpr uint32_t kContinueSent = 1u;

  /// A handler whose Http1Codec uses `options` (limits, see Http1Options).
  explicit HttpServerHandler(Http1Options options = {})
      : FramedHandler<Http1Codec>(Http1Codec(options)) {}

  /// One complete request; its views are valid until this returns. Write the response to
  /// `conn` before returning. kClose closes after the queued output is flushed.
  virtual Action on_request(Conn& conn, const HttpRequest& request) = 0;

  /// Calls on_request, then keeps the connection only if the request is keep-alive and the engine
  /// is not draining.
  Action on_message(Conn& conn, const HttpRequest& request) final {
    Action action = on_request(conn, request);
    conn.set_codec_word(conn.codec_word() & ~kContinueSent);  // the next request starts fresh
    if (action != Action::kNone) return action;
    // Draining (Engine::shutdown): no more keep-alive; respond() said "Connection: close".
    return request.keep_alive && !conn.draining() ? Action::kNone : Action::kClose;
  }

  Action on_need_more(Conn& conn, uint8_t hint) override {
    if (hint != kHttpHintContinue || (conn.codec_word() & kContinueSent) != 0) {
      return Action::kNone;
    }
    conn.set_codec_word(conn.codec_word() | kContinueSent);
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    return conn.write(kContinue).is_ok() ? Action::kNone : Action::kClose;
  }
};

}  // namespace ringnet::proto
