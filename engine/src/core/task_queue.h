// SPDX-License-Identifier: MIT
// TaskQueue: how other threads reach a loop. Producers push under a mutex and ring an
// eventfd only when the loop has not been rung since it last drained (one write per burst,
// not per task). The loop swaps tasks out under the lock and runs them outside it, at most
// `budget` per call so a flood of tasks cannot starve I/O.
//
// Thread-safety: post() from any thread; everything else on the owning loop's thread.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>

#include "ringnet/status.h"

namespace ringnet {

class TaskQueue {
 public:
  using Task = std::function<void()>;

  TaskQueue();  // creates the eventfd: post() works from construction on
  ~TaskQueue();
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  Status init() const;           // reports whether the eventfd could be created
  int wake_fd() const { return wake_fd_; }

  void post(Task task);          // any thread
  // Any thread: queues `task` and returns true, or returns false (task untouched) once
  // close() was called: nothing will ever run it.
  bool try_post(Task& task);
  // After the loop thread is gone: later try_post calls fail; returns the tasks still
  // queued for the caller to run.
  std::deque<Task> close();
  void wake();                   // any thread: ring the eventfd (at most once per drain)

  // Loop thread: run up to `budget` tasks; returns how many ran.
  size_t run(size_t budget);
  // Loop thread, lock-free: tasks taken out but not yet run (budget ran out).
  bool has_backlog() const { return !running_.empty(); }
  // Any thread: tasks posted and not yet run (a gauge for metrics).
  uint64_t depth() const { return depth_.load(std::memory_order_relaxed); }

 private:
  void refill();
  std::mutex mu_;
  std::deque<Task> tasks_;
  std::deque<Task> running_;     // loop-owned: tasks swapped out, not yet run
  std::atomic<bool> rung_{false};
  std::atomic<uint64_t> depth_{0};
  bool closed_ = false;          // under mu_
  int wake_fd_ = -1;
  int init_errno_ = 0;
};

}  // namespace ringnet
