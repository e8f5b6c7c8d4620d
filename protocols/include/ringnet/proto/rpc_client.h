// SPDX-License-Identifier: MIT
/// @file
/// RpcClient: many calls in flight on one connection per address, over the RPC frame
/// (rpc_frame.h), matched by request id; each call ends with an RpcStatus (rpc_status.h).
///
///   ringnet::proto::PeerPool pool(engine);
///   ringnet::proto::RpcClient rpc(pool, {.default_timeout = 500ms});
///   rpc.set_method_timeout(kGetUser, 100ms);
///   rpc.call("tcp://10.0.0.7:9000", kGetUser, key, {.timeout = 80ms, .idempotent = true},
///            [](const ringnet::proto::RpcStatus& s, std::string_view body) { ... });
///
///   // the client engine's handler forwards its connections' events to both; an engine
///   // used only for RPC calls can take RpcClientHandler, which does just that.
///
/// Every call ends exactly once, through `done` (code, RpcStatus::error, counter):
///   response             kOk, 0; the response body (a view, valid during `done`)    ok
///   error frame          the server's code and message (decode_rpc_error_body), 0    errors
///   no answer in time    kDeadlineExceeded, ETIMEDOUT: the effective timeout is the   timeouts
///                        smallest of the client's default, the method's and the
///                        call's own (zero = not set)
///   connection died      kUnavailable, ECONNRESET, at once (not at the timeout)      connection_failures
///   dial failed          kUnavailable, its errno (ECONNREFUSED, ETIMEDOUT...)        connection_failures
///   no errno from dial   kUnavailable, -1 (Status::code() as the pool reports it:     errors
///                        a name that does not resolve, a malformed address, an
///                        engine that stops); never retried
///   write refused        kUnavailable, ECONNRESET: Conn::write refuses only on a      connection_failures
///                        closing connection (there is no backpressure refusal), so
///                        it is a dying connection, retried as one
///   cancel(), ~RpcClient kCancelled, ECANCELED                                        cancelled
///   request too large    kInvalidArgument, EMSGSIZE: the frame's body_length (the     errors
///                        body as sent plus the budget field) over codec.max_body;
///                        nothing is sent
///   a filter refused     the filter's status, as it made it (see RpcClientFilter)     filtered
///   bad compressed body  the status rpc_decompress returned (kInvalidArgument,        errors
///                        kResourceExhausted)
/// The body passed to `done` is empty unless the status is ok.
///
/// Deadlines on the wire. A call with an effective timeout sends, in every request frame
/// (retries included), the time it has left: RpcFrame::set_budget(the milliseconds to its
/// deadline when the frame is built, rounded up, at least 1), so the server's deadline is
/// the client's. A frame whose deadline passed before it could be built is not sent (the
/// timeout ends the call). A call without a timeout sends no budget.
///
/// Retries. Calls marked idempotent (the frame's flag bit 0) are sent again after a
/// connection failure (a dial with an errno, a dead connection, a refused write) and after
/// an error frame with kUnavailable (a draining server), up to max_attempts in all, with
/// backoff doubling from `backoff`, while the retry can start before their deadline. Other
/// calls are never retried. A response that comes after its call ended (timed out,
/// cancelled) is counted and dropped.
///
/// Compression. With options.compression.codec set, a request body of at least its
/// threshold is compressed (rpc_compression.h) when that makes it smaller, and flagged in
/// bits 2-3; a response flagged so is decompressed (at most codec.max_body bytes) before
/// `done` sees it.
///
/// Filters (RpcClientFilter, add_filter) see every call: on_call in the order added,
/// before anything is sent, on the thread that called call(); on_result in the reverse
/// order, after the call ended, just before `done` and on its thread.
///
/// Threads: call(), cancel() and stats() from any thread; the hooks on loop threads. `done`
/// runs on a loop thread (responses, connection failures), the client's timer thread
/// (timeouts, retries' failures), the thread that called call() (a failure found at once,
/// a filter's refusal) or the destructor's thread (kCancelled), never under the client's
/// lock, never twice.
///
/// Lifetime. The destructor ends every call still in flight with kCancelled, on its own
/// thread, before it returns; it waits for `done`s already running on other threads, so no
/// `done` (nor on_result) runs once it has returned. It never waits for a loop: what the
/// client handed to the pool or queued on a loop (get callbacks, writes) holds only a weak
/// reference to its state, and whatever comes later (a dial that times out, a response)
/// finds the calls gone and does nothing. Hence:
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
///     call with kCancelled at once (its filters do not run) and cancel() returns false.
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
#include "ringnet/proto/rpc_compression.h"
#include "ringnet/proto/rpc_frame.h"
#include "ringnet/proto/rpc_status.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Options of RpcClient.
struct RpcClientOptions {
  /// Timeout of every call; 0 = not set (see the file comment).
  std::chrono::milliseconds default_timeout{1000};
  int max_attempts = 3;                     ///< for idempotent calls; 1 = never retry
  std::chrono::milliseconds backoff{10};    ///< before the first retry, doubled after
  /// Response size limits; max_body also bounds a request's body_length (kInvalidArgument).
  RpcFrameOptions codec{};
  /// How request bodies are compressed (default: never); responses are decompressed
  /// whatever this says.
  RpcCompressionOptions compression{};
};

/// Options of one RpcClient::call.
struct RpcCallOptions {
  std::chrono::milliseconds timeout{0};  ///< 0 = not set (the others decide)
  bool idempotent = false;               ///< safe to send again (see "Retries")
};

/// What an RpcClientFilter sees of a call: a view of the call's own fields, valid during
/// the hook. In on_call a filter may change the body (what is sent) and the options (the
/// effective timeout is computed after the filters ran); in on_result they are as sent.
/// Threads: the thread running the hook.
struct RpcClientCall {
  std::string_view address;  ///< as given to call()
  uint16_t method = 0;       ///< as given to call()
  std::string& body;         ///< the request body, uncompressed
  RpcCallOptions& options;   ///< the call's options
};

/// A hook around every call of an RpcClient (add_filter), like the server's filters:
/// metadata in the body, client-side limits, metrics, logs. Both hooks may run on many
/// threads at once (one filter object serves every call): a filter guards its own state.
class RINGNET_PROTO_EXPORT RpcClientFilter {
 public:
  virtual ~RpcClientFilter();
  /// Before the call is sent, in the order the filters were added, on the thread that
  /// called RpcClient::call(), outside the client's lock. A non-ok status ends the call
  /// with it at once (nothing is sent, later filters' on_call do not run; counted in
  /// RpcClientStats::filtered). Default: ok.
  virtual RpcStatus on_call(RpcClientCall& call);
  /// After the call ended, for every filter whose on_call passed, in the reverse order,
  /// on the thread that runs `done`, just before it, outside the client's lock. `latency`
  /// runs from call() to the end. Default: nothing.
  virtual void on_result(const RpcClientCall& call, const RpcStatus& status,
                         std::chrono::nanoseconds latency);
};

/// Counters and gauge of one RpcClient, a snapshot from RpcClient::stats().
/// Threads: a plain value, owned by the caller of stats().
struct RpcClientStats {
  uint64_t calls = 0, ok = 0, errors = 0, timeouts = 0, connection_failures = 0;
  uint64_t cancelled = 0, retries = 0, late_responses = 0, filtered = 0;
  uint64_t in_flight = 0;  ///< gauge
  /** @var calls
      call() invocations. */
  /** @var ok
      Calls answered with a response frame (kOk). */
  /** @var errors
      Calls ended by an error frame (the server's code), a request over max_body, a
      response that did not decompress, or a dial failure without an errno. */
  /** @var timeouts
      Calls ended by kDeadlineExceeded. */
  /** @var connection_failures
      Calls ended by kUnavailable the client found itself: a dial that failed with an
      errno, a refused write, a connection that died. */
  /** @var cancelled
      Calls ended by cancel() or the destructor (kCancelled). */
  /** @var retries
      Idempotent calls sent again after a connection failure or a kUnavailable error frame. */
  /** @var late_responses
      Responses that came after their call had ended, dropped. */
  /** @var filtered
      Calls a filter's on_call ended before anything was sent. */
};

/// Multiplexed RPC calls over pooled connections, matched by request id (see the file comment).
/// Threads: call(), cancel(), set_method_timeout() and stats() from any thread (add_filter
/// before the first call); on_traffic/on_close on loop threads (prefer hooks(), valid after
/// the client is gone); `done` runs once, outside the client's lock, on a loop thread, the
/// timer thread, the caller's or the destructor's thread. The destructor may run on any
/// thread but must not race with the other members.
class RINGNET_PROTO_EXPORT RpcClient {
  struct RINGNET_HIDDEN State;

 public:
  /// Called exactly once per call: how it ended, and the response body (valid during the
  /// call; empty unless the status is ok).
  using Done = std::function<void(const RpcStatus&, std::string_view body)>;

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
  ~RpcClient();  ///< calls still in flight end with kCancelled (see "Lifetime" above)
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  /// Sets the timeout of `method` (0 = not set). Any thread.
  void set_method_timeout(uint16_t method, std::chrono::milliseconds timeout);
  /// Adds a filter (see RpcClientFilter); filters run in the order added. Only before the
  /// first call(), and not concurrently with call(): refused (invalid) after it, or for a
  /// null filter. Any thread.
  Status add_filter(std::shared_ptr<RpcClientFilter> filter);
  /// Starts a call; returns its id (for cancel). Any thread. The filters' on_call run here.
  uint64_t call(std::string_view address, uint16_t method, std::string body,
                RpcCallOptions options, Done done);
  /// Ends the call with kCancelled if it has not ended; true if it had not.
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
