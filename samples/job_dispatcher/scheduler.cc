// SPDX-License-Identifier: MIT
// Scheduler: fire, route, retry, and the fenced watermark per job (see scheduler.h).
#include "scheduler.h"

#include <ringnet/log.h>

#include <algorithm>

namespace jobs {

using ringnet::proto::RpcCode;
using ringnet::proto::RpcStatus;

namespace {

int64_t unix_ms(TimeMs t) { return t.time_since_epoch().count(); }

}  // namespace

Scheduler::Scheduler(JobConfig config, Route route) : route_(std::move(route)) {
  for (JobSpec& spec : config.jobs) {
    jobs_.emplace_back();
    jobs_.back().spec = std::move(spec);
  }
}

bool Scheduler::lead(Coordinator& coord, const std::string& owner, uint64_t token, TimeMs now) {
  for (Job& job : jobs_) {
    LastFired lf = coord.last_fired(job.spec.name);
    if (lf.result != CoordResult::kOk) return false;
    job.open.clear();
    if (lf.unix_ms) {
      job.watermark = TimeMs(std::chrono::milliseconds(*lf.unix_ms));
    } else {
      // Never fired: start now, and say so, so that a successor does not start later.
      job.watermark = now;
      if (coord.set_last_fired(owner, token, job.spec.name, unix_ms(now)) != CoordResult::kOk)
        return false;
    }
    job.stored = job.watermark;
    job.next = job.spec.schedule.next_after(job.watermark);
  }
  owner_ = owner;
  term_ = token;
  return true;
}

void Scheduler::follow() {
  term_ = 0;  // completions of the old term are dropped
  for (Job& job : jobs_) job.open.clear();
}

bool Scheduler::has_running(const Job& job) const {
  return std::any_of(job.open.begin(), job.open.end(),
                     [](const auto& e) { return !e.second.done && !e.second.queued; });
}

void Scheduler::fire(size_t j, TimeMs t, Run& run, TimeMs now) {
  Job& job = jobs_[j];
  run.queued = false;
  run.in_flight = true;
  run.retry_at = Schedule::kNever;
  if (run.attempt++ == 0) {
    job.counters->fired.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lk(lag_mu_);
    auto lag = std::max<int64_t>(0, (now - t).count());
    lag_ms_.buckets[static_cast<size_t>(ringnet::Log2Histogram::bucket_of(static_cast<uint64_t>(lag)))]++;
    lag_ms_.count++;
    lag_ms_.sum += static_cast<uint64_t>(lag);
  }
  std::string id = run_id(job.spec.name, t);
  ringnet::log(ringnet::LogLevel::kDebug, "fire {} attempt {}", id, run.attempt);
  auto done = [this, term = term_, j, t](const RpcStatus& s, std::string_view body,
                                         const std::string& node) {
    {
      std::lock_guard lk(mu_);
      completions_.push_back({term, j, t, s.code, body.starts_with("dup "), node, s.message});
    }
    cv_.notify_one();
  };
  ringnet::proto::RoutedRpcClient* rpc = route_(job.spec.target.service);
  if (rpc == nullptr) {
    done(RpcStatus::make(RpcCode::kUnavailable, "no workers for the service"), {}, {});
    return;
  }
  // Idempotent: the run id makes a repeat harmless, so a dead worker's run goes to the
  // key's next worker at once (RoutedRpcClient), and our own retries may go anywhere.
  rpc->call(job.spec.target.key, job.spec.target.method, id + "\n" + job.spec.payload,
            {.timeout = job.spec.timeout, .idempotent = true}, std::move(done));
}

void Scheduler::end(size_t j, const Completion& c, TimeMs now) {
  Job& job = jobs_[j];
  auto it = job.open.find(c.scheduled);
  if (it == job.open.end() || !it->second.in_flight) return;
  Run& run = it->second;
  run.in_flight = false;
  JobCounters& n = *job.counters;
  if (c.code == RpcCode::kOk) {
    n.succeeded.fetch_add(1, std::memory_order_relaxed);
    if (c.dup) n.deduped.fetch_add(1, std::memory_order_relaxed);
    run.done = true;
    return;
  }
  if (job.spec.retry.retryable_code(c.code) && run.attempt < job.spec.retry.max_attempts) {
    n.retried.fetch_add(1, std::memory_order_relaxed);
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    run.retry_at = now + job.spec.retry.delay(run.attempt, u);
    ringnet::log(ringnet::LogLevel::kInfo, "run {} attempt {} on {}: {}; retry in {} ms",
                 run_id(job.spec.name, c.scheduled), run.attempt, c.node,
                 ringnet::proto::rpc_code_name(c.code), (run.retry_at - now).count());
    return;
  }
  n.failed[std::min<size_t>(static_cast<size_t>(c.code), n.failed.size() - 1)].fetch_add(1);
  ringnet::log(ringnet::LogLevel::kWarn, "run {} failed after {} attempts: {} {}",
               run_id(job.spec.name, c.scheduled), run.attempt,
               ringnet::proto::rpc_code_name(c.code), c.message);
  run.done = true;  // failed for good: it ended, the watermark may pass it
}

CoordResult Scheduler::tick(Coordinator& coord, TimeMs now) {
  std::deque<Completion> done;
  {
    std::lock_guard lk(mu_);
    done.swap(completions_);
  }
  for (const Completion& c : done)
    if (c.term == term_ && term_ != 0) end(c.job, c, now);
  if (term_ == 0) return CoordResult::kOk;

  CoordResult result = CoordResult::kOk;
  for (size_t j = 0; j < jobs_.size(); ++j) {
    Job& job = jobs_[j];
    // Newly due times, by policy.
    while (job.next != Schedule::kNever && job.next <= now) {
      TimeMs t = job.next;
      job.next = job.spec.schedule.next_after(t);
      // Open: running, waiting for a retry or queued (so a queue keeps its order).
      bool open = std::any_of(job.open.begin(), job.open.end(),
                              [](const auto& e) { return !e.second.done; });
      Run& run = job.open[t];
      if (!open || job.spec.concurrency == Concurrency::kAllow) {
        fire(j, t, run, now);
      } else if (job.spec.concurrency == Concurrency::kQueue) {
        run.queued = true;
      } else {
        job.counters->skipped.fetch_add(1, std::memory_order_relaxed);
        run.done = true;
      }
    }
    // Retries whose backoff passed; the oldest queued run once nothing runs.
    for (auto& [t, run] : job.open)
      if (!run.done && !run.in_flight && !run.queued && run.retry_at <= now) fire(j, t, run, now);
    if (!has_running(job)) {
      auto q = std::find_if(job.open.begin(), job.open.end(),
                            [](const auto& e) { return e.second.queued; });
      if (q != job.open.end()) fire(j, q->first, q->second, now);
    }
    // The watermark: past every ended run before the first open one.
    while (!job.open.empty() && job.open.begin()->second.done) {
      job.watermark = job.open.begin()->first;
      job.open.erase(job.open.begin());
    }
    if (job.watermark > job.stored && result == CoordResult::kOk) {
      CoordResult r = coord.set_last_fired(owner_, term_, job.spec.name, unix_ms(job.watermark));
      if (r == CoordResult::kLost) return r;  // fenced out: fire nothing more
      if (r == CoordResult::kOk) job.stored = job.watermark;
      result = r;  // after an error, no more writes this tick (each may block)
    }
  }
  return result;
}

TimeMs Scheduler::next_due() const {
  TimeMs due = Schedule::kNever;
  if (term_ == 0) return due;
  for (const Job& job : jobs_) {
    due = std::min(due, job.next);
    for (const auto& [t, run] : job.open)
      if (!run.done && !run.in_flight) due = std::min(due, run.queued ? due : run.retry_at);
  }
  return due;
}

void Scheduler::wait(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lk(mu_);
  cv_.wait_until(lk, deadline, [&] { return !completions_.empty() || woken_; });
  woken_ = false;
}

void Scheduler::wake() {
  {
    std::lock_guard lk(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void Scheduler::write_metrics(ringnet::MetricsWriter& w) const {
  using ringnet::MetricType;
  auto per_job = [&](const char* name, const char* help, auto field) {
    w.family(name, MetricType::kCounter, help);
    for (const Job& job : jobs_)
      w.value("job=\"" + ringnet::MetricsWriter::escape_label(job.spec.name) + "\"",
              (job.counters.get()->*field).load(std::memory_order_relaxed));
  };
  per_job("jobs_runs_fired_total", "Scheduled times fired as runs (first attempts).",
          &JobCounters::fired);
  per_job("jobs_runs_succeeded_total", "Runs a worker answered ok.", &JobCounters::succeeded);
  per_job("jobs_runs_retried_total", "Attempts sent again after a retryable failure.",
          &JobCounters::retried);
  per_job("jobs_runs_deduped_total", "Runs a worker had already done (answered from its store).",
          &JobCounters::deduped);
  per_job("jobs_runs_skipped_total", "Scheduled times skipped by the skip policy.",
          &JobCounters::skipped);
  w.family("jobs_runs_failed_total", MetricType::kCounter,
           "Runs that failed for good, by the last attempt's status code.");
  for (const Job& job : jobs_)
    for (size_t code = 0; code < job.counters->failed.size(); ++code)
      if (uint64_t v = job.counters->failed[code].load(std::memory_order_relaxed); v != 0)
        w.value("job=\"" + ringnet::MetricsWriter::escape_label(job.spec.name) + "\",code=\"" +
                    ringnet::proto::rpc_code_name(static_cast<RpcCode>(code)) + "\"",
                v);
  w.family("jobs_schedule_lag_seconds", MetricType::kHistogram,
           "First attempt's start minus its scheduled time.");
  std::lock_guard lk(lag_mu_);
  w.histogram("", lag_ms_, 1e-3, 0, 16, 1);  // 1 ms .. 65 s
}

}  // namespace jobs
