// SPDX-License-Identifier: MIT
#include "core/task_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace ringnet {

TaskQueue::~TaskQueue() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

TaskQueue::TaskQueue() : wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), init_errno_(errno) {}

Status TaskQueue::init() const {
  if (wake_fd_ < 0) return Status::from_errno(init_errno_, "eventfd");
  return Status::ok();
}

void TaskQueue::post(Task task) {
  // A closed queue keeps the task: it is destroyed with the queue, unrun, as before close.
  if (!try_post(task)) {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
}

bool TaskQueue::try_post(Task& task) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    // Counted under the lock, so the loop cannot run (and subtract) it first.
    depth_.fetch_add(1, std::memory_order_relaxed);
    tasks_.push_back(std::move(task));
  }
  wake();
  return true;
}

std::deque<TaskQueue::Task> TaskQueue::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  std::deque<Task> left;
  left.swap(tasks_);
  depth_.store(0, std::memory_order_relaxed);
  return left;
}

void TaskQueue::wake() {
  if (wake_fd_ < 0) return;
  if (rung_.exchange(true, std::memory_order_acq_rel)) return;  // already rung
  uint64_t one = 1;
  ssize_t rc = ::write(wake_fd_, &one, sizeof(one));
  (void)rc;  // EAGAIN means the counter is saturated: the loop is woken anyway
}

// Clears the "rung" flag before taking the batch, so a post racing with us rings again.
void TaskQueue::refill() {
  rung_.store(false, std::memory_order_release);
  std::lock_guard lock(mu_);
  running_.swap(tasks_);
}

// Runs only what was posted before this run (one batch): a task a task posts — a handler's
// wake() that wakes again while it has more to do — runs in the next iteration, after
// the poll. Refilling within the run let such tasks take the loop for up to `budget`
// runs (half a second in a test) while I/O, timers and a drain's sweep waited.
size_t TaskQueue::run(size_t budget) {
  if (running_.empty()) refill();
  size_t ran = 0;
  while (ran < budget && !running_.empty()) {
    Task task = std::move(running_.front());
    running_.pop_front();
    task();
    ++ran;
  }
  // Tasks posted while the flag was still set rang no bell: take them now so that
  // has_backlog() keeps the loop from blocking while they wait.
  if (running_.empty()) refill();
  if (ran > 0) depth_.fetch_sub(ran, std::memory_order_relaxed);
  return ran;
}

}  // namespace ringnet
