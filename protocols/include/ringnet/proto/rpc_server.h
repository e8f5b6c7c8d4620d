// SPDX-License-Identifier: MIT
/// @file
/// RpcServer: services, methods, deadlines, filters and a drain, over the RPC frame.
///
///   ringnet::proto::RpcServer server({.engine = {.loops = 2}});
///   auto& kv = server.add_service({.name = "kv", .listen = {"tcp://0.0.0.0:9000"},
///                                  .timeout = 2s, .drain_limit = 2s});
///   kv.add_unary("get", 1, [&](RpcCall&, std::string_view key, std::string& out) {
///     return lookup(key, out) ? RpcStatus::ok() : RpcStatus::make(RpcCode::kNotFound, "");
///   });
///   kv.add_unary("get_fast", 2, get_cached, {.timeout = 50ms});  // min(2 s, 50 ms)
///   kv.add_unary("scan", 3, scan, {.exec = RpcExec::kPool});      // may block: the pool
///   server.run_until_signal(5s);  // SIGTERM/SIGINT: shutdown(5s), then returns
///
/// A server owns services; each listens on its own addresses (one Engine serves them all;
/// a connection belongs to the service whose listener accepted it). A request frame names
/// its method by id (the frame's `method` field). Method id 0 is built in on every
/// service: "rpc.list", whose response lists the service's methods, one "<id> <name>\n"
/// line each, so a client can find ids by name.
///
/// A call, from frame to answer:
///
///   frame ─> checks (header: magic, version, type, body within [min_body, max_body])
///        ─> method lookup ── none: UNKNOWN_METHOD error frame (connection kept)
///        ─> draining? ── UNAVAILABLE
///        ─> deadline = now + min(service timeout, method timeout, caller's budget)
///        ─> decompress (flags bits 2-3; over max_decompressed: the connection is closed)
///        ─> filters' on_request, in order (server's, then the service's); one that
///           refuses ends the call with its status, later filters and the handler skipped
///        ─> handler: on the loop (RpcExec::kInline) or a WorkerPool thread (kPool)
///        ─> the call's completion (exactly once, from any thread): filters' on_response
///           (reverse order) ─> compress ─> response or error frame on the loop
///        ─> filters' on_complete (reverse order, each filter whose on_request ran)
///
/// Deadlines. A method's timeout can only shorten its service's (the smallest of the three
/// wins); timeouts are capped at 30 days, and a service timeout must be positive. When the
/// deadline passes first, the caller gets DEADLINE_EXCEEDED at once,
/// RpcCall::cancelled() turns true, and the handler's later completion is refused and
/// counted (late_completions). A handler that keeps its call and never answers is ended the
/// same way; one that drops its last RpcCallPtr unanswered gets INTERNAL at once.
/// A frame with a budget of 0 is answered DEADLINE_EXCEEDED without running anything.
///
/// Handlers never take the process down: one that throws answers INTERNAL (counted in
/// handler_exceptions), and the server keeps serving.
///
/// Drain, RpcServer::shutdown(deadline): every service stops accepting; requests read
/// from then on are answered UNAVAILABLE ("draining") on their open connections; calls in
/// flight get until their service's drain_limit (capped by `deadline`) to finish, and
/// those still running then are answered CANCELLED; then connections flush and close
/// (Engine::shutdown) and shutdown() returns, so the application's own clean-up runs
/// after it. No call the server read ends in silence.
///
/// A connection that dies (reset, error, timeout) cancels its calls still running
/// (cancelled() turns true; nothing is sent), as a gRPC client's cancellation would. An
/// orderly half-close (FIN) does not: the peer may still read, and gets its answers.
///
/// Threads: configuration (add_service, add_unary/add_async, add_filter) before start();
/// start(), wait() and run_until_signal() on the owning thread; shutdown() and stats() from
/// any thread, a handler included (from a loop or pool thread shutdown() starts the drain
/// on a thread of its own and returns at once). Handlers run on loop threads (kInline: must not block) or pool threads (kPool).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/engine.h"
#include "ringnet/log.h"
#include "ringnet/metrics.h"
#include "ringnet/options.h"
#include "ringnet/proto/rpc_compression.h"
#include "ringnet/proto/rpc_frame.h"
#include "ringnet/proto/rpc_status.h"
#include "ringnet/status.h"
#include "ringnet/worker_pool.h"

namespace ringnet::proto {

class RpcServer;
class RpcService;
struct RpcMethod;
struct RpcServerCore;
class RpcServerHandler;

/// Where a method's handler runs.
enum class RpcExec : uint8_t {
  kInline,  ///< on the connection's loop thread: fast, must not block
  kPool,    ///< on the server's WorkerPool (queue full: RESOURCE_EXHAUSTED)
};

/// Options of one method.
struct RpcMethodOptions {
  std::chrono::milliseconds timeout{0};  ///< 0 = the service's timeout decides
  RpcExec exec = RpcExec::kInline;       ///< where the handler runs
};

/// One call on the server: what was asked, its deadline, and its single completion.
/// Threads: the accessors from any thread; reply()/fail()/finish() from any thread, the
/// first one wins. The request view is valid as long as the RpcCall object lives. A
/// shared call (RpcCallPtr) may outlive the server: completing it then returns false.
class RINGNET_PROTO_EXPORT RpcCall : public std::enable_shared_from_this<RpcCall> {
 public:
  using Clock = std::chrono::steady_clock;  ///< deadlines and latencies

  RpcCall(const RpcCall&) = delete;
  RpcCall& operator=(const RpcCall&) = delete;
  ~RpcCall();

  /// The service and method being called.
  const RpcService& service() const { return *service_; }
  /// The method's id and name.
  uint16_t method_id() const;
  /// The method's name.
  const std::string& method_name() const;
  /// The frame's request id (unique per connection while in flight).
  uint64_t request_id() const { return request_id_; }
  /// The request frame's flags (idempotent, budget, compression bits).
  uint16_t flags() const { return flags_; }
  /// The request body, decompressed. Filters may replace it (set_request) in on_request.
  std::string_view request() const { return request_; }
  /// Replaces the request body seen by later filters and the handler (on_request only).
  void set_request(std::string body);
  /// The caller's address.
  const SockAddr& peer() const { return peer_; }
  /// When the call was read, and by when it must be answered.
  Clock::time_point start_time() const { return start_; }
  /// The effective deadline: start + min(service timeout, method timeout, caller's budget).
  Clock::time_point deadline() const { return deadline_; }
  /// True for a one-way frame: no answer is sent; completing it only ends it.
  bool one_way() const { return one_way_; }

  /// True once the call has ended without the handler's answer: its deadline passed, the
  /// drain cancelled it, or its connection closed. A handler that sees it should stop.
  bool cancelled() const;
  /// True once the call has ended, any way.
  bool done() const;

  /// Completes with a response body. False, counted in late_completions (when the call
  /// ended by deadline or cancellation) or double_completions (when already completed),
  /// and nothing sent, if the call has already ended.
  bool reply(std::string body);
  /// Completes with an error status (code must not be kOk: that is reply("")).
  bool fail(RpcCode code, std::string_view message);
  /// Completes with `status`: a response carrying `body` when ok, else an error frame.
  bool finish(const RpcStatus& status, std::string body = {});

  /// Used by the server; handlers get their calls from it.
  RpcCall() = default;

 private:
  friend struct RpcServerCore;
  friend class RpcServerHandler;
  friend class RpcServer;

  RpcServerCore* core_ = nullptr;       // the server's bookkeeping (completion, timers)
  std::shared_ptr<RpcServerCore> keep_;  // shared calls keep it (they may outlive the server)
  const RpcService* service_ = nullptr;
  const RpcMethod* method_ = nullptr;
  ConnHandle conn_;                     // where the answer goes
  int loop_ = -1;                       // the connection's loop
  uint64_t request_id_ = 0;
  uint16_t flags_ = 0;
  bool one_way_ = false;
  bool held_ = false;                   // the connection is held until the answer is out
  bool registered_ = false;             // in the deadline registry (its lock guards this)
  uint16_t passed_ = 0;                 // filters whose on_request passed the call on
  RpcCompression reply_codec_ = RpcCompression::kNone;
  std::atomic<uint8_t> state_{0};       // pending, then one final state (rpc_server.cc)
  std::string_view request_;
  std::string owned_;                   // the request's bytes when the call owns them
  SockAddr peer_;
  Clock::time_point start_{};
  Clock::time_point deadline_{};
  Clock::time_point queued_{};          // kPool: when it was queued
};

/// A pointer to a call that a handler may keep and complete later, from any thread.
using RpcCallPtr = std::shared_ptr<RpcCall>;

/// A handler that answers when it returns: ok fills `response`; any other status is sent
/// as an error frame. Runs per RpcMethodOptions::exec.
using RpcUnaryHandler =
    std::function<RpcStatus(RpcCall& call, std::string_view request, std::string& response)>;
/// A handler that answers later: it keeps `call` and completes it exactly once, from any
/// thread (RpcCall::reply/fail/finish). Runs per RpcMethodOptions::exec.
using RpcAsyncHandler = std::function<void(RpcCallPtr call)>;

/// A method of a service (read-only once the server started).
struct RpcMethod {
  std::string name;          ///< unique within its service
  uint16_t id = 0;           ///< the frame's method field; unique within its service, not 0
  RpcMethodOptions options;  ///< timeout and where the handler runs
  RpcUnaryHandler unary;     ///< one of the two is set
  RpcAsyncHandler async;     ///< one of the two is set
  /// Golden signals, updated by the server (any thread); opaque.
  struct Counters;
  std::shared_ptr<Counters> counters;  ///< the method's golden signals (see write_metrics)
};

/// A filter (interceptor) around every call of a server or a service. Every hook may run
/// on any loop or pool thread, concurrently for different calls: keep state in atomics
/// or behind your own lock. Hooks must not block, nor throw (a throwing filter hook is
/// taken as INTERNAL, as a handler's).
class RINGNET_PROTO_EXPORT RpcServerFilter {
 public:
  virtual ~RpcServerFilter() = default;
  /// Before the handler, in filter order. Return non-ok to end the call with that status
  /// (the handler and later filters do not run). May replace the request
  /// (RpcCall::set_request).
  virtual RpcStatus on_request(RpcCall&) { return RpcStatus::ok(); }
  /// The answer about to be sent, in reverse filter order (only for filters whose
  /// on_request passed the call on). May change the status or the body.
  virtual void on_response(RpcCall&, RpcStatus&, std::string& /*body*/) {}
  /// After the call ended, any way (answered, deadline, cancelled, refused by a later
  /// filter), in reverse filter order, for each filter whose on_request ran and passed.
  virtual void on_complete(const RpcCall&, const RpcStatus&,
                           std::chrono::nanoseconds /*latency*/) {}
};

/// Refuses calls over `max_in_flight` at once with RESOURCE_EXHAUSTED (a bulkhead).
class RINGNET_PROTO_EXPORT RpcConcurrencyLimit final : public RpcServerFilter {
 public:
  /// At most `max_in_flight` calls between on_request and on_complete.
  explicit RpcConcurrencyLimit(uint64_t max_in_flight) : max_(max_in_flight) {}
  RpcStatus on_request(RpcCall&) override;
  void on_complete(const RpcCall&, const RpcStatus&, std::chrono::nanoseconds) override;
  /// Calls in flight now (passed by this filter and not ended).
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  /// Calls refused with RESOURCE_EXHAUSTED so far.
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  const uint64_t max_;
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> refused_{0};
};

/// Logs each finished call at info (`rpc SERVICE.METHOD CODE LATENCY us from PEER`),
/// errors at warn, at most `per_second` lines a second (the rest counted and
/// reported with the next line).
class RINGNET_PROTO_EXPORT RpcLogFilter final : public RpcServerFilter {
 public:
  /// At most `per_second` lines a second.
  explicit RpcLogFilter(uint32_t per_second = 10) : limit_(per_second) {}
  void on_complete(const RpcCall&, const RpcStatus&, std::chrono::nanoseconds) override;
  /// Lines written so far.
  uint64_t lines() const { return lines_.load(std::memory_order_relaxed); }

 private:
  LogRateLimit limit_;
  std::atomic<uint64_t> lines_{0};
};

/// Options of one service.
struct RpcServiceOptions {
  std::string name{};                ///< for logs, metrics (label service) and rpc.list
  std::vector<std::string> listen{}; ///< addresses (Engine::listen forms), at least one
  std::chrono::milliseconds timeout{5000};      ///< default per-call timeout
  std::chrono::milliseconds drain_limit{5000};  ///< shutdown: in-flight calls get this long
  RpcFrameOptions frame{};           ///< body_length bounds (10 MiB cap by default)
  size_t max_decompressed = kRpcDefaultMaxBody;  ///< a body inflating past this: closed
  /// How responses are compressed: kNone answers a compressed request with the same codec
  /// (above the threshold) and others raw; a codec here compresses every response above
  /// the threshold.
  RpcCompressionOptions compression{.codec = RpcCompression::kNone};
  /// A transport under every connection of this service's listeners: a TLS server
  /// context (`<ringnet/proto/tls.h>`). nullptr: plain TCP.
  std::shared_ptr<TransportFactory> transport{};
};

/// A service: a name, listeners, timeouts and a method table (see the file comment).
/// Threads: add_* before RpcServer::start; then read-only.
class RINGNET_PROTO_EXPORT RpcService {
 public:
  /// Registers a handler that answers on return. Refuses id 0 (rpc.list) and a name or id
  /// already taken.
  Status add_unary(std::string name, uint16_t id, RpcUnaryHandler handler,
                   RpcMethodOptions options = {});
  /// Registers a handler that completes its call later (RpcCallPtr), from any thread.
  Status add_async(std::string name, uint16_t id, RpcAsyncHandler handler,
                   RpcMethodOptions options = {});
  /// Adds a filter that runs for this service's calls, after the server's filters.
  void add_filter(std::shared_ptr<RpcServerFilter> filter);

  /// The options it was created with.
  const RpcServiceOptions& options() const { return options_; }
  /// Its name.
  const std::string& name() const { return options_.name; }
  /// The method with this id, or nullptr.
  const RpcMethod* find(uint16_t id) const;
  /// The method with this name, or nullptr.
  const RpcMethod* find(std::string_view name) const;
  /// Every method, rpc.list first.
  const std::vector<std::unique_ptr<RpcMethod>>& methods() const { return methods_; }
  /// Bound addresses, in options().listen order (ports resolved); after start().
  const std::vector<SockAddr>& addrs() const { return addrs_; }

  /// Use RpcServer::add_service.
  explicit RpcService(RpcServiceOptions options);
  RpcService(const RpcService&) = delete;
  RpcService& operator=(const RpcService&) = delete;
  ~RpcService();

 private:
  friend class RpcServer;
  friend class RpcServerHandler;
  friend struct RpcServerCore;
  Status add(std::unique_ptr<RpcMethod> method);
  void add_list_method();

  RpcServiceOptions options_;
  RpcFrameCodec codec_;
  std::vector<std::unique_ptr<RpcMethod>> methods_;
  std::vector<const RpcMethod*> by_id_;  // index = id (sparse, grown on demand)
  std::vector<std::shared_ptr<RpcServerFilter>> filters_;
  std::vector<SockAddr> addrs_;
  RpcFrameCodec reply_codec_;     // answers: max_body only (min_body is for requests)
  int index_ = 0;
  bool drain_cancelled_ = false;  // shutdown passed its drain limit (the server's lock)
  mutable std::atomic<uint64_t> in_flight_{0};  // dispatched and not ended: the drain waits
};

/// Counters of an RpcServer (RpcServer::stats), merged over services and methods.
struct RpcServerStats {
  uint64_t calls = 0;                ///< requests and one-way frames dispatched
  uint64_t ok = 0;                   ///< answered with a response
  uint64_t errors = 0;               ///< dispatched calls answered with an error frame (any
                                     ///< code); refusals before dispatch are counted in
                                     ///< unknown_method and unavailable instead
  uint64_t deadline_exceeded = 0;    ///< of those, ended by their deadline
  uint64_t cancelled = 0;            ///< ended by the drain limit or their connection's close
  uint64_t unavailable = 0;          ///< refused while draining
  uint64_t unknown_method = 0;       ///< no such method
  uint64_t late_completions = 0;     ///< completions after the call had ended, dropped
  uint64_t double_completions = 0;   ///< second completions of an answered call, refused
  uint64_t handler_exceptions = 0;   ///< handlers (or filters) that threw: INTERNAL
  uint64_t protocol_errors = 0;      ///< malformed frames: connection closed
  uint64_t decompress_refused = 0;   ///< bodies over max_decompressed or not inflating right
  uint64_t in_flight = 0;            ///< gauge: calls dispatched and not ended
};

/// Options of an RpcServer.
struct RpcServerOptions {
  Options engine{};       ///< the engine serving every service (loops, backend...)
  WorkerPoolOptions pool{.threads = 4, .queue_capacity = 4096, .name = "rpc-pool"};  ///< kPool
  std::string admin{};    ///< admin listener (/metrics, /healthz); empty: none
};

/// Services over one Engine (see the file comment).
/// Threads: see the file comment.
class RINGNET_PROTO_EXPORT RpcServer {
 public:
  /// A server with `options`; nothing listens until start().
  explicit RpcServer(RpcServerOptions options = {});
  ~RpcServer();  ///< shuts down (deadline 0) if still running
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  /// Adds a service; before start(). The reference stays valid for the server's life.
  RpcService& add_service(RpcServiceOptions options);
  /// Adds a filter that runs for every service's calls, before the services' own.
  void add_filter(std::shared_ptr<RpcServerFilter> filter);

  /// Binds every service's addresses, starts the pool and the engine. Errors (an address
  /// in use, a service without addresses, two services with one name) come back here.
  Status start();
  /// Blocks until the server has stopped: the engine, and a shutdown() in progress.
  void wait();
  /// start(), then waits for SIGTERM/SIGINT and runs shutdown(deadline) on it; returns
  /// once the drain is over. Construct the server, and call this, before any other thread
  /// exists (see ShutdownOnSignals).
  Status run_until_signal(std::chrono::milliseconds deadline);
  /// Any thread: the drain of the file comment; returns when it is over (a second call
  /// waits for the first). From a handler (a loop or pool thread of this server) it starts
  /// the drain on its own thread and returns at once. Before start() it is remembered:
  /// start() then drains at once.
  void shutdown(std::chrono::milliseconds deadline);

  /// The service with this name, or nullptr.
  RpcService* service(std::string_view name);
  /// The engine (for listen_admin, add_metrics, stats...).
  Engine& engine();
  /// Counters, all services. Any thread.
  RpcServerStats stats() const;
  /// ringnet_rpc_* families, per service and method (labels service, method, code).
  /// Any thread; the server registers it with its engine's /metrics.
  void write_metrics(MetricsWriter& w) const;

  /// Server internals.
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringnet::proto
