// SPDX-License-Identifier: MIT
// RpcServerCore: what RpcServer, RpcCall and the metrics share (private to the library).
//
// One owner per piece of state:
//   - a call's outcome: RpcCall::state_, decided once by compare-and-swap (kPending to a
//     final state) by whichever comes first: the handler's completion, the deadline
//     timer, the drain's cancel. The winner sends the answer and does the accounting.
//   - the deadline registry (calls still pending after their handler returned): one lock,
//     one timer thread; a call leaves it when it ends or is destroyed.
//   - connections: their loops. Answers from other threads travel through
//     ConnHandle::dispatch; a held connection (RpcCall::held_) is released there.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "ringnet/proto/rpc_server.h"

namespace ringnet::proto {

// RpcCall::state_ values.
enum : uint8_t {
  kCallPending = 0,
  kCallAnswered = 1,  // the handler (or a filter, or the dispatcher) completed it
  kCallExpired = 2,   // the deadline passed first
  kCallCancelled = 3, // the drain limit passed first
};

// A Log2Histogram filled from any thread.
struct AtomicLog2 {
  std::array<std::atomic<uint64_t>, Log2Histogram::kBuckets> buckets{};
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> sum{0};
  void add(uint64_t v) {
    buckets[static_cast<size_t>(Log2Histogram::bucket_of(v))].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    sum.fetch_add(v, std::memory_order_relaxed);
  }
  Log2Histogram snapshot() const;
};

struct RpcMethod::Counters {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> in_flight{0};
  std::array<std::atomic<uint64_t>, kRpcCodeCount> codes{};
  std::atomic<uint64_t> bytes_in{0}, bytes_in_wire{0}, bytes_out{0}, bytes_out_wire{0};
  AtomicLog2 latency_ns;
  AtomicLog2 queue_ns;  // kPool: queued to started
};

struct RpcServerCore {
  explicit RpcServerCore(RpcServerOptions options);
  ~RpcServerCore();

  // ---- completion (any thread) ----
  // Ends `call` with `status` (and `body` when ok) if it is still pending; false if not
  // (counted as late or double). `final_state` says who ends it.
  bool complete(RpcCall& call, RpcStatus status, std::string body, uint8_t final_state);
  // The answer's bytes, and where they go.
  void send(RpcCall& call, const RpcStatus& status, std::string& body);
  void account(RpcCall& call, const RpcStatus& status);

  // ---- deadline registry ----
  void track(RpcCall& call);    // loop thread, after the handler left it pending
  void untrack(RpcCall& call);  // any thread
  void timer_main();
  void stop_timer();
  // Ends every pending call of `service` (nullptr: all) with CANCELLED.
  size_t cancel_pending(const RpcService* service);
  size_t pending(const RpcService* service);
  RpcServerStats snapshot() const;

  RpcServerOptions options;
  std::vector<std::unique_ptr<RpcService>> services;
  std::vector<std::shared_ptr<RpcServerFilter>> filters;  // server-wide, run first
  std::unique_ptr<WorkerPool> pool;
  std::atomic<bool> draining{false};

  // Counters (any thread).
  std::atomic<uint64_t> calls{0}, ok{0}, errors{0}, deadline_exceeded{0}, cancelled{0},
      unavailable{0}, unknown_method{0}, late_completions{0}, double_completions{0},
      handler_exceptions{0}, protocol_errors{0}, decompress_refused{0}, in_flight{0};

  // The engine's life, for answers sent from other threads (ConnHandle::dispatch needs
  // the Engine object): shared while dispatching, exclusive when the server lets it go.
  std::shared_mutex engine_mu;
  bool engine_gone = false;

  // Wakes a drain waiting for a service's calls (after any call ended while draining).
  void notify_drain();

  std::mutex mu;  // guards the registry and the timer thread's state
  std::condition_variable cv;
  std::condition_variable drained_cv;  // a tracked call ended (shutdown waits on it)
  std::set<std::pair<RpcCall::Clock::time_point, RpcCall*>> registry;
  bool timer_stop = false;
  std::thread timer;
  LogRateLimit error_log{10};
};

// The connection whose frames the current loop callback dispatches for `core` (set by
// RpcServer around read_frames; rpc_call.cc): an answer for it is written in place.
struct RpcCurrentConn {
  const RpcServerCore* core = nullptr;
  Conn* conn = nullptr;
};
RpcCurrentConn rpc_set_current(RpcCurrentConn now);
// The server this thread is working for (a loop callback or a pool job), or nullptr:
// shutdown() from there must not wait for itself.
const RpcServerCore* rpc_current_core();
void rpc_set_current_core(const RpcServerCore* core);

// The ringnet_rpc_* families (rpc_server_metrics.cc).
void write_rpc_metrics(const RpcServerCore& core, MetricsWriter& w);

}  // namespace ringnet::proto
