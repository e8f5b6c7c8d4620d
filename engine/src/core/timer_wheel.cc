// SPDX-License-Identifier: MIT
// TimerWheel: see timer_wheel.h.
#include "core/timer_wheel.h"

#include <algorithm>
#include <bit>

namespace ringnet {

void TimerWheel::arm(WheelTimer& t, uint64_t expires) {
  if (t.armed()) unlink(t);
  t.expires = std::max(expires, current_ + 1);
  link(t);
}

void TimerWheel::cancel(WheelTimer& t) {
  if (t.armed()) unlink(t);
}

void TimerWheel::link(WheelTimer& t) {
  const uint32_t s = static_cast<uint32_t>(t.expires % kSlots);
  t.prev = nullptr;
  t.next = heads_[s];
  if (t.next != nullptr) t.next->prev = &t;
  heads_[s] = &t;
  busy_[s / 64] |= uint64_t{1} << (s % 64);
  ++size_;
}

void TimerWheel::unlink(WheelTimer& t) {
  const uint32_t s = static_cast<uint32_t>(t.expires % kSlots);
  if (t.prev != nullptr) {
    t.prev->next = t.next;
  } else {
    heads_[s] = t.next;
    if (t.next == nullptr) busy_[s / 64] &= ~(uint64_t{1} << (s % 64));
  }
  if (t.next != nullptr) t.next->prev = t.prev;
  t.prev = t.next = nullptr;
  t.expires = 0;
  --size_;
}

int TimerWheel::next_timeout_ms(Clock::time_point now) const {
  if (size_ == 0) return -1;
  // The first busy slot after the current tick, searching the bitmap a word at a time.
  const uint32_t start = static_cast<uint32_t>((current_ + 1) % kSlots);
  uint32_t ahead = kSlots;  // slots from `start` to the first busy one
  for (uint32_t i = 0; i <= kSlots / 64; ++i) {
    const uint32_t word = (start / 64 + i) % (kSlots / 64);
    uint64_t bits = busy_[word];
    if (i == 0) bits &= ~uint64_t{0} << (start % 64);  // slots before `start` come last
    if (i == kSlots / 64) bits &= (uint64_t{1} << (start % 64)) - 1;
    if (bits != 0) {
      const uint32_t slot = word * 64 + static_cast<uint32_t>(std::countr_zero(bits));
      ahead = (slot + kSlots - start) % kSlots;
      break;
    }
  }
  const uint64_t due_tick = current_ + 1 + ahead;  // the slot's tick this revolution
  // Tick T covers [epoch + (T-1)*kTick, epoch + T*kTick): timers of tick T are due from
  // its start.
  const auto due = epoch_ + kTick * static_cast<int64_t>(due_tick - 1);
  auto left = std::chrono::ceil<std::chrono::milliseconds>(due - now).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

}  // namespace ringnet
