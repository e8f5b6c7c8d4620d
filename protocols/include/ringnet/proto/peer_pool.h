// SPDX-License-Identifier: MIT
/// @file
/// PeerPool: the client side of the connection-reuse map keyed by peer address. A process
/// keeps a small bounded set of live connections per address and hands them out again
/// instead of dialing for every call:
///
///   ringnet::proto::PeerPool pool(engine, {.max_per_address = 1});
///   pool.get("tcp://10.0.0.7:9000", [](const ringnet::ConnHandle& conn, const ringnet::Status& s) {
///     if (!s) { /* refused, timed out, engine stopping, pool destroyed: s says which */ return; }
///     conn.async_write(request);
///   });
///
///   // in the handler (loop thread), so the pool sees its connections come and go; the
///   // handler keeps hooks_ = pool.hooks(), which outlive the pool (see "Lifetime"):
///   Action on_open(Conn& c) override { hooks_.on_open(c); ...; }
///   void on_close(Conn& c, CloseInfo i) override { hooks_.on_close(c, i); ... }
///
/// Policy: up to max_per_address connections per address, opened lazily: a get() dials a
/// new one while the address has fewer (live + dialing), else reuses the live ones in
/// turn. A get() that finds none live waits for a dial already under way rather than
/// dialing twice. A connection leaves the pool when it closes (any reason: reset, peer
/// close, idle timeout); a dial that fails fails every get() waiting on it, and leaves no
/// entry behind.
///
/// Threads: get() and stats() from any thread. on_open/on_close on loop threads, from the
/// handler's callbacks. `ready` runs outside the pool's lock: on the caller's thread for a
/// reuse or an immediate error, on the connection's loop thread after a dial, on the
/// destructor's thread when the pool is destroyed. The pool uses Conn::context() of its own
/// dials until on_open (it clears it there).
///
/// Lifetime. Each get() ends exactly once, through `ready`. The destructor ends the gets
/// still waiting with ECANCELED, on its own thread, before it returns; it waits for
/// `ready`s already running on other threads, so no `ready` runs once it has returned. It
/// never waits for a loop. Dials still under way are left to finish: one that connects
/// afterwards is closed at once (nobody can be handed it), one that fails changes nothing.
/// Connections already handed out stay open (their handles keep working) until they close
/// for their own reasons or the engine stops. Hence:
///   - the pool may be destroyed on any thread while the engine runs, including from inside
///     a `ready`; a `ready` must not block waiting for the thread destroying the pool;
///   - the Engine must outlive the pool, and the pool its users (an RpcClient);
///   - connection events may keep coming after the pool is gone: a handler forwards them
///     through hooks() (RpcClientHandler does), which stay valid. The member
///     on_open/on_close must not be called once the destructor has begun;
///   - get() and stats() must not race with the destructor, as for any object.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/engine.h"
#include "ringnet/handler.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Options of PeerPool.
struct PeerPoolOptions {
  size_t max_per_address = 1;                    ///< live + dialing connections per address
  std::chrono::milliseconds dial_timeout{5000};  ///< DialOptions::timeout of its dials
  /// DialOptions::transport of its dials: a TLS client context (`<ringnet/proto/tls.h>`)
  /// makes every pooled connection TLS, verified against each address's host. A failed
  /// handshake fails the get() (a certificate refusal without an errno: RpcClient does
  /// not retry it; a handshake timeout with ETIMEDOUT).
  std::shared_ptr<TransportFactory> transport{};
  /// DialOptions::server_name of its dials (empty: each address's own host).
  std::string server_name{};
};

/// Counters and gauges of one PeerPool, a snapshot from PeerPool::stats().
/// Threads: a plain value, owned by the caller of stats().
struct PeerPoolStats {
  uint64_t gets = 0;          ///< get() calls
  uint64_t reused = 0;        ///< answered with a live connection
  uint64_t dials = 0;         ///< dials started
  uint64_t dial_failures = 0; ///< dials that never connected
  uint64_t evicted = 0;       ///< live connections that closed and left the pool
  uint64_t live = 0;          ///< gauge: connections handed out now
  uint64_t dialing = 0;       ///< gauge: dials under way
  uint64_t waiting = 0;       ///< gauge: get() calls waiting for a dial
};

/// A bounded set of reusable client connections per peer address (see the file comment).
/// Threads: get(), stats() and live() from any thread; on_open/on_close on loop threads from the
/// handler's callbacks (prefer hooks(), valid after the pool is gone); `ready` runs outside the
/// pool's lock on the caller's, the loop's or the destructor's thread. The destructor may run on
/// any thread but must not race with get() or stats().
class RINGNET_PROTO_EXPORT PeerPool {
  struct RINGNET_HIDDEN State;

 public:
  /// Called exactly once per get(): a connection and ok, or an empty handle and the error.
  using Ready = std::function<void(const ConnHandle&, const Status&)>;

  /// The handler hooks, bound to the pool's state rather than to the pool: copyable, and
  /// safe to call after the pool was destroyed. Loop threads. A default-constructed Hooks
  /// does nothing.
  class Hooks {
   public:
    Hooks() = default;
    /// True when `c` is one of the pool's dials.
    bool on_open(Conn& c);
    /// Forgets `c` if it belongs to the pool; no-op once unbound.
    void on_close(Conn& c, CloseInfo info);

   private:
    friend class PeerPool;
    explicit Hooks(std::shared_ptr<State> state) : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
  };

  /// A pool that dials through `engine`, which must outlive it.
  explicit PeerPool(Engine& engine, PeerPoolOptions options = {});
  ~PeerPool();  ///< get() callbacks still waiting end with ECANCELED (see "Lifetime")
  PeerPool(const PeerPool&) = delete;
  PeerPool& operator=(const PeerPool&) = delete;

  /// A live connection to `address` (same text forms as Engine::dial), now or once dialed.
  void get(std::string_view address, Ready ready);

  /// Hooks for the handler, valid after the pool is gone. Any thread.
  Hooks hooks() const { return Hooks(state_); }
  /// The same, through the pool: only while it lives (loop thread).
  bool on_open(Conn& c) { return hooks().on_open(c); }
  /// The same as Hooks::on_close, through the pool: only while it lives (loop thread).
  void on_close(Conn& c, CloseInfo info) { hooks().on_close(c, info); }

  /// A snapshot of the counters and gauges. Any thread.
  PeerPoolStats stats() const;
  /// Live connections to `address` now (0 when unknown).
  size_t live(std::string_view address) const;

 private:
  std::shared_ptr<State> state_;  // shared with the hooks
};

}  // namespace ringnet::proto
