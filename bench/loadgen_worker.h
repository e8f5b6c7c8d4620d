// SPDX-License-Identifier: MIT
// One load-generator thread over its share of the connections. Deliberately independent
// of the engine under test.
//
// Worker holds what both clients share: the connect phase (non-blocking connects paced
// through a private epoll set), per-connection stream positions, payload verification,
// latency slots and statistics. EpollWorker (loadgen_worker.cc) and UringWorker
// (loadgen_uring_worker.cc) only move bytes: they call absorb() with what arrived and
// implement flush() to send what next_send() allows.
//
// Life of a worker (driven by RunControl, written by the main thread):
//
//   init() -> connect_all() -> echo_once() --ready--> wait for go
//     --> traffic loop until window end or stop
//     \-> (idle mode) hold loop until stop (echo_once: --idle-echo only)
//
// Thread-safety: a Worker is used by its own thread only; the main thread reads stats()
// after join(). RunControl fields are atomics shared by all.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
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
  virtual ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run();  // thread body
  const WorkerStats& stats() const { return stats_; }

 protected:
  enum class State { kIdle, kConnecting, kOpen, kClosed };
  struct Conn {
    int fd = -1;
    uint64_t id = 0;
    State state = State::kIdle;
    uint64_t tx_seq = 0;    // next byte to send: message tx_seq at offset tx_off
    size_t tx_off = 0;
    size_t tx_pending = 0;  // bytes in a submitted, not yet completed send (io_uring)
    uint64_t rx_seq = 0;    // next byte expected back: message rx_seq at offset rx_off
    size_t rx_off = 0;
    bool rx_bad = false;    // current message already failed verification
  };

  static constexpr size_t kMaxIov = 64;

  // conn_ids: the global ids of the connections this worker owns (they seed payloads).
  Worker(const LoadgenOptions& opts, const Target& target, std::vector<uint64_t> conn_ids,
         RunControl* control);

  virtual bool init() { return true; }  // on the worker thread, before connecting
  virtual void traffic_loop() = 0;
  virtual void hold_loop() = 0;
  virtual void flush(Conn& c) = 0;       // send what the pipeline allows
  virtual void close_conn(Conn& c);      // close the socket, mark the connection closed

  // Stamps every pipeline slot with now and flushes every connection.
  void begin_traffic();
  bool window_over() const;
  // Verifies and consumes n echoed bytes, completes messages, flushes if any completed.
  void absorb(Conn& c, const char* data, size_t n, int64_t now);
  // Fills iov with the next bytes the pipeline allows, at most max_bytes; returns the
  // count (0: nothing to send).
  size_t next_send(const Conn& c, size_t max_bytes, iovec* iov, size_t* bytes) const;
  void advance_sent(Conn& c, size_t n);  // the kernel took n more bytes
  void fail(Conn& c, const std::string& why);
  size_t index_of(const Conn& c) const { return static_cast<size_t>(&c - conns_.data()); }

  const LoadgenOptions& opts_;
  RunControl* control_;
  int epfd_ = -1;  // connect phase; the epoll client keeps using it
  std::vector<Conn> conns_;
  WorkerStats stats_;

 private:
  bool connect_all();
  bool echo_once();
  int start_connect(Conn& c);
  void finish_connect(Conn& c, uint32_t events, size_t* in_flight);
  void wait_for_go();
  void complete_message(Conn& c, int64_t now);
  int64_t* sent_at(const Conn& c, uint64_t seq) {
    return &sent_at_[index_of(c) * opts_.pipeline + seq % opts_.pipeline];
  }

  Target target_;
  std::vector<int64_t> sent_at_;  // send time of in-flight messages, pipeline slots per conn
  int64_t window_start_ = 0;
};

// Prints the first few error lines to stderr (one broken server may fail thousands).
void report_error(const std::string& line);

std::unique_ptr<Worker> make_epoll_worker(const LoadgenOptions& opts, const Target& target,
                                          std::vector<uint64_t> conn_ids, RunControl* control);
std::unique_ptr<Worker> make_uring_worker(const LoadgenOptions& opts, const Target& target,
                                          std::vector<uint64_t> conn_ids, RunControl* control);

// True when this kernel gives us a ring with a provided-buffer ring; else why not.
bool uring_available(std::string* why);

}  // namespace bench
