// SPDX-License-Identifier: MIT
/// @file
/// EventHandler: the callbacks an application gives the engine.
///
/// Thread-safety: one handler serves every loop, so its callbacks run concurrently on
/// different loop threads. A callback for one connection always runs on that connection's
/// loop thread (Conn::loop_index() tells which), never concurrently with another callback
/// for the same connection. Callbacks must not block: hand blocking work to another thread
/// and come back through ConnHandle::async_write or wake().
#pragma once

#include <chrono>

#include "ringnet/config.h"

namespace ringnet {

class Conn;
class Engine;

/// What the engine should do after a callback returns.
enum class Action {
  kNone,      ///< carry on
  kClose,     ///< close this connection (pending output is flushed first)
  kShutdown,  ///< stop the whole engine (as Engine::stop())
};

/// Why a connection closed. `error` in CloseInfo carries the errno where there is one.
enum class CloseReason {
  kPeerClosed,  ///< orderly EOF from the peer (after its data was delivered)
  kReset,       ///< ECONNRESET / EPIPE: the peer went away abruptly
  kError,       ///< another socket error (see CloseInfo::error)
  kLocalClose,  ///< the application asked: Conn::close() or Action::kClose
  kShutdown,    ///< the engine is stopping
  kIdleTimeout,   ///< no bytes in or out for Options::idle_timeout (or Conn::set_idle_timeout)
  kReadTimeout,   ///< inbound bytes left unconsumed (a partial frame) for Options::read_timeout
  kWriteTimeout,  ///< queued output not drained within Options::write_timeout
  kConnectFailed, ///< Engine::dial never connected: CloseInfo::error is ECONNREFUSED,
                  ///< ETIMEDOUT (DialOptions::timeout), ENETUNREACH... No on_open came first.
  kResolveFailed, ///< Engine::dial's host name did not resolve: CloseInfo::error is
                  ///< getaddrinfo's EAI_* code (gai_strerror). No on_open came first.
  kHandshakeFailed,  ///< the transport's handshake (TLS) failed: CloseInfo::error is its
                     ///< reason code. Reported for dials only (no on_open came first);
                     ///< an accepted socket that fails is closed and counted, unseen.
  kHandshakeTimeout, ///< the handshake took longer than the transport allows (as above)
};
/// Number of CloseReason values (the size of EngineStats::closed_by_reason).
inline constexpr int kCloseReasonCount = 12;

/// A short name for `reason`, for logs and metrics.
RINGNET_EXPORT const char* close_reason_name(CloseReason reason);

/// Why a connection closed, as on_close reports it.
struct CloseInfo {
  /// what closed it
  CloseReason reason;
  int error = 0;  ///< errno for kReset/kError, else 0
};

/// What on_tick returns.
struct TickResult {
  std::chrono::nanoseconds next_delay;  ///< when to call on_tick again
  Action action = Action::kNone;        ///< kShutdown stops the engine; kClose is ignored
};

/// The callbacks an application gives the engine; override the ones you need.
/// Threads: one handler serves every loop, so its callbacks run concurrently on different
/// loop threads; a callback for one connection always runs on that connection's loop thread,
/// never concurrently with another callback for the same connection. Callbacks must not block.
class RINGNET_EXPORT EventHandler {
 public:
  virtual ~EventHandler() = default;

  /// Once, on the thread that called Engine::start(), before any loop runs.
  virtual Action on_boot(Engine&) { return Action::kNone; }
  /// A connection was accepted, or one Engine::dial asked for is connected
  /// (Conn::dialed()); runs on its loop. Writing here is allowed.
  virtual Action on_open(Conn&) { return Action::kNone; }
  /// Inbound bytes are buffered (peek/next/discard them), or wake() was called.
  /// Bytes left unread stay buffered and are shown again with the next arrival.
  virtual Action on_traffic(Conn&) = 0;
  /// The connection is closed; the Conn reference is valid only until this returns.
  virtual void on_close(Conn&, CloseInfo) {}
  /// Periodic tick (Options::ticker), on loop 0's thread. First call right after start.
  virtual TickResult on_tick() { return {std::chrono::seconds(1), Action::kNone}; }
  /// The connection's queued output passed Options::outbound_high_watermark (paused =
  /// true): the engine stops reading from it, so a peer that sends requests without
  /// reading the answers is held back by TCP instead of growing our memory. paused = false
  /// once the output drained below outbound_low_watermark and reading resumed. Writing
  /// from here is allowed (and queues more).
  virtual void on_backpressure(Conn&, bool /*paused*/) {}
  /// Once, after every loop has stopped and every connection is closed.
  virtual void on_shutdown(Engine&) {}
};

}  // namespace ringnet
