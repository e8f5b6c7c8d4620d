// SPDX-License-Identifier: MIT
/// @file
/// Engine: N event loops, each on its own thread, plus the listeners that feed them.
///
///   ringnet::Engine engine(handler, options);
///   if (ringnet::Status s = engine.listen("tcp://0.0.0.0:9000"); !s) { ...s.message()... }
///   engine.run();   // blocks until stop() or Action::kShutdown
///
/// Without reuse_port, listeners live on an acceptor loop (its own thread) that hands each
/// accepted socket to a loop chosen by the balancer. With reuse_port, every loop owns one
/// SO_REUSEPORT listener per address and accepts for itself.
///
/// Thread-safety: listen/start/run/wait are for the owning thread; stop(), stats(),
/// listen_addrs() and loop_count() may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/address.h"
#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/metrics.h"
#include "ringnet/options.h"
#include "ringnet/status.h"
#include "ringnet/transport.h"

namespace ringnet {

/// Counters merged over every loop (and the acceptor). Gauges are noted as such.
struct EngineStats {
  uint64_t accepted = 0;         ///< connections accepted
  uint64_t open = 0;             ///< gauge: connections open now
  uint64_t closed = 0;           ///< connections closed, any reason
  uint64_t closed_by_reason[kCloseReasonCount] = {};  ///< indexed by CloseReason
  /// bytes read from connections
  uint64_t bytes_in = 0;
  /// bytes written to connections
  uint64_t bytes_out = 0;
  uint64_t read_calls = 0;       ///< read/readv syscalls
  uint64_t write_calls = 0;      ///< writev syscalls (flushes)
  uint64_t accept_errors = 0;    ///< accept failures other than EAGAIN
  uint64_t fd_exhausted = 0;     ///< EMFILE/ENFILE on accept
  uint64_t budget_yields = 0;    ///< reads cut short by the fairness budget
  uint64_t tasks_run = 0;        ///< cross-thread tasks executed
  uint64_t outbound_dropped = 0; ///< bytes discarded because the connection died first
  uint64_t inbound_dropped = 0;  ///< bytes read from a connection already closing (refused)
  uint64_t writes_refused = 0;   ///< async_writes refused: output over the high watermark
  uint64_t inbound_budget_closed = 0;  ///< closed: all connections' unread input over
                                       ///< Options::max_inbound_total (this loop's share)
  uint64_t inbound_held = 0;     ///< gauge: unread inbound bytes all connections hold
  uint64_t pool_cached_bytes = 0;  ///< gauge: free buffer memory the loops keep for reuse
                                   ///< (at most Options::pool_cache_bytes per loop)
  uint64_t refused_stopping = 0; ///< sockets accepted as the engine stopped, closed at once
  uint64_t refused_limit = 0;    ///< sockets closed at accept: max_connections(_per_loop)
  uint64_t refused_source_limit = 0;  ///< ... and for max_connections_per_source
  uint64_t drain_deadline_closed = 0;  ///< connections still busy when shutdown()'s deadline came
  uint64_t buffer_ring_empty = 0; ///< io_uring: receives that found no provided buffer
  uint64_t cq_overflows = 0;     ///< io_uring: times the completion queue overflowed
  uint64_t recv_bundles = 0;     ///< io_uring: receives that filled more than one buffer
  uint64_t uring_registered_rings = 0;  ///< io_uring: loops (acceptor too) whose ring fd
                                        ///< is registered (Options::uring_register_ring)
  uint64_t uring_incremental_rings = 0;  ///< io_uring: loops whose provided buffers are
                                         ///< consumed incrementally (uring_buffer_incremental)
  uint64_t uring_buffers_offered = 0;  ///< io_uring: provided buffers offered to the kernel,
                                       ///< all loops (grows with load: uring_buffer_initial)
  uint64_t uring_fixed_file_slots = 0;  ///< io_uring: fixed file table entries, all loops
                                        ///< (Options::uring_fixed_files; 0 where refused)
  uint64_t read_pauses = 0;      ///< backpressure: times a connection stopped being read
  uint64_t inbound_overflows = 0; ///< connections closed for holding > max_inbound_buffer
  uint64_t dials = 0;            ///< Engine::dial attempts that reached their loop
  uint64_t dialed = 0;           ///< of those, connected (then counted in open, closed...)
  uint64_t dial_failures = 0;    ///< never connected (kConnectFailed or kResolveFailed)
  uint64_t traffic_calls = 0;    ///< on_traffic calls for fresh input
  uint64_t conn_writes = 0;      ///< Conn::write/writev calls that queued bytes
  uint64_t queued_tasks = 0;     ///< gauge: cross-thread tasks posted and not yet run
  // Options::metrics (empty when off):
  Log2Histogram flush_bytes;     ///< bytes per send syscall
  Log2Histogram batch_events;    ///< events / completions per loop wake-up
  Log2Histogram busy_ns;         ///< loop iteration, wake-up to flush, in nanoseconds
};

/// Counters of one loop (Engine::loop_stats).
struct LoopStats {
  uint64_t open = 0;      ///< gauge
  uint64_t accepted = 0;  ///< connections this loop has adopted
};

/// How Engine::dial connects.
struct DialOptions {
  std::chrono::milliseconds timeout{5000};  ///< connect() not done by then: kConnectFailed,
                                            ///< ETIMEDOUT
  int loop = -1;             ///< the loop that owns the connection; -1 = the next in turn
  void* context = nullptr;   ///< Conn::context() from the first callback on, to tell dials apart
  /// A transport over the socket (a TLS client context, `<ringnet/proto/tls.h>`): on_open
  /// comes once its handshake is done; a failed one ends in on_close with
  /// kHandshakeFailed or kHandshakeTimeout. nullptr: plain bytes.
  std::shared_ptr<TransportFactory> transport{};
  /// The name the transport verifies and sends (TLS SNI); empty: the dialed host.
  std::string server_name{};
};

/// How Engine::listen serves an address.
struct ListenOptions {
  /// A transport under every connection accepted there (a TLS server context): the
  /// handler hears on_open once its handshake is done, and of a failed one not at all
  /// (it is counted by the transport). nullptr: plain bytes.
  std::shared_ptr<TransportFactory> transport{};
};

/// N event loops, each on its own thread, plus the listeners that feed them.
/// Threads: listen/start/run/wait are for the owning thread; stop(), stats(),
/// listen_addrs() and loop_count() may be called from any thread (and see each member).
class RINGNET_EXPORT Engine {
 public:
  /// Serves `handler` with `options`; nothing runs until start() or run().
  Engine(EventHandler& handler, Options options = {});
  ~Engine();  ///< stops and joins if still running
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Adds a listen address ("tcp://127.0.0.1:0", "[::1]:9000", "unix:/tmp/s", or a host
  /// name, "tcp://localhost:9000", looked up now: its first IPv4 address, else its first
  /// IPv6 one; tcp4:// or tcp6:// pick the family). Binds now, so errors (address in
  /// use, a name that does not resolve...) come back here. Before start() only.
  Status listen(std::string_view address);
  /// listen() with options: a transport (TLS) under the connections accepted there.
  Status listen(std::string_view address, ListenOptions options);
  /// An admin listener, served by the engine on its own thread (not the loops'), with
  ///   GET /metrics   every metric in Prometheus text format (write_metrics)
  ///   GET /healthz   200 "ok" while serving, 503 "draining" once stop/shutdown began
  /// Binds now. Before start() only; at most one.
  Status listen_admin(std::string_view address);
  /// The admin listener's bound address (family AF_UNSPEC when there is none).
  SockAddr admin_addr() const;
  /// Adds a collector that appends the application's own families to every /metrics
  /// answer (and write_metrics). It runs on the admin thread, concurrently with the loops:
  /// it must read thread-safe state only (atomics, or its own lock). Any thread.
  void add_metrics(std::function<void(MetricsWriter&)> collector);
  /// Renders the engine's metrics (per loop, label loop="N" or "acceptor") and then the
  /// collectors' into `out`. Any thread; lock-free with respect to the loops.
  void write_metrics(MetricsWriter& out) const;

  /// Starts the loops; returns once they run. on_boot has been called.
  Status start();
  /// Blocks until the engine has stopped: connections closed, on_shutdown run, joined.
  void wait();
  /// start() then wait().
  Status run();
  /// Any thread, any number of times, even before start(): close listeners (accept nothing
  /// more), let queued output flush for up to Options::stop_flush_timeout while reading
  /// nothing more, close every connection (on_close with kShutdown, or the reason it was
  /// already closing for), call on_shutdown, let wait()/run() return.
  void stop();
  /// Any thread: graceful drain, for SIGTERM. Listeners close at once. Every byte the
  /// kernel already held for a connection is read and shown to the handler first; then
  /// each accepted connection stops reading at its next frame boundary (no unread input
  /// left: new requests are not taken in) and closes (kShutdown) once its answers are out
  /// and nothing holds it (Conn::hold); a partial request is read on until it completes.
  /// Conn::draining() is true, so protocol code can stop keep-alive. Input the peer still
  /// sends is read away after our FIN (a lingering close), so no RST destroys an answer.
  /// Connections this engine dialed stay up, and new dials work, until no accepted
  /// connection is left. At `deadline` whatever is still open is closed (kShutdown) and
  /// counted in EngineStats::drain_deadline_closed. Then as stop(). The first of
  /// stop()/shutdown() decides how the engine stops.
  void shutdown(std::chrono::milliseconds deadline);

  /// Any thread: closes every listener (no connection is accepted any more) and nothing
  /// else: open connections are served as before. For a server that drains at its own
  /// protocol level (answering new requests with a refusal) before shutdown(). Sockets
  /// still in a listener's accept queue are reset by the kernel. No-op before start().
  void stop_accepting();
  /// Any thread, once start() returned: opens an outbound connection on one of the
  /// loops. The result comes to the handler on that loop: on_open (Conn::dialed() is true)
  /// and then the usual callbacks, or, if it never connects, on_close alone with
  /// kConnectFailed and the errno (refused, timed out...). Either way Conn::context() is
  /// DialOptions::context from the start. Address forms as listen(). A host name is looked
  /// up off the loops (one resolver thread, getaddrinfo) within DialOptions::timeout; one
  /// that does not resolve ends in on_close with kResolveFailed. Returns an error at
  /// once for a bad address, a bad loop index, an engine not running or stopped by stop().
  /// During a graceful shutdown() dials work; one that reaches its loop as the loop ends
  /// gets on_close with kConnectFailed and ECANCELED (then on the thread in wait()).
  Status dial(std::string_view address, DialOptions options = {});

  /// True between start() and the loops' exit.
  bool running() const;
  /// stop() or shutdown() was called (or on_tick/a callback asked to shut down).
  bool stopping() const;
  /// Number of event loops. Any thread.
  int loop_count() const;
  /// Bound addresses, in listen() order (ports resolved when 0 was asked for).
  std::vector<SockAddr> listen_addrs() const;
  /// Counters merged over every loop. Any thread.
  EngineStats stats() const;
  /// The counters of one loop.
  LoopStats loop_stats(int loop) const;
  /// The options the engine was built with.
  const Options& options() const;

  /// Engine-internal state; opaque to applications.
  struct RINGNET_HIDDEN Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringnet
