// SPDX-License-Identifier: MIT
// TimerWheel: one loop's connection timeouts. A hashed wheel of kSlots lists, one tick
// (kTick) per slot: arming and cancelling are O(1) list operations on a node embedded in
// its owner (no allocation), so 100,000 connections with idle timeouts cost no syscall and
// no heap work per timer. Deadlines beyond one revolution stay in their slot and are
// skipped until their round comes. A bitmap of non-empty slots lets the loop find the next
// deadline for its poll timeout without walking the wheel.
//
// Resolution is one tick: a timer fires within [deadline, deadline + kTick) of its
// deadline, plus however long the loop takes to come round.
//
// Thread-safety: loop thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "ringnet/detail/wheel_timer.h"

namespace ringnet {

using detail::WheelTimer;  // the node owners embed (ringnet/detail/wheel_timer.h)

class TimerWheel {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kTick{10};
  static constexpr uint32_t kSlots = 1024;  // 10.24 s per revolution

  explicit TimerWheel(Clock::time_point start = Clock::now()) : epoch_(start) {}

  // The tick `t` falls in (ticks count from construction).
  uint64_t tick_of(Clock::time_point t) const {
    return static_cast<uint64_t>((t - epoch_) / kTick) + 1;  // 0 means "not armed"
  }
  uint64_t now_tick() const { return current_; }
  // Ticks for a duration, rounded up.
  static uint64_t ticks_for(std::chrono::nanoseconds d) {
    return static_cast<uint64_t>((d + kTick - std::chrono::nanoseconds(1)) / kTick);
  }
  // The expiry tick for a timer that must not fire before `deadline`: the tick after the
  // one the deadline falls in, so it fires within one tick after the deadline.
  uint64_t expiry_for(Clock::time_point deadline) const { return tick_of(deadline) + 1; }

  // Arms (or re-arms) `t` to fire at tick `expires` (at least the next tick).
  void arm(WheelTimer& t, uint64_t expires);
  void cancel(WheelTimer& t);
  size_t size() const { return size_; }

  // Fires, in no particular order, every timer whose tick is <= tick_of(now); each is
  // unlinked (disarmed) before `fire(timer)` runs, which may re-arm it or others.
  template <typename Fire>
  size_t advance(Clock::time_point now, Fire&& fire);

  // Milliseconds until the earliest armed slot comes due (at most one revolution away;
  // an overestimate is impossible, an early wake-up is harmless), -1 when empty.
  int next_timeout_ms(Clock::time_point now) const;

 private:
  void link(WheelTimer& t);
  void unlink(WheelTimer& t);
  bool slot_busy(uint32_t s) const { return (busy_[s / 64] >> (s % 64)) & 1; }

  Clock::time_point epoch_;
  uint64_t current_ = 0;  // last tick processed
  size_t size_ = 0;
  std::array<WheelTimer*, kSlots> heads_{};
  std::array<uint64_t, kSlots / 64> busy_{};
};

template <typename Fire>
size_t TimerWheel::advance(Clock::time_point now, Fire&& fire) {
  const uint64_t target = tick_of(now);
  if (target <= current_) return 0;
  size_t fired = 0;
  // One pass over at most one revolution of slots: a longer gap visits each slot once.
  const uint64_t first = target - current_ > kSlots ? target - kSlots + 1 : current_ + 1;
  current_ = target;
  if (size_ == 0) return 0;
  for (uint64_t tick = first; tick <= target; ++tick) {
    const uint32_t s = static_cast<uint32_t>(tick % kSlots);
    if (!slot_busy(s)) continue;
    WheelTimer* t = heads_[s];
    while (t != nullptr) {
      WheelTimer* next = t->next;
      if (t->expires <= target) {
        unlink(*t);
        ++fired;
        fire(*t);  // may arm/cancel any timer, including `next`'s list neighbours
        // `next` may have been cancelled or moved by fire(): restart the slot then.
        if (next != nullptr && (next->expires == 0 || next->expires % kSlots != s)) {
          next = heads_[s];
        }
      }
      t = next;
    }
  }
  return fired;
}

}  // namespace ringnet
