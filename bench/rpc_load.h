// SPDX-License-Identifier: MIT
// rpc_load: the closed-loop unary RPC load generator of bench/rpc_compare.sh (rpc_load.cc
// says what it measures). This header is what its two clients share: the options, and
// the measured window that both feed the same way, so that "calls/s", latency and the
// server's CPU mean the same thing for ringnet and for gRPC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "latency_histogram.h"

namespace bench {

enum class RpcTarget { kRingnet, kGrpc };

struct RpcLoadOptions {
  RpcTarget target = RpcTarget::kRingnet;
  std::string host = "127.0.0.1";
  int port = 0;
  size_t conns = 50;         // concurrent callers, one call in flight each
  size_t channels = 0;       // gRPC channels the callers share (0: one per caller)
  size_t size = 64;          // request body bytes (the echo's too)
  double duration_s = 5.0;   // measured window
  double warmup_s = 1.0;     // calls before the window, not counted
  uint16_t method = 1;       // ringnet: the echo method's id
  int server_pid = 0;        // 0: no server CPU
};

// CLOCK_MONOTONIC in nanoseconds.
int64_t monotonic_ns();

// The warm-up, then the measured window, on the client's one thread. The client calls
// begin(now) once its callers are connected, then tick(now) at the top of each turn of its
// event loop, before handling what the turn brought, and completed()/error() for each call. The window opens at the first tick past
// the warm-up and closes at the first tick past its end; the server's and this process's
// CPU time are read at exactly those two ticks, and the calls counted are the ones
// completed between them, so the three figures cover one and the same interval.
// Threads: one thread only.
class MeasureWindow {
 public:
  explicit MeasureWindow(const RpcLoadOptions& o);

  // Starts the warm-up at now_ns.
  void begin(int64_t now_ns);

  // False once the window has closed: stop the load.
  bool tick(int64_t now_ns);
  // Nanoseconds until the next boundary (warm-up end or window end), at least 0.
  int64_t ns_to_boundary(int64_t now_ns) const;

  void completed(int64_t sent_ns, int64_t now_ns) {
    if (!measuring_) return;
    ++calls_;
    latency_.record(static_cast<uint64_t>(now_ns - sent_ns));
  }
  void error() { ++errors_; }  // any time, warm-up included

  uint64_t calls() const { return calls_; }
  uint64_t errors() const { return errors_; }
  double seconds() const;
  const LatencyHistogram& latency() const { return latency_; }
  double server_cpu_s() const { return server_cpu_s_; }  // negative: not measured
  double client_cpu_s() const { return client_cpu_s_; }

 private:
  int server_pid_;
  int64_t warmup_ns_;
  int64_t duration_ns_;
  int64_t open_at_ns_ = 0;   // when the warm-up ends
  int64_t close_at_ns_ = 0;  // when the window ends (set again when it opens)
  int64_t opened_ns_ = 0;  // actual start (the tick that opened it)
  int64_t closed_ns_ = 0;  // actual end
  bool measuring_ = false;
  bool closed_ = false;
  uint64_t calls_ = 0;
  uint64_t errors_ = 0;
  LatencyHistogram latency_;
  double server_cpu0_ = -1, client_cpu0_ = 0;
  double server_cpu_s_ = -1, client_cpu_s_ = 0;
};

// The two clients. Each connects, runs the warm-up and window, stops its callers, and
// leaves the figures in `window`. Connection failures are reported on stderr and counted
// as errors.
void run_ringnet_load(const RpcLoadOptions& o, MeasureWindow& window);
void run_grpc_load(const RpcLoadOptions& o, MeasureWindow& window);  // rpc_load_grpc.cc

}  // namespace bench
