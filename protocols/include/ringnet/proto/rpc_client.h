// SPDX-License-Identifier: MIT
/// @file
/// RpcClient: many calls in flight on one connection per address, over the RPC frame
/// (rpc_frame.h), matched by request id.
///
///   ringnet::proto::PeerPool pool(engine);
///   ringnet::proto::RpcClient rpc(pool, {.default_timeout = 500ms});
///   rpc.set_method_timeout(kGetUser, 100ms);
///   rpc.call("tcp://10.0.0.7:9000", kGetUser, key, {.timeout = 80ms, .idempotent = true},
///            [](const ringnet::Status& s, std::string_view body) { ... });
///
///   // the client engine's handler forwards its connections' events to both; an engine
///   // used only for RPC calls can take RpcClientHandler, which does just that.
///
/// Every call ends exactly once, through `done`:
///   ok            the response body (a view, valid during `done`)
///   error frame   code EPROTO, message "rpc error: <the server's body>"
///   ETIMEDOUT     no response within the effective timeout: the smallest of the client's
///                 default, the method's and the call's own (zero = not set)
///   ECONNRESET    the connection died before the response (at once, not at the timeout)
///   ECANCELED     cancel(id), or the client was destroyed
///   other         the dial failed (ECONNREFUSED...), or the connection refused the write
/// Calls marked idempotent (the frame's flag bit 0) are retried after a connection failure,
/// up to max_attempts in all, with backoff doubling from `backoff`, within their deadline.
/// A response that comes after its call ended (timed out, cancelled) is counted and dropped.
///
/// Threads: call(), cancel() and stats() from any thread; the hooks on loop threads. `done`
/// runs on a loop thread (responses, connection failures), the client's timer thread
/// (timeouts, retries' failures), the thread that called call() (a failure found at once)
/// or the destructor's thread (ECANCELED), never under the client's lock, never twice.
///
/// Lifetime. The destructor ends every call still in flight with ECANCELED, on its own
/// thread, before it returns; it waits for `done`s already running on other threads, so no
/// `done` runs once it has returned. It never waits for a loop: what the client handed to
/// the pool or queued on a loop (get callbacks, writes) holds only a weak reference to its
/// state, and whatever comes later (a dial that times out, a response) finds the calls gone
/// and does nothing. Hence:
///   - the client may be destroyed on any thread while the engine runs, including from
///     inside a `done` (on a loop thread, the timer thread or the caller's); a `done` must
///     not block waiting for the thread that is destroying the client;
///   - the PeerPool must outlive the client, and the Engine the pool;
///   - connection events may keep coming after the client is gone: a handler forwards them
///     through hooks() (RpcClientHandler does), which keeps the client's state alive and
///     drops responses as late. The member on_traffic/on_close must not be called once the
///     destructor has begun;
///   - call(), cancel() and stats() must not race with the destructor, as for any object;
///     from a `done` that runs while the client is being destroyed, call() ends the new
///     call with ECANCELED at once and cancel() returns false.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/proto/peer_pool.h"
#include "ringnet/proto/rpc_frame.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Options of RpcClient.
struct RpcClientOptions {
  /// Timeout of every call; 0 = not set (see the file comment).
  std::chrono::milliseconds default_timeout{1000};
  int max_attempts = 3;                     ///< for idempotent calls; 1 = never retry
  std::chrono::milliseconds backoff{10};    ///< before the first retry, doubled after
  RpcFrameOptions codec{};                  ///< response size limits
};

/// Options of one RpcClient::call.
struct RpcCallOptions {
  std::chrono::milliseconds timeout{0};  ///< 0 = not set (the others decide)
  bool idempotent = false;               ///< safe to send again after a connection failure
};

/// Counters and gauge of one RpcClient, a snapshot from RpcClient::stats().
/// Threads: a plain value, owned by the caller of stats().
struct RpcClientStats {
  uint64_t calls = 0, ok = 0, errors = 0, timeouts = 0, connection_failures = 0;
  uint64_t cancelled = 0, retries = 0, late_responses = 0;
  uint64_t in_flight = 0;  ///< gauge
  /** @var calls
      call() invocations. */
  /** @var ok
      Calls answered with a response frame. */
  /** @var errors
      Calls ended by an error frame (EPROTO) or another failure without an errno. */
  /** @var timeouts
      Calls ended by ETIMEDOUT. */
  /** @var connection_failures
      Calls ended by a failed dial, a refused write or a connection that died. */
  /** @var cancelled
      Calls ended by cancel() or the destructor (ECANCELED). */
  /** @var retries
      Idempotent calls sent again after a connection failure. */
  /** @var late_responses
      Responses that came after their call had ended, dropped. */
};

/// Multiplexed RPC calls over pooled connections, matched by request id (see the file comment).
/// Threads: call(), cancel(), set_method_timeout() and stats() from any thread; on_traffic/on_close
/// on loop threads (prefer hooks(), valid after the client is gone); `done` runs once, outside the
/// client's lock, on a loop thread, the timer thread, the caller's or the destructor's thread. The
/// destructor may run on any thread but must not race with the other members.
class RINGNET_PROTO_EXPORT RpcClient {
  struct RINGNET_HIDDEN State;

 public:
  /// Called exactly once per call: ok and the response body (valid during the call), or the error.
  using Done = std::function<void(const Status&, std::string_view body)>;

  /// The handler hooks, bound to the client's state rather than to the client: copyable,
  /// and safe to call after the client was destroyed (its calls are gone by then, so a
  /// response is dropped as late and a close changes nothing). Loop threads. A
  /// default-constructed Hooks does nothing.
  class Hooks {
   public:
    Hooks() = default;
    /// Consumes the responses it understands; a malformed frame closes the connection
    /// (its calls then fail or retry).
    Action on_traffic(Conn& c);
    /// Fails (or retries) the calls in flight on `c`; no-op once unbound.
    void on_close(Conn& c, CloseInfo info);

   private:
    friend class RpcClient;
    explicit Hooks(std::shared_ptr<State> state) : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
  };

  /// A client that takes its connections from `pool`, which must outlive it; starts its timer
  /// thread.
  RpcClient(PeerPool& pool, RpcClientOptions options = {});
  ~RpcClient();  ///< calls still in flight end with ECANCELED (see "Lifetime" above)
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  /// Sets the timeout of `method` (0 = not set). Any thread.
  void set_method_timeout(uint16_t method, std::chrono::milliseconds timeout);
  /// Starts a call; returns its id (for cancel). Any thread.
  uint64_t call(std::string_view address, uint16_t method, std::string body,
                RpcCallOptions options, Done done);
  /// Ends the call with ECANCELED if it has not ended; true if it had not.
  bool cancel(uint64_t id);

  /// Hooks for the handler, valid after the client is gone. Any thread.
  Hooks hooks() const { return Hooks(state_); }
  /// The same, through the client: only while it lives (loop thread).
  Action on_traffic(Conn& c) { return hooks().on_traffic(c); }
  /// The same as Hooks::on_close, through the client: only while it lives (loop thread).
  void on_close(Conn& c, CloseInfo info) { hooks().on_close(c, info); }

  /// A snapshot of the counters and the gauge. Any thread.
  RpcClientStats stats() const;

 private:
  std::shared_ptr<State> state_;  // shared with the timer thread and the hooks; callbacks
                                  // handed to the pool and the loops hold it weakly
  std::thread timer_;
};

/// The handler of an engine whose connections serve only RPC calls: forwards every
/// connection event to the pool and the client. The engine needs its handler before the
/// pool and client exist, so they are attached afterwards (before Engine::start). It holds
/// their hooks, not the objects, so either may be destroyed while the engine runs.
/// Threads: attach() before Engine::start; the callbacks run on the connection's loop thread.
class RINGNET_PROTO_EXPORT RpcClientHandler final : public EventHandler {
 public:
  /// Keeps the hooks of `pool` and `rpc`; call before Engine::start.
  void attach(PeerPool& pool, RpcClient& rpc) {
    pool_ = pool.hooks();
    rpc_ = rpc.hooks();
  }
  Action on_open(Conn& c) override {
    pool_.on_open(c);
    return Action::kNone;
  }
  Action on_traffic(Conn& c) override { return rpc_.on_traffic(c); }
  void on_close(Conn& c, CloseInfo info) override {
    rpc_.on_close(c, info);  // fails or retries its calls first, while the pool
    pool_.on_close(c, info);  // still knows the connection
  }

 private:
  PeerPool::Hooks pool_;
  RpcClient::Hooks rpc_;
};

}  // namespace ringnet::proto
