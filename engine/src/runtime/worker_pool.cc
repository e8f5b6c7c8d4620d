// SPDX-License-Identifier: MIT
// WorkerPool: a fixed set of threads fed by a bounded ring of jobs under one mutex and
// condition variable. The pool is for blocking work (milliseconds, not nanoseconds), so a
// lock per submit and per start is cheap next to the work itself; the counters are atomics
// so stats() never contends with the queue.
//
// A job's reply travels back with ConnHandle::dispatch. The job object rides along in the
// loop task (shared_ptr), and whoever settles the reply counts it exactly once: the loop
// task (delivered, or discarded when the connection is gone), or the job's destructor when
// the task was destroyed without running (the engine stopped first). The counters live in
// PoolShared, shared with every job in flight, so a reply dropped after the pool is gone
// still counts into valid memory.
#include "ringnet/worker_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "ringnet/log.h"

namespace ringnet {

using Clock = std::chrono::steady_clock;

// ---- DurationHistogram --------------------------------------------------------------------

size_t DurationHistogram::bucket_for(uint64_t us) {
  return std::min<size_t>(std::bit_width(us), kBuckets - 1);
}

uint64_t DurationHistogram::bucket_upper_us(size_t i) {
  return i >= kBuckets - 1 ? UINT64_MAX : uint64_t{1} << i;
}

uint64_t DurationHistogram::quantile_us(double q) const {
  if (count == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const uint64_t max_us = (max_ns + 999) / 1000;
  uint64_t rank = static_cast<uint64_t>(q * double(count) + 0.999999);  // ceil, >= 1
  rank = std::clamp<uint64_t>(rank, 1, count);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += buckets[i];
    if (seen >= rank) return std::min(bucket_upper_us(i), max_us);
  }
  return max_us;  // buckets and count read at slightly different times
}

namespace detail {

// Lock-free recording side of a DurationHistogram.
struct AtomicHistogram {
  std::array<std::atomic<uint64_t>, DurationHistogram::kBuckets> buckets{};
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> sum_ns{0};
  std::atomic<uint64_t> max_ns{0};

  void record(Clock::duration d) {
    const uint64_t ns = static_cast<uint64_t>(
        std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
    buckets[DurationHistogram::bucket_for(ns / 1000)].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    sum_ns.fetch_add(ns, std::memory_order_relaxed);
    uint64_t seen = max_ns.load(std::memory_order_relaxed);
    while (ns > seen && !max_ns.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
  }

  DurationHistogram snapshot() const {
    DurationHistogram h;
    for (size_t i = 0; i < h.buckets.size(); ++i) {
      h.buckets[i] = buckets[i].load(std::memory_order_relaxed);
    }
    h.count = count.load(std::memory_order_relaxed);
    h.sum_ns = sum_ns.load(std::memory_order_relaxed);
    h.max_ns = max_ns.load(std::memory_order_relaxed);
    return h;
  }
};

// Counters shared by the pool and every job whose reply is in flight.
struct PoolShared {
  std::atomic<uint64_t> submitted{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> cancelled{0};
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> discarded{0};
  std::atomic<uint64_t> queue_depth{0};
  std::atomic<uint64_t> busy{0};
  std::atomic<uint64_t> threads{0};
  AtomicHistogram delay;
  AtomicHistogram run_time;
  LogRateLimit failure_log{5};
};

PoolJob::~PoolJob() {
  // A reply posted to a loop that was destroyed before running it (the engine stopped).
  if (reply_ == Reply::kPending) shared_->discarded.fetch_add(1, std::memory_order_release);
}

}  // namespace detail

// ---- WorkerPool::Impl -----------------------------------------------------------------------

using JobPtr = std::shared_ptr<detail::PoolJob>;

struct WorkerPool::Impl {
  explicit Impl(size_t capacity) : ring(capacity) {}

  // Pool thread: take jobs until stopping and the queue is empty.
  void worker_main();
  void execute(JobPtr job);
  // Posts the reply (result or error) of a connection job to its loop.
  void send_reply(JobPtr job, Status status);

  const std::shared_ptr<detail::PoolShared> shared = std::make_shared<detail::PoolShared>();

  // Guarded by mu: the ring of queued jobs and the lifecycle flags.
  std::mutex mu;
  std::condition_variable not_empty;
  std::vector<JobPtr> ring;
  size_t head = 0;  // oldest queued job
  size_t size = 0;
  bool started = false;
  bool stopping = false;

  std::mutex join_mu;  // serialises shutdown() callers
  std::vector<std::thread> threads;
};

void WorkerPool::Impl::worker_main() {
  for (;;) {
    JobPtr job;
    {
      std::unique_lock lock(mu);
      not_empty.wait(lock, [this] { return size > 0 || stopping; });
      if (size == 0) return;  // stopping, and the queue is drained
      job = std::move(ring[head]);
      head = (head + 1) % ring.size();
      --size;
      shared->queue_depth.store(size, std::memory_order_relaxed);
    }
    execute(std::move(job));
  }
}

void WorkerPool::Impl::execute(JobPtr job) {
  detail::PoolShared& s = *shared;
  const Clock::time_point start = Clock::now();
  s.delay.record(start - job->enqueued_);
  s.busy.fetch_add(1, std::memory_order_relaxed);
  Status error;
  try {
    job->run();
  } catch (const std::exception& e) {
    error = Status::invalid(fmt::format("worker pool job threw: {}", e.what()));
  } catch (...) {
    error = Status::invalid("worker pool job threw a non-standard exception");
  }
  s.run_time.record(Clock::now() - start);
  s.busy.fetch_sub(1, std::memory_order_relaxed);

  if (error.is_ok()) {
    s.completed.fetch_add(1, std::memory_order_release);
  } else {
    s.failed.fetch_add(1, std::memory_order_release);
    uint64_t suppressed = 0;
    if (log_enabled(LogLevel::kWarn) && s.failure_log.allow(&suppressed)) {
      if (suppressed == 0) {
        log(LogLevel::kWarn, "{}", error.message());
      } else {
        log(LogLevel::kWarn, "{} ({} similar lines suppressed)", error.message(), suppressed);
      }
    }
  }
  if (!job->target_.valid()) return;  // fire-and-forget
  // Nothing to hand back, and no hold to release.
  if (!error.is_ok() && !job->on_error_ && !job->holds_conn_) return;
  send_reply(std::move(job), std::move(error));
}

void WorkerPool::Impl::send_reply(JobPtr job, Status status) {
  // Written before dispatch posts the task: the task queue's lock orders it before the
  // loop thread (or the destructor, wherever the last reference goes) reads it.
  // A failure with no on_error travels back only to release the connection's hold: it is
  // no result, so it is counted neither delivered nor discarded.
  const bool release_only = !status.is_ok() && !job->on_error_;
  job->shared_ = shared;
  job->reply_ = release_only ? detail::PoolJob::Reply::kNone : detail::PoolJob::Reply::kPending;
  const ConnHandle target = job->target_;
  target.dispatch([job = std::move(job), status = std::move(status), release_only](Conn* c) {
    detail::PoolShared& s = *job->shared_;
    if (!release_only) job->reply_ = detail::PoolJob::Reply::kSettled;
    if (c == nullptr) {
      if (!release_only) s.discarded.fetch_add(1, std::memory_order_release);
      return;
    }
    if (status.is_ok()) {
      s.delivered.fetch_add(1, std::memory_order_release);
      job->deliver(*c);
    } else if (job->on_error_) {
      s.delivered.fetch_add(1, std::memory_order_release);
      job->on_error_(*c, status);
    }
    // After the answer was queued: a draining connection with nothing left closes now.
    if (job->holds_conn_) c->release();
  });
}

// ---- WorkerPool -----------------------------------------------------------------------------

WorkerPool::WorkerPool(WorkerPoolOptions options) : options_(std::move(options)) {
  options_.threads = std::max<size_t>(options_.threads, 1);
  options_.queue_capacity = std::max<size_t>(options_.queue_capacity, 1);
  impl_ = std::make_unique<Impl>(options_.queue_capacity);
}

WorkerPool::~WorkerPool() { shutdown(ShutdownMode::kDrain); }

Status WorkerPool::start() {
  std::lock_guard join_lock(impl_->join_mu);
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Status::invalid("worker pool is shut down");
    if (impl_->started) return Status::invalid("worker pool already started");
    impl_->started = true;
  }
  for (size_t i = 0; i < options_.threads; ++i) {
    try {
      impl_->threads.emplace_back([impl = impl_.get()] { impl->worker_main(); });
    } catch (const std::system_error& e) {
      const int err = e.code().value();
      {
        std::lock_guard lock(impl_->mu);
        impl_->stopping = true;
      }
      impl_->not_empty.notify_all();
      for (std::thread& t : impl_->threads) t.join();
      impl_->threads.clear();
      return Status::from_errno(err, fmt::format("worker pool: cannot start thread {}", i));
    }
    std::string name = options_.name + "-" + std::to_string(i);
    pthread_setname_np(impl_->threads.back().native_handle(), name.substr(0, 15).c_str());
  }
  impl_->shared->threads.store(options_.threads, std::memory_order_relaxed);
  return Status::ok();
}

void WorkerPool::shutdown(ShutdownMode mode) {
  std::lock_guard join_lock(impl_->join_mu);
  std::vector<JobPtr> dropped;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    if (mode == ShutdownMode::kDiscardQueued) {
      dropped.reserve(impl_->size);
      for (; impl_->size > 0; --impl_->size) {
        dropped.push_back(std::move(impl_->ring[impl_->head]));
        impl_->head = (impl_->head + 1) % impl_->ring.size();
      }
      impl_->shared->queue_depth.store(0, std::memory_order_relaxed);
    }
  }
  impl_->not_empty.notify_all();
  for (JobPtr& job : dropped) {
    impl_->shared->cancelled.fetch_add(1, std::memory_order_release);
    if (job->target_.valid() && (job->on_error_ || job->holds_conn_)) {
      impl_->send_reply(std::move(job), Status::invalid("worker pool shut down before the job ran"));
    }
  }
  for (std::thread& t : impl_->threads) {
    assert(t.get_id() != std::this_thread::get_id() && "shutdown() from a pool thread");
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
  impl_->shared->threads.store(0, std::memory_order_relaxed);
}

Status WorkerPool::enqueue(std::shared_ptr<detail::PoolJob> job, ConnHandle target,
                           WorkerErrorCallback on_error, Conn* hold) {
  job->target_ = target;
  job->holds_conn_ = hold != nullptr;  // before a pool thread can see the job
  job->on_error_ = std::move(on_error);
  job->enqueued_ = Clock::now();
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Status::invalid("worker pool is shut down");
    if (!impl_->started) return Status::invalid("worker pool not started");
    if (impl_->size == impl_->ring.size()) {
      impl_->shared->rejected.fetch_add(1, std::memory_order_relaxed);
      return Status::from_errno(
          EAGAIN, fmt::format("worker pool queue full (capacity {})", impl_->ring.size()));
    }
    impl_->ring[(impl_->head + impl_->size) % impl_->ring.size()] = std::move(job);
    ++impl_->size;
    impl_->shared->queue_depth.store(impl_->size, std::memory_order_relaxed);
    impl_->shared->submitted.fetch_add(1, std::memory_order_relaxed);
  }
  impl_->not_empty.notify_one();
  // On the loop thread, which is also where the reply runs (later), so it cannot come first.
  if (hold != nullptr) hold->hold();
  return Status::ok();
}

// Outcome counters are bumped with release and read with acquire, so a reader that sees a
// job's outcome also sees the gauges that job updated before it (busy, queue depth).
WorkerPoolStats WorkerPool::stats() const {
  const detail::PoolShared& s = *impl_->shared;
  WorkerPoolStats st;
  st.submitted = s.submitted.load(std::memory_order_acquire);
  st.rejected = s.rejected.load(std::memory_order_acquire);
  st.completed = s.completed.load(std::memory_order_acquire);
  st.failed = s.failed.load(std::memory_order_acquire);
  st.cancelled = s.cancelled.load(std::memory_order_acquire);
  st.results_delivered = s.delivered.load(std::memory_order_acquire);
  st.results_discarded = s.discarded.load(std::memory_order_acquire);
  st.queue_depth = s.queue_depth.load(std::memory_order_acquire);
  st.busy_threads = s.busy.load(std::memory_order_acquire);
  st.threads = s.threads.load(std::memory_order_acquire);
  st.queue_capacity = options_.queue_capacity;
  st.scheduling_delay = s.delay.snapshot();
  st.run_time = s.run_time.snapshot();
  return st;
}

void WorkerPool::write_metrics(MetricsWriter& w, std::initializer_list<const WorkerPool*> pools) {
  struct Row {
    std::string label;
    WorkerPoolStats st;
  };
  std::vector<Row> rows;
  for (const WorkerPool* p : pools) {
    rows.push_back({"pool=\"" + MetricsWriter::escape_label(p->options().name) + "\"", p->stats()});
  }
  auto counter = [&](std::string_view name, std::string_view help, uint64_t WorkerPoolStats::*f) {
    w.family(name, MetricType::kCounter, help);
    for (const Row& r : rows) w.value(r.label, r.st.*f);
  };
  auto gauge = [&](std::string_view name, std::string_view help, uint64_t WorkerPoolStats::*f) {
    w.family(name, MetricType::kGauge, help);
    for (const Row& r : rows) w.value(r.label, r.st.*f);
  };
  w.family("ringnet_pool_jobs_total", MetricType::kCounter, "Worker pool jobs, by outcome.");
  for (const Row& r : rows) {
    w.value(r.label + ",outcome=\"completed\"", r.st.completed);
    w.value(r.label + ",outcome=\"failed\"", r.st.failed);
    w.value(r.label + ",outcome=\"cancelled\"", r.st.cancelled);
    w.value(r.label + ",outcome=\"rejected\"", r.st.rejected);
  }
  counter("ringnet_pool_submitted_total", "Jobs accepted into the queue.",
          &WorkerPoolStats::submitted);
  w.family("ringnet_pool_results_total", MetricType::kCounter,
           "Job results sent back to a connection's loop: delivered, or discarded (closed).");
  for (const Row& r : rows) {
    w.value(r.label + ",fate=\"delivered\"", r.st.results_delivered);
    w.value(r.label + ",fate=\"discarded\"", r.st.results_discarded);
  }
  gauge("ringnet_pool_queue_depth", "Jobs waiting to start.", &WorkerPoolStats::queue_depth);
  gauge("ringnet_pool_queue_capacity", "Queue bound; submits beyond it are rejected.",
        &WorkerPoolStats::queue_capacity);
  gauge("ringnet_pool_busy_threads", "Pool threads running a job now.",
        &WorkerPoolStats::busy_threads);
  gauge("ringnet_pool_threads", "Pool threads started.", &WorkerPoolStats::threads);
  // DurationHistogram bucket i holds durations under 2^i us: cumulative counts per 4x.
  auto durations = [&](std::string_view name, std::string_view help,
                       DurationHistogram WorkerPoolStats::*f) {
    w.family(name, MetricType::kHistogram, help);
    for (const Row& r : rows) {
      const DurationHistogram& h = r.st.*f;
      std::vector<MetricsWriter::Bucket> buckets;
      uint64_t cumulative = 0;
      for (size_t i = 0; i + 1 < DurationHistogram::kBuckets; ++i) {
        cumulative += h.buckets[i];
        if (i % 2 == 0 && i <= 26) {
          buckets.push_back({double(DurationHistogram::bucket_upper_us(i)) * 1e-6, cumulative});
        }
      }
      w.histogram(r.label, buckets, double(h.sum_ns) * 1e-9, h.count);
    }
  };
  durations("ringnet_pool_scheduling_delay_seconds", "From submit to the start of the work.",
            &WorkerPoolStats::scheduling_delay);
  durations("ringnet_pool_run_seconds", "From the start to the end of the work.",
            &WorkerPoolStats::run_time);
}

}  // namespace ringnet
