// One load-generator thread: its own edge-triggered epoll loop over its share of the
// connections. Deliberately independent of the engine under test.
//
// Life of a worker (driven by RunControl, written by the main thread):
//
//   connect_all() --ready--> wait for go --> traffic loop until window end or stop
//                                        \-> (idle mode) hold loop until stop
//
// Thread-safety: a Worker is used by its own thread only; the main thread reads stats()
// after join(). RunControl fields are atomics shared by all.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "latency_histogram.h"
#include "loadgen_options.h"

namespace bench {

struct RunControl {
  std::atomic<int> ready{0};            // workers that finished connecting (ok or not)
  std::atomic<bool> go{false};          // start traffic (or holding, in idle mode)
  std::atomic<bool> stop{false};        // leave now (signal, idle release, failure)
  std::atomic<int64_t> window_start_ns{0};  // CLOCK_MONOTONIC; completions counted in
  std::atomic<int64_t> window_end_ns{0};    // [start, end); workers quit at end
};

struct WorkerStats {
  uint64_t messages = 0;       // fully echoed inside the window
  uint64_t connected = 0;      // connections established
  uint64_t verify_errors = 0;  // messages whose echo differed from what was sent
  uint64_t conn_errors = 0;    // failed connects, resets, early closes, extra bytes
  LatencyHistogram latency;
};

struct Target {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool tcp = true;
};

// Resolves the --host/--port or --unix target; returns false with a message on failure.
bool resolve_target(const LoadgenOptions& opts, Target* out, std::string* error);

int64_t monotonic_ns();

class Worker {
 public:
  // conn_ids: the global ids of the connections this worker owns (they seed payloads).
  Worker(const LoadgenOptions& opts, const Target& target, std::vector<uint64_t> conn_ids,
         RunControl* control);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run();  // thread body
  const WorkerStats& stats() const { return stats_; }

 private:
  enum class State { kIdle, kConnecting, kOpen, kClosed };
  struct Conn {
    int fd = -1;
    uint64_t id = 0;
    State state = State::kIdle;
    uint64_t tx_seq = 0;  // next byte to send: message tx_seq at offset tx_off
    size_t tx_off = 0;
    uint64_t rx_seq = 0;  // next byte expected back: message rx_seq at offset rx_off
    size_t rx_off = 0;
    bool rx_bad = false;  // current message already failed verification
  };

  bool connect_all();
  int start_connect(Conn& c);
  void finish_connect(Conn& c, uint32_t events, size_t* in_flight);
  void wait_for_go();
  void traffic_loop();
  void hold_loop();
  void on_traffic_event(Conn& c, uint32_t events);
  void read_echoes(Conn& c);
  void serve_still_readable();
  void absorb(Conn& c, const char* data, size_t n, int64_t now);
  void complete_message(Conn& c, int64_t now);
  void flush(Conn& c);
  void fail(Conn& c, const std::string& why);
  int epoll_wait_until(int64_t deadline_ns);
  int64_t* sent_at(const Conn& c, uint64_t seq) {
    return &sent_at_[(&c - conns_.data()) * opts_.pipeline + seq % opts_.pipeline];
  }

  const LoadgenOptions& opts_;
  Target target_;
  RunControl* control_;
  int epfd_ = -1;
  std::vector<Conn> conns_;
  std::vector<int64_t> sent_at_;  // send time of in-flight messages, pipeline slots per conn
  std::vector<char> rbuf_;
  std::vector<uint32_t> still_readable_;  // hit the per-wakeup read cap; data may remain
  std::vector<uint32_t> serving_;
  WorkerStats stats_;
  int64_t window_start_ = 0;
};

}  // namespace bench
