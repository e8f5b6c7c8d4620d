// SPDX-License-Identifier: MIT
// Scheduler: what the leading dispatcher does with its jobs. It fires each scheduled time
// as a run (id = job@time), sends it to a worker by routing key, retries it by the job's
// policy, and records per job the time up to which every run has ended (the watermark)
// in the coordinator, fenced by the leader's token.
//
// Why a watermark and not "last fired": a leader that dies between firing a run and its end
// must not make its successor skip that run. So the stored time only passes a scheduled
// time once its run has ended (succeeded, failed for good, or was skipped by policy). A new
// leader fires every time after the watermark again: the runs that were still in flight go
// out a second time with the same run id, and the workers' dedupe answers them without
// running them twice. Missed times (while no leader was up) are fired once on take-over.
//
// Concurrency policies, for a time that comes due while a run of the same job is still open:
//   skip   it is counted as skipped and never runs (catch-up after a failover included)
//   queue  it waits, and runs when the open one ends, in order
//   allow  it runs at once
//
// Threads: everything runs on the dispatcher's control thread (the only user of its
// Coordinator) but wake() and write_metrics(). RPC completions arrive on other threads: the
// `done` that fire() hands to the RoutedRpcClient queues them and wakes the control thread
// out of wait(); tick() takes them.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <ringnet/metrics.h>
#include <ringnet/proto/routed_rpc.h>

#include "coordinator.h"
#include "job_config.h"

namespace jobs {

// Counters of one job, read by the metrics collector on another thread.
struct JobCounters {
  std::atomic<uint64_t> fired{0}, succeeded{0}, retried{0}, deduped{0}, skipped{0};
  std::array<std::atomic<uint64_t>, 17> failed{};  // by RpcCode
};

class Scheduler {
 public:
  // Routes a service's calls: the RoutedRpcClient of that service's workers (or null).
  using Route = std::function<ringnet::proto::RoutedRpcClient*(const std::string& service)>;

  Scheduler(JobConfig config, Route route);

  // Became leader with `token`: reads every job's watermark (a job never seen starts at
  // `now`, stored at once so a successor starts there too). False on a coordinator error.
  bool lead(Coordinator& coord, const std::string& owner, uint64_t token, TimeMs now);
  // No longer leader: forget open runs; their late completions are ignored.
  void follow();
  // Ends what completed, fires what is due, retries what waited long enough, stores the
  // watermarks. kLost when the coordinator fenced us out (the caller steps down), kError
  // when a write failed (the caller keeps leading and the write is tried again later).
  // Also when following: it then only drops completions of an old term.
  CoordResult tick(Coordinator& coord, TimeMs now);
  // The earliest time tick() has work (a schedule or a retry); kNever when none.
  TimeMs next_due() const;

  // Waits until `deadline` (steady clock), a completion, or wake(). Control thread.
  void wait(std::chrono::steady_clock::time_point deadline);
  void wake();

  // Metrics: jobs_* families (runs by outcome, schedule lag). Any thread.
  void write_metrics(ringnet::MetricsWriter& w) const;

 private:
  struct Run {
    int attempt = 0;
    bool in_flight = false, done = false, queued = false;
    TimeMs retry_at = Schedule::kNever;
  };
  struct Job {
    JobSpec spec;
    std::unique_ptr<JobCounters> counters = std::make_unique<JobCounters>();
    TimeMs watermark{};            // every time <= it has ended (as stored)
    TimeMs stored{};               // the watermark the coordinator has
    TimeMs next = Schedule::kNever;  // the next time not yet fired
    std::map<TimeMs, Run> open;    // fired, queued or retrying, by scheduled time
  };
  struct Completion {
    uint64_t term;
    size_t job;
    TimeMs scheduled;
    ringnet::proto::RpcCode code;
    bool dup;
    std::string node, message;
  };

  void fire(size_t j, TimeMs t, Run& run, TimeMs now);
  void end(size_t j, const Completion& c, TimeMs now);
  bool has_running(const Job& job) const;

  std::vector<Job> jobs_;
  Route route_;
  std::string owner_;
  uint64_t term_ = 0;  // the leadership the open runs belong to (its token)
  std::mt19937_64 rng_{std::random_device{}()};
  std::mutex mu_;      // completions_, woken_ (the only state other threads touch)
  std::condition_variable cv_;
  std::deque<Completion> completions_;
  bool woken_ = false;
  mutable std::mutex lag_mu_;
  ringnet::Log2Histogram lag_ms_;  // first attempt's start - scheduled time, in ms
};

}  // namespace jobs
