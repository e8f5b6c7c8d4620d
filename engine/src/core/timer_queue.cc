// SPDX-License-Identifier: MIT
#include "core/timer_queue.h"

namespace ringnet {

TimerQueue::TimerId TimerQueue::add(Clock::time_point when, Callback cb) {
  TimerId id = next_id_++;
  heap_.push({when, id});
  callbacks_.emplace(id, std::move(cb));
  return id;
}

void TimerQueue::cancel(TimerId id) { callbacks_.erase(id); }

void TimerQueue::drop_cancelled() {
  while (!heap_.empty() && !callbacks_.contains(heap_.top().id)) heap_.pop();
}

int TimerQueue::next_timeout_ms(Clock::time_point now) {
  drop_cancelled();
  if (heap_.empty()) return -1;
  auto left = heap_.top().when - now;
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > 3600000 ? 3600000 : static_cast<int>(ms);
}

size_t TimerQueue::run_due(Clock::time_point now) {
  size_t ran = 0;
  for (;;) {
    drop_cancelled();
    if (heap_.empty() || heap_.top().when > now) break;
    TimerId id = heap_.top().id;
    heap_.pop();
    auto it = callbacks_.find(id);
    Callback cb = std::move(it->second);
    callbacks_.erase(it);
    cb();  // may add or cancel timers
    ++ran;
  }
  return ran;
}

}  // namespace ringnet
