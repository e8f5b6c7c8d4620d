// SPDX-License-Identifier: MIT
/// @file
/// FramedHandler<Codec>: plugs a codec into the engine. The application implements
/// on_message(conn, frame) and never sees bytes:
///
///   struct Lines : ringnet::proto::FramedHandler<ringnet::proto::DelimiterCodec> {
///     ringnet::Action on_message(ringnet::Conn& c, const std::string_view& line) override {
///       return codec().encode(line, c).is_ok() ? ringnet::Action::kNone : ringnet::Action::kClose;
///     }
///   };
///
/// Every complete frame in the inbound bytes is delivered in order; a partial frame waits,
/// unconsumed, for more bytes, and is not decoded again from its start on every arrival
/// (read_frames in frame_reader.h; it uses the connection's protocol_state() slot, which
/// belongs to this adapter). A protocol error is logged (rate-limited), counted, answered
/// where the codec has an answer (write_error_reply: HTTP 400/413/431, RESP -ERR) and
/// closes that connection only; the engine and the other connections go on.
#pragma once

#include <string>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/log.h"
#include "ringnet/metrics.h"
#include "ringnet/proto/codec.h"
#include "ringnet/proto/frame_reader.h"
#include "ringnet/proto/loop_counter.h"

namespace ringnet::proto {

template <Codec C>
/// An EventHandler that decodes inbound bytes with codec `C` and delivers frames to on_message (see
/// the file comment).
/// Threads: the callbacks run on the connection's loop thread, as for any EventHandler; the
/// counters (frames_decoded() ... bytes_examined(), write_metrics()) may be read from any thread;
/// codec() is const and shared by every loop.
class FramedHandler : public EventHandler {
 public:
  using Frame = typename C::Frame;  ///< the codec's decoded frame type

  /// A handler that decodes with `codec`.
  explicit FramedHandler(C codec = C{}) : codec_(std::move(codec)) {}

  /// A complete frame; its views are valid until this returns. Runs on the connection's
  /// loop. Returning anything but kNone stops delivery of the frames that follow.
  virtual Action on_message(Conn& conn, const Frame& frame) = 0;

  /// The inbound bytes broke the protocol. The default logs, answers through the codec if
  /// it can, and closes the connection with Conn::close_lingering: the answer is flushed,
  /// and input the peer is still sending (the rest of a refused body) is read and dropped
  /// for a while, so the kernel does not reset the connection under the answer. Counted
  /// either way.
  virtual Action on_protocol_error(Conn& conn, const ProtocolError& error) {
    uint64_t dropped = 0;
    if (log_enabled(LogLevel::kWarn) && error_log_limit_.allow(&dropped)) {
      log(LogLevel::kWarn, "protocol error from {}: {}{}", conn.remote_addr().to_string(),
          error.reason,
          dropped ? fmt::format(" ({} similar lines suppressed)", dropped) : std::string());
    }
    if constexpr (requires { codec_.write_error_reply(error, conn); }) {
      codec_.write_error_reply(error, conn).ignore();  // closing anyway
    }
    conn.close_lingering();
    return Action::kNone;
  }

  /// The codec saw a partial frame with a hint (Decoded::hint != 0); see the codec.
  virtual Action on_need_more(Conn&, uint8_t /*hint*/) { return Action::kNone; }

  /// Loop thread: decodes every complete frame in `conn`'s inbound bytes (read_frames) and updates
  /// the counters.
  Action on_traffic(Conn& conn) override {
    DecodeWork work;
    Action action = read_frames(
        codec_, conn, work, [&](const Frame& frame) { return on_message(conn, frame); },
        [&](uint8_t hint) { return on_need_more(conn, hint); },
        [&](const ProtocolError& error) {
          errors_.add(conn.loop_index());
          conn.discard();  // nothing after a broken frame can be trusted
          return on_protocol_error(conn, error);
        });
    const int loop = conn.loop_index();
    if (work.frames != 0) frames_.add(loop, work.frames);
    decode_calls_.add(loop, work.calls);
    bytes_examined_.add(loop, work.examined);
    return action;
  }

  /// The codec, e.g. to encode replies.
  const C& codec() const { return codec_; }
  /// Totals over every loop; any thread.
  uint64_t frames_decoded() const { return frames_.sum(); }
  /// Protocol errors seen, all loops; any thread.
  uint64_t protocol_errors() const { return errors_.sum(); }
  /// Decoding work (see DecodeWork): calls to decode, and the bytes each call may have
  /// examined. Over a connection's life both stay within a small multiple of its bytes.
  uint64_t decode_calls() const { return decode_calls_.sum(); }
  /// Bytes charged to those calls (DecodeWork::examined), all loops; any thread.
  uint64_t bytes_examined() const { return bytes_examined_.sum(); }
  /// ringnet_frames_total / ringnet_protocol_errors_total{protocol="<name>"}, for
  /// Engine::add_metrics. One framed handler per writer (a family appears once).
  void write_metrics(MetricsWriter& w, std::string_view protocol) const {
    std::string label = "protocol=\"" + MetricsWriter::escape_label(protocol) + "\"";
    w.family("ringnet_frames_total", MetricType::kCounter, "Frames decoded and handled.");
    w.value(label, frames_decoded());
    w.family("ringnet_protocol_errors_total", MetricType::kCounter,
             "Malformed or over-limit input: answered where the protocol can, then closed.");
    w.value(label, protocol_errors());
  }

 private:
  C codec_;
  LoopCounter frames_;
  LoopCounter errors_;
  LoopCounter decode_calls_;
  LoopCounter bytes_examined_;
  LogRateLimit error_log_limit_{10};
};

}  // namespace ringnet::proto
