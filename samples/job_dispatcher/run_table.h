// SPDX-License-Identifier: MIT
// The job worker's run table (job_worker.cc): which runs it has executed or is executing,
// by run id, and the timer thread that finishes them after the simulated work.
//
//   request "<run_id>\n<payload>" ─> handle()
//     unknown id ── pending runs < capacity ─> pending: queued for now + delay
//                └─ else ─> RESOURCE_EXHAUSTED "busy" (nothing remembered)
//     pending    ─> the call is attached; answered with the run
//     done       ─> "dup <run_id> <address>" at once
//   timer: due ─> one line appended to the dedupe log ─> done; every attached call gets
//          "ok <run_id> <address>" (INTERNAL, and the run forgotten, if the write failed)
//
// Done runs are forgotten after 10 minutes, or oldest first beyond 100,000.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <ringnet/proto/rpc_server.h>

namespace jobs {

// A file opened for appending. Each line goes out in one write(2), so with O_APPEND lines
// from several processes sharing the file never interleave. Threads: append() from any.
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  ~AppendFile();

  // Opens (creating) `path`; false with errno set when it cannot.
  bool open(const std::string& path);
  bool is_open() const { return fd_ >= 0; }
  // 0, or the errno (EIO for a short write, as when the disk is full).
  int append(const std::string& line) const;

 private:
  int fd_ = -1;
};

// What the worker did, for /metrics and its exit line. Any thread.
struct WorkerCounters {
  std::atomic<uint64_t> runs{0};       // executed (logged)
  std::atomic<uint64_t> deduped{0};    // repeats of a done run
  std::atomic<uint64_t> waited{0};     // repeats attached to a pending run
  std::atomic<uint64_t> refused{0};    // new runs over capacity
  std::atomic<uint64_t> in_flight{0};  // gauge: pending runs
};

// Threads: handle() from any thread; set_address() from any; start() and stop() from the
// owning thread. One mutex guards the table; calls are answered outside it.
class RunTable {
 public:
  static constexpr std::chrono::minutes kKeepResults{10};
  static constexpr size_t kMaxResults = 100'000;
  static constexpr size_t kMaxRunId = 1024;

  // `attempts` may be null (no attempt log). Both files must outlive the table.
  RunTable(uint32_t capacity, std::chrono::milliseconds delay, const AppendFile& dedupe,
           const AppendFile* attempts);
  ~RunTable();  // stop()
  RunTable(const RunTable&) = delete;
  RunTable& operator=(const RunTable&) = delete;

  // The address replies and log lines name. Until it is set calls get UNAVAILABLE.
  void set_address(std::string address);
  // Starts the timer thread.
  void start();
  // Ends the timer thread; runs not finished are dropped with their calls (which have
  // ended by then when it is called after the server's drain). Idempotent.
  void stop();

  // The method's handler (see the file comment); completes `call` now or later.
  void handle(ringnet::proto::RpcCallPtr call);

  const WorkerCounters& counters() const { return counters_; }

 private:
  struct Run {
    bool done = false;
    std::vector<ringnet::proto::RpcCallPtr> waiters;  // while pending: first call, repeats
  };
  struct Due {
    std::chrono::steady_clock::time_point when;
    std::string run_id;
  };

  void timer_loop();
  void finish(const std::string& run_id);
  void forget_old(std::chrono::steady_clock::time_point now);

  const uint32_t capacity_;
  const std::chrono::milliseconds delay_;
  const AppendFile& dedupe_;
  const AppendFile* attempts_;
  WorkerCounters counters_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string address_;                        // empty until set_address
  std::unordered_map<std::string, Run> runs_;  // pending and done
  std::deque<Due> queue_;                      // pending runs, in due order (one delay)
  std::deque<Due> finished_;                   // done runs, in finish order (forget_old)
  uint32_t pending_ = 0;
  bool stopping_ = false;
  std::thread timer_;
};

}  // namespace jobs
