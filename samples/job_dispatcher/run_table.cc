// SPDX-License-Identifier: MIT
// RunTable and AppendFile (run_table.h): the job worker's once-per-run-id execution.
#include "run_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <ringnet/log.h>

namespace jobs {

using ringnet::proto::RpcCallPtr;
using ringnet::proto::RpcCode;
using Clock = std::chrono::steady_clock;

namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Whitespace and control bytes would break the log lines' format.
bool valid_run_id(std::string_view id) {
  return !id.empty() && id.size() <= RunTable::kMaxRunId &&
         std::none_of(id.begin(), id.end(), [](char c) {
           return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
         });
}

void report_write_error(const char* what, int err) {
  static ringnet::LogRateLimit limit(1);
  uint64_t suppressed = 0;
  if (limit.allow(&suppressed)) {
    std::fprintf(stderr, "job_worker: %s: write: %s (%llu similar lines suppressed)\n", what,
                 std::strerror(err), static_cast<unsigned long long>(suppressed));
  }
}

}  // namespace

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

bool AppendFile::open(const std::string& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  return fd_ >= 0;
}

int AppendFile::append(const std::string& line) const {
  ssize_t n;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  return static_cast<size_t>(n) == line.size() ? 0 : EIO;
}

RunTable::RunTable(uint32_t capacity, std::chrono::milliseconds delay, const AppendFile& dedupe,
                   const AppendFile* attempts)
    : capacity_(capacity), delay_(delay), dedupe_(dedupe), attempts_(attempts) {}

RunTable::~RunTable() { stop(); }

void RunTable::set_address(std::string address) {
  std::lock_guard lock(mu_);
  address_ = std::move(address);
}

void RunTable::start() { timer_ = std::thread([this] { timer_loop(); }); }

void RunTable::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

void RunTable::handle(RpcCallPtr call) {
  const std::string_view body = call->request();
  const size_t nl = body.find('\n');
  if (nl == std::string_view::npos || !valid_run_id(body.substr(0, nl))) {
    call->fail(RpcCode::kInvalidArgument,
               "body must be <run_id>\\n<payload>, a run id of 1-1024 bytes, no spaces");
    return;
  }
  std::string run_id(body.substr(0, nl));
  if (attempts_ != nullptr) {
    if (int err = attempts_->append(std::to_string(unix_ms()) + ' ' + run_id + '\n')) {
      report_write_error("attempt log", err);
    }
  }
  std::unique_lock lock(mu_);
  if (address_.empty()) {
    lock.unlock();
    call->fail(RpcCode::kUnavailable, "starting");
    return;
  }
  forget_old(Clock::now());
  auto [it, fresh] = runs_.try_emplace(run_id);
  if (!fresh && it->second.done) {
    std::string reply = "dup " + run_id + ' ' + address_;
    lock.unlock();
    counters_.deduped.fetch_add(1, std::memory_order_relaxed);
    call->reply(std::move(reply));
  } else if (!fresh) {
    it->second.waiters.push_back(std::move(call));
    counters_.waited.fetch_add(1, std::memory_order_relaxed);
  } else if (pending_ >= capacity_) {
    runs_.erase(it);
    lock.unlock();
    counters_.refused.fetch_add(1, std::memory_order_relaxed);
    call->fail(RpcCode::kResourceExhausted, "busy");
  } else {
    it->second.waiters.push_back(std::move(call));
    queue_.push_back({Clock::now() + delay_, std::move(run_id)});
    counters_.in_flight.store(++pending_, std::memory_order_relaxed);
    lock.unlock();
    cv_.notify_all();
  }
}

void RunTable::timer_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      cv_.wait(lock);
    } else if (Clock::now() < queue_.front().when) {
      cv_.wait_until(lock, queue_.front().when);
    } else {
      std::string run_id = std::move(queue_.front().run_id);
      queue_.pop_front();
      lock.unlock();
      finish(run_id);
      lock.lock();
    }
  }
}

// The run's work is over: log it, remember it, answer everyone attached to it. The write
// is made outside the lock; the run stays pending (repeats attach) until it is recorded.
void RunTable::finish(const std::string& run_id) {
  std::unique_lock lock(mu_);
  const std::string address = address_;
  lock.unlock();
  const int err = dedupe_.append(run_id + ' ' + address + ' ' + std::to_string(unix_ms()) + '\n');
  lock.lock();
  auto it = runs_.find(run_id);  // pending runs are never forgotten: it is there
  std::vector<RpcCallPtr> waiters = std::move(it->second.waiters);
  if (err != 0) {
    runs_.erase(it);  // not executed: a retry runs it again
  } else {
    it->second.done = true;
    finished_.push_back({Clock::now(), run_id});
    counters_.runs.fetch_add(1, std::memory_order_relaxed);
  }
  counters_.in_flight.store(--pending_, std::memory_order_relaxed);
  lock.unlock();
  if (err != 0) report_write_error("dedupe log", err);
  for (RpcCallPtr& call : waiters) {
    if (err != 0) {
      call->fail(RpcCode::kInternal, std::string("dedupe log: ") + std::strerror(err));
    } else {
      call->reply("ok " + run_id + ' ' + address);
    }
  }
}

// Under mu_. Only done runs are in finished_, each once, so pending ones stay.
void RunTable::forget_old(Clock::time_point now) {
  while (!finished_.empty() &&
         (finished_.size() > kMaxResults || now - finished_.front().when > kKeepResults)) {
    runs_.erase(finished_.front().run_id);
    finished_.pop_front();
  }
}

}  // namespace jobs
