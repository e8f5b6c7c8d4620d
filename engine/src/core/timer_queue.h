// SPDX-License-Identifier: MIT
// TimerQueue: one loop's timers, a min-heap of deadlines on the monotonic clock. Cancelled
// timers are dropped lazily when they reach the top. (A timer wheel for very many idle
// timeouts comes with the timeouts work; this serves on_tick, retries and deadlines.)
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <queue>
#include <unordered_map>
#include <vector>

namespace ringnet {

using Clock = std::chrono::steady_clock;

class TimerQueue {
 public:
  using TimerId = uint64_t;
  using Callback = std::function<void()>;

  TimerId add(Clock::time_point when, Callback cb);
  void cancel(TimerId id);
  // Milliseconds until the next live deadline (rounded up), or -1 when there is none.
  int next_timeout_ms(Clock::time_point now);
  // Runs every timer due at `now`; returns how many ran.
  size_t run_due(Clock::time_point now);
  size_t size() const { return callbacks_.size(); }

 private:
  struct Entry {
    Clock::time_point when;
    TimerId id;
    bool operator>(const Entry& o) const { return when > o.when; }
  };
  void drop_cancelled();
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
  std::unordered_map<TimerId, Callback> callbacks_;
  TimerId next_id_ = 1;
};

}  // namespace ringnet
