// SPDX-License-Identifier: MIT
/// @file
/// RoutedRpcClient: RPC calls addressed by a routing key instead of a peer address. A
/// HashRouter picks the node, an RpcClient (over its PeerPool) makes the call, and the
/// outcome goes back to the router, so failing nodes are ejected and their keys move:
///
///   ringnet::proto::HashRouter router({.load_epsilon = 0.25});
///   router.set_nodes({"tcp://10.0.0.7:9000", "tcp://10.0.0.8:9000"});
///   ringnet::proto::RoutedRpcClient routed(rpc, router, {.probe_interval = 1s});
///   routed.call("user:42", kGetUser, body, {.timeout = 100ms, .idempotent = true},
///               [](const RpcStatus& s, std::string_view body, const std::string& node) {...});
///
/// A call acquires its node from the router (bounded load counts it in flight there) and
/// releases it when the call ends. Node health, reported to the router per attempt:
///   ok, or an error frame of the application (any code but the two below)   success
///   kUnavailable (connection refused or lost, draining server), kDeadline-   failure
///   Exceeded (no answer in time)
/// Cancelled calls report nothing. An idempotent call that fails with kUnavailable is tried
/// once more on the key's next node (HashRouter::acquire's `avoid`), within its deadline;
/// RpcClient's own retries to the same address happen below that (RpcClientOptions).
///
/// Probes. With probe_interval set, a thread of its own calls `probe_method` (default 0,
/// rpc.list, which every RpcServer answers) on every node each interval and reports the
/// outcome: that is how an ejected node, which gets no calls, earns its way back.
///
/// Threads: call(), cancel() and stats() from any thread. `done` runs where RpcClient's
/// does (a loop thread, its timer thread, the caller's), or on the destructor's thread.
///
/// Lifetime. The RpcClient and the HashRouter must outlive this object. The destructor stops
/// the probes and cancels every call still in flight (their `done` runs with kCancelled,
/// once), and waits for callbacks already running on other threads: once it returns, no
/// `done` of this object runs. A `done` must not wait for the thread destroying it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "ringnet/config.h"
#include "ringnet/proto/hash_router.h"
#include "ringnet/proto/rpc_client.h"
#include "ringnet/proto/rpc_status.h"

namespace ringnet::proto {

/// Options of RoutedRpcClient.
struct RoutedRpcOptions {
  std::chrono::milliseconds probe_interval{0};  ///< 0 = no probes
  std::chrono::milliseconds probe_timeout{500};  ///< a probe unanswered this long failed
  uint16_t probe_method = 0;                    ///< 0 = rpc.list
  bool next_node_on_unavailable = true;         ///< idempotent calls: one more node (above)
};

/// Counters of one RoutedRpcClient. Threads: a plain value.
struct RoutedRpcStats {
  uint64_t calls = 0;        ///< call() invocations
  uint64_t no_node = 0;      ///< calls ended at once: the router had no node (kUnavailable)
  uint64_t rerouted = 0;     ///< idempotent calls tried again on their next node
  uint64_t probes = 0;       ///< probe calls made
  uint64_t probe_failures = 0;  ///< probes that failed (UNAVAILABLE, no answer in time)
  uint64_t in_flight = 0;    ///< gauge: calls not yet ended
};

/// Calls routed by key over a HashRouter and an RpcClient (see the file comment).
/// Threads: any; see the file comment.
class RINGNET_PROTO_EXPORT RoutedRpcClient {
  struct RINGNET_HIDDEN State;

 public:
  /// Called exactly once per call: how it ended, the response body (valid during the call;
  /// empty unless ok) and the node that answered or failed last ("" when none was tried).
  using Done = std::function<void(const RpcStatus&, std::string_view body, const std::string& node)>;

  /// Calls through `rpc` to the nodes of `router`, both of which must outlive it; starts the
  /// probe thread when options.probe_interval is set.
  RoutedRpcClient(RpcClient& rpc, HashRouter& router, RoutedRpcOptions options = {});
  ~RoutedRpcClient();  ///< cancels calls in flight (see "Lifetime")
  RoutedRpcClient(const RoutedRpcClient&) = delete;
  RoutedRpcClient& operator=(const RoutedRpcClient&) = delete;

  /// Starts a call to the node of `key`; returns its id (for cancel). Any thread.
  uint64_t call(std::string_view key, uint16_t method, std::string body, RpcCallOptions options,
                Done done);
  /// Ends the call with kCancelled if it has not ended; true if it had not.
  bool cancel(uint64_t id);
  /// One round of probes now (what the probe thread does each interval). Any thread.
  void probe();

  /// A snapshot of the counters and the gauge. Any thread.
  RoutedRpcStats stats() const;

 private:
  static void probe_state(const std::shared_ptr<State>& st);
  std::shared_ptr<State> state_;  // held weakly by the callbacks handed to the RpcClient
  std::thread prober_;
};

}  // namespace ringnet::proto
