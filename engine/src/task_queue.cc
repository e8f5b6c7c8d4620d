#include "task_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace ringnet {

TaskQueue::~TaskQueue() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status TaskQueue::init() {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Status::from_errno(errno, "eventfd");
  return Status::ok();
}

void TaskQueue::post(Task task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  wake();
}

void TaskQueue::wake() {
  if (rung_.exchange(true, std::memory_order_acq_rel)) return;  // already rung
  uint64_t one = 1;
  ssize_t rc = ::write(wake_fd_, &one, sizeof(one));
  (void)rc;  // EAGAIN means the counter is saturated: the loop is woken anyway
}

void TaskQueue::ack_wakeup() {
  uint64_t value = 0;
  ssize_t rc = ::read(wake_fd_, &value, sizeof(value));
  (void)rc;
}

size_t TaskQueue::run(size_t budget) {
  if (running_.empty()) {
    // Clear the flag before taking the batch: a post racing with us rings again.
    rung_.store(false, std::memory_order_release);
    std::lock_guard lock(mu_);
    running_.swap(tasks_);
  }
  size_t ran = 0;
  while (ran < budget && !running_.empty()) {
    Task task = std::move(running_.front());
    running_.pop_front();
    task();
    ++ran;
  }
  return ran;
}

bool TaskQueue::has_pending() {
  if (!running_.empty()) return true;
  std::lock_guard lock(mu_);
  return !tasks_.empty();
}

}  // namespace ringnet
