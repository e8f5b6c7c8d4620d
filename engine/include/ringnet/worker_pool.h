// SPDX-License-Identifier: MIT
/// @file
/// WorkerPool: a bounded pool of threads for the blocking work a handler must not do on its
/// loop (disk, DNS, a database call), in the spirit of Go's ants.
///
///   ringnet::WorkerPool pool({.threads = 8, .queue_capacity = 4096});
///   if (ringnet::Status s = pool.start(); !s) { ...s.message()... }
///
///   // in on_traffic (loop thread):
///   Status s = pool.submit(conn,
///       [key] { return db.lookup(key); },                        // pool thread, may block
///       [](ringnet::Conn& c, std::string&& row) { c.write(row).ignore(); });  // c's loop
///   if (!s) { /* queue full (code EAGAIN) or pool shut down: answer "busy" or close */ }
///
/// Life of a job:
///
///   submit ──> queued ──> running on a pool thread ──> reply posted to the conn's loop
///     │          │  (scheduling delay =                 │
///     │          │   submit to start)                   ├─ conn open   -> done(conn, result)
///     │          │                                      └─ conn closed -> discarded, counted
///     │          └─ shutdown(kDiscardQueued) -> cancelled, counted (on_error gets a Status)
///     └─ queue full -> error Status at once (EAGAIN), counted as rejected; nothing runs
///
/// Results: `work` runs on a pool thread; its result travels back through the connection's
/// loop task queue (ConnHandle::dispatch), so `done` runs on that loop's thread, never
/// concurrently with the connection's other callbacks, and what it writes is flushed at
/// the end of that loop iteration. If the connection has closed (or is closing: it takes no
/// more writes) by then, `done` does not run: the result is destroyed and counted in
/// results_discarded. The same happens when the engine stops before the loop could run the
/// reply (the reply is destroyed with the loop's queue).
///
/// Failures: exceptions never cross into the loop. If `work` throws, the pool thread
/// catches it, counts it in `failed` and logs it (rate-limited, warn); `done` does not run.
/// Pass `on_error` to hear about it on the connection's loop instead (for instance to answer
/// "internal error" or close the connection). `done` and `on_error` run on a loop thread and
/// must not throw or block, like every other callback. A fire-and-forget job that throws
/// is counted and logged the same way.
///
/// Shutdown: shutdown() (and the destructor) stop taking work, then by default finish every
/// job already queued (kDrain: nothing accepted is silently dropped) and join the threads.
/// shutdown(kDiscardQueued) instead drops the jobs that have not started, counting them in
/// `cancelled` and handing on_error (when given) a "worker pool shut down" Status; jobs
/// already running always finish. Replies produced during shutdown are delivered if their
/// loop still runs.
///
/// Lifetime: replies reach connections through their Engine's loops, so the pool must be
/// shut down before the Engine it serves is destroyed (shutting it down after Engine::wait()
/// returned is fine: the replies are then discarded and counted). Declaring the pool after
/// the Engine, or calling shutdown() in EventHandler::on_shutdown, does that.
///
/// Thread-safety: submit() and stats() from any thread (the Conn& overload of submit needs
/// the Conn, so from that connection's loop thread). start() and shutdown() from the owning
/// thread, never from a pool thread (shutdown joins them); concurrent shutdown() calls are
/// safe. stats() reads atomics only and never takes the queue lock.
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/metrics.h"
#include "ringnet/status.h"

namespace ringnet {

/// How a WorkerPool is sized.
struct WorkerPoolOptions {
  size_t threads = 4;            ///< pool threads (0 is taken as 1)
  size_t queue_capacity = 1024;  ///< jobs waiting to start; a submit beyond this fails (0 -> 1)
  std::string name = "ringnet-pool";  ///< thread names: `name-<i>`, cut to 15 bytes
};

/// A histogram of durations with power-of-two microsecond buckets: bucket 0 holds durations
/// under 1 us, bucket i (1..kBuckets-2) holds [2^(i-1), 2^i) us, the last bucket holds
/// everything from 2^(kBuckets-2) us (about 18 minutes) up. A snapshot: plain values.
struct RINGNET_EXPORT DurationHistogram {
  /// Number of buckets.
  static constexpr size_t kBuckets = 32;
  /// Count of durations per bucket.
  std::array<uint64_t, kBuckets> buckets{};
  /// Number of durations recorded.
  uint64_t count = 0;
  /// Sum of the durations, in nanoseconds.
  uint64_t sum_ns = 0;
  /// Longest duration, in nanoseconds.
  uint64_t max_ns = 0;

  /// The bucket a duration of `us` microseconds falls in.
  static size_t bucket_for(uint64_t us);
  /// Exclusive upper bound of bucket i in microseconds (the last bucket has none: UINT64_MAX).
  static uint64_t bucket_upper_us(size_t i);

  /// Mean duration in microseconds, or 0 when empty.
  double mean_us() const { return count == 0 ? 0.0 : double(sum_ns) / double(count) / 1e3; }
  /// Estimate of the q-quantile (0 < q <= 1) in microseconds: the upper bound of the bucket
  /// holding it, capped at the maximum seen. So the true value is at most the estimate and
  /// (above 1 us) at least half of it. 0 when nothing was recorded.
  uint64_t quantile_us(double q) const;
  /// The 99th percentile in microseconds.
  uint64_t p99_us() const { return quantile_us(0.99); }
};

/// Counters since start(), merged over all pool threads; gauges are noted as such.
/// Once the pool is idle: submitted == completed + failed + cancelled, and
/// results_delivered + results_discarded == replies sent (one per connection job that
/// completed, plus failed/cancelled ones that had an on_error).
struct WorkerPoolStats {
  uint64_t submitted = 0;          ///< jobs accepted into the queue
  uint64_t rejected = 0;           ///< submits refused because the queue was full
  uint64_t completed = 0;          ///< jobs whose work returned normally
  uint64_t failed = 0;             ///< jobs whose work threw
  uint64_t cancelled = 0;          ///< queued jobs dropped by shutdown(kDiscardQueued)
  uint64_t results_delivered = 0;  ///< done / on_error ran on an open connection
  uint64_t results_discarded = 0;  ///< reply dropped: its connection had closed
  uint64_t queue_depth = 0;        ///< gauge: jobs waiting to start
  uint64_t busy_threads = 0;       ///< gauge: threads running a job now
  uint64_t threads = 0;            ///< pool threads started
  /// WorkerPoolOptions::queue_capacity in effect.
  uint64_t queue_capacity = 0;
  DurationHistogram scheduling_delay;  ///< submit to start of work
  DurationHistogram run_time;          ///< start to end of work
};

/// Called on the connection's loop thread when a job could not produce a result (its work
/// threw, or shutdown cancelled it); the Status says which.
using WorkerErrorCallback = std::function<void(Conn&, const Status&)>;

class WorkerPool;

namespace detail {

struct PoolShared;

/// One submitted job, type-erased. The pool owns it through a shared_ptr from submit until
/// its reply has run on the loop (or been dropped).
class RINGNET_EXPORT PoolJob {
 public:
  virtual ~PoolJob();  ///< counts a reply that never reached its loop as discarded
  PoolJob(const PoolJob&) = delete;
  PoolJob& operator=(const PoolJob&) = delete;

  /// Pool thread: the work. May throw; the pool catches.
  virtual void run() = 0;
  /// Loop thread, connection open, run() returned normally: hand over the result.
  virtual void deliver(Conn&) {}

 protected:
  PoolJob() = default;

 private:
  friend class ringnet::WorkerPool;
  enum class Reply : uint8_t { kNone, kPending, kSettled };

  ConnHandle target_;  // invalid for a fire-and-forget job
  WorkerErrorCallback on_error_;
  std::chrono::steady_clock::time_point enqueued_;
  std::shared_ptr<PoolShared> shared_;  // set when a reply is posted
  Reply reply_ = Reply::kNone;
  bool holds_conn_ = false;  // the target was held at submit: the reply releases it
};

template <typename Work>
class PlainJob final : public PoolJob {
 public:
  explicit PlainJob(Work work) : work_(std::move(work)) {}
  void run() override { work_(); }

 private:
  Work work_;
};

template <typename Work, typename Done, typename R>
class ConnJob final : public PoolJob {
 public:
  ConnJob(Work work, Done done) : work_(std::move(work)), done_(std::move(done)) {}
  void run() override {
    if constexpr (std::is_void_v<R>) {
      work_();
    } else {
      result_.emplace(work_());
    }
  }
  void deliver(Conn& c) override {
    if constexpr (std::is_void_v<R>) {
      done_(c);
    } else {
      done_(c, std::move(*result_));
    }
  }

 private:
  struct NoResult {};
  Work work_;
  Done done_;
  [[no_unique_address]] std::conditional_t<std::is_void_v<R>, NoResult, std::optional<R>>
      result_;
};

}  // namespace detail

/// A bounded pool of threads for the blocking work a handler must not do on its loop.
/// Threads: submit() and stats() from any thread (the Conn& overload of submit from that
/// connection's loop thread). start() and shutdown() from the owning thread, never from a
/// pool thread; concurrent shutdown() calls are safe.
class RINGNET_EXPORT WorkerPool {
 public:
  /// What shutdown() does with jobs not yet started.
  enum class ShutdownMode {
    kDrain,          ///< run every queued job, then stop (the default, and the destructor's)
    kDiscardQueued,  ///< drop the jobs not yet started (counted in `cancelled`)
  };

  /// A pool with `options`; no thread runs until start().
  explicit WorkerPool(WorkerPoolOptions options = {});
  ~WorkerPool();  ///< shutdown(kDrain)
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Starts the threads. Errors: already started or shut down, or a thread could not be
  /// created (then none is left running). Owning thread.
  Status start();

  /// Stops taking work (submit fails from now on), handles the queued jobs as `mode` says,
  /// waits for running jobs and joins the threads. Idempotent. Not from a pool thread.
  void shutdown(ShutdownMode mode = ShutdownMode::kDrain);

  /// Runs `work()` on a pool thread, then `done(conn, result)` on conn's loop thread if the
  /// connection is still open (`done(conn)` when work returns void); otherwise the result
  /// is discarded and counted. `on_error` (optional) gets failures, as described above.
  /// The connection is held (Conn::hold) until the reply has run, so a graceful drain
  /// waits for the answer. Work, Done may be move-only. Returns at once:
  ///   ok                                       queued
  ///   code EAGAIN, "worker pool queue full (capacity N): ..."   counted in `rejected`
  ///   code -1, "worker pool not started" / "worker pool is shut down"
  /// Loop thread of `conn`.
  template <typename Work, typename Done>
  Status submit(Conn& conn, Work&& work, Done&& done, WorkerErrorCallback on_error = {}) {
    return enqueue(make_job(std::forward<Work>(work), std::forward<Done>(done)), conn.handle(),
                   std::move(on_error), &conn);
  }
  /// The same for a connection known by its handle, from any thread. The connection is
  /// not held (a hold is loop-thread state): take one yourself if a drain must wait.
  template <typename Work, typename Done>
  Status submit(const ConnHandle& conn, Work&& work, Done&& done,
                WorkerErrorCallback on_error = {}) {
    return enqueue(make_job(std::forward<Work>(work), std::forward<Done>(done)), conn,
                   std::move(on_error), nullptr);
  }
  /// Fire-and-forget: runs `job()` on a pool thread; nothing comes back. Any thread.
  template <typename Job>
    requires std::invocable<std::decay_t<Job>&>
  Status submit(Job&& job) {
    return enqueue(
        std::make_shared<detail::PlainJob<std::decay_t<Job>>>(std::forward<Job>(job)), {}, {});
  }

  /// Any thread; lock-free (atomics only, so fields are not one consistent snapshot).
  WorkerPoolStats stats() const;
  /// Prometheus families ringnet_pool_* (jobs by outcome, queue depth, busy threads,
  /// scheduling delay and run time histograms), labelled pool="<options.name>". For
  /// Engine::add_metrics. Several pools go in one call: a family may appear only once.
  void write_metrics(MetricsWriter& w) const { write_metrics(w, {this}); }
  /// Writes the pools' stats as Prometheus metric families.
  static void write_metrics(MetricsWriter& w, std::initializer_list<const WorkerPool*> pools);
  /// The options the pool was built with.
  const WorkerPoolOptions& options() const { return options_; }

 private:
  struct RINGNET_HIDDEN Impl;
  template <typename Work, typename Done>
  static std::shared_ptr<detail::PoolJob> make_job(Work&& work, Done&& done) {
    using W = std::decay_t<Work>;
    using D = std::decay_t<Done>;
    static_assert(std::is_invocable_v<W&>, "work must be callable with no arguments");
    using R = std::invoke_result_t<W&>;
    static_assert(!std::is_reference_v<R>, "work must return by value (or void)");
    if constexpr (std::is_void_v<R>) {
      static_assert(std::is_invocable_v<D&, Conn&>,
                    "work returns void, so done must be callable as done(Conn&)");
    } else {
      static_assert(std::is_invocable_v<D&, Conn&, R&&>,
                    "done must be callable as done(Conn&, R&&), R being work's result");
    }
    return std::make_shared<detail::ConnJob<W, D, R>>(std::forward<Work>(work),
                                                      std::forward<Done>(done));
  }
  // `hold`: the connection to hold until the reply ran (loop thread), or null.
  Status enqueue(std::shared_ptr<detail::PoolJob> job, ConnHandle target,
                 WorkerErrorCallback on_error, Conn* hold = nullptr);

  WorkerPoolOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringnet
