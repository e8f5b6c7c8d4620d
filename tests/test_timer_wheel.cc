// SPDX-License-Identifier: MIT
// TimerWheel (white-box, a fake clock): every armed timer fires once, on its tick and never
// before; cancelled timers never fire; re-arming from the callback works; deadlines more
// than one revolution away wait for their round; next_timeout_ms points at the next due
// slot; 10,000 timers in one wheel.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "core/timer_wheel.h"

namespace ringnet {
namespace {

using Tick = TimerWheel::Clock::duration;

struct Fixture {
  TimerWheel::Clock::time_point epoch = TimerWheel::Clock::now();
  TimerWheel wheel{epoch};
  // The start of tick t (ticks count from 1).
  TimerWheel::Clock::time_point at(uint64_t t) const {
    return epoch + TimerWheel::kTick * static_cast<int64_t>(t - 1);
  }
};

TEST(TimerWheel, TenThousandTimersFireOnTheirTickAndCancelledOnesNever) {
  Fixture f;
  std::vector<detail::WheelTimer> timers(10'000);
  std::mt19937 rng(7);
  std::vector<uint64_t> expires(timers.size());
  std::vector<bool> cancelled(timers.size(), false);
  for (size_t i = 0; i < timers.size(); ++i) {
    timers[i].owner = reinterpret_cast<void*>(i);
    expires[i] = 1 + rng() % 3000;  // up to ~3 revolutions
    f.wheel.arm(timers[i], expires[i]);
  }
  for (size_t i = 0; i < timers.size(); i += 3) {
    f.wheel.cancel(timers[i]);
    cancelled[i] = true;
  }
  std::vector<uint64_t> fired_at(timers.size(), 0);
  for (uint64_t t = 1; t <= 3100; ++t) {
    f.wheel.advance(f.at(t), [&](detail::WheelTimer& w) {
      size_t i = reinterpret_cast<size_t>(w.owner);
      EXPECT_EQ(fired_at[i], 0u) << "timer " << i << " fired twice";
      fired_at[i] = t;
    });
  }
  size_t fired = 0;
  for (size_t i = 0; i < timers.size(); ++i) {
    if (cancelled[i]) {
      EXPECT_EQ(fired_at[i], 0u) << "cancelled timer " << i << " fired";
    } else {
      // arm() moves a deadline in the past (tick 1 before any advance) to the next tick.
      EXPECT_EQ(fired_at[i], std::max<uint64_t>(expires[i], 1)) << "timer " << i;
      ++fired;
    }
  }
  EXPECT_EQ(fired, timers.size() - (timers.size() + 2) / 3);
  EXPECT_EQ(f.wheel.size(), 0u);
}

TEST(TimerWheel, ReArmingFromTheCallbackAndCancellingANeighbour) {
  Fixture f;
  detail::WheelTimer a, b, c;
  f.wheel.arm(a, 5);
  f.wheel.arm(b, 5);
  f.wheel.arm(c, 5);
  std::vector<detail::WheelTimer*> order;
  int a_fires = 0;
  for (uint64_t t = 1; t <= 20; ++t) {
    f.wheel.advance(f.at(t), [&](detail::WheelTimer& w) {
      order.push_back(&w);
      if (&w == &a && ++a_fires == 1) f.wheel.arm(a, 12);  // again, later
      if (&w == &c) f.wheel.cancel(b);  // whichever of b/c fires first cancels b if c
    });
  }
  EXPECT_EQ(a_fires, 2);
  EXPECT_FALSE(a.armed());
  // c fired; b fired only if it came before c in the slot's list.
  EXPECT_NE(std::find(order.begin(), order.end(), &c), order.end());
  EXPECT_EQ(f.wheel.size(), 0u);
}

TEST(TimerWheel, LongGapsFireEverythingDueOnce) {
  Fixture f;
  std::vector<detail::WheelTimer> timers(100);
  for (size_t i = 0; i < timers.size(); ++i) f.wheel.arm(timers[i], 10 + i * 50);  // to ~5000
  int fired = 0;
  f.wheel.advance(f.at(2600), [&](detail::WheelTimer&) { ++fired; });
  EXPECT_EQ(fired, 52);  // expires 10..2560
  f.wheel.advance(f.at(100000), [&](detail::WheelTimer&) { ++fired; });
  EXPECT_EQ(fired, 100);
}

TEST(TimerWheel, NextTimeoutPointsAtTheNextDueSlot) {
  Fixture f;
  EXPECT_EQ(f.wheel.next_timeout_ms(f.epoch), -1);
  detail::WheelTimer t;
  f.wheel.arm(t, 31);  // due at the start of tick 31: 300 ms after the epoch
  EXPECT_EQ(f.wheel.next_timeout_ms(f.epoch), 300);
  f.wheel.advance(f.at(20), [](detail::WheelTimer&) { FAIL() << "fired early"; });
  EXPECT_EQ(f.wheel.next_timeout_ms(f.at(20)), 110);
  // A deadline more than a revolution away: the wake-up may come early, never late.
  detail::WheelTimer far;
  f.wheel.cancel(t);
  f.wheel.arm(far, 20 + TimerWheel::kSlots + 5);
  int ms = f.wheel.next_timeout_ms(f.at(20));
  EXPECT_GE(ms, 0);
  EXPECT_LE(ms, static_cast<int>((TimerWheel::kSlots + 5) * 10));
  bool early = false;
  for (uint64_t tick = 21; tick < 20 + TimerWheel::kSlots + 5; ++tick) {
    f.wheel.advance(f.at(tick), [&](detail::WheelTimer&) { early = true; });
  }
  EXPECT_FALSE(early);
  int fired = 0;
  f.wheel.advance(f.at(20 + TimerWheel::kSlots + 5), [&](detail::WheelTimer&) { ++fired; });
  EXPECT_EQ(fired, 1);
}

TEST(TimerWheel, ExpiryForNeverFiresBeforeTheDeadline) {
  Fixture f;
  for (int ms : {0, 1, 9, 10, 11, 95, 1234}) {
    TimerWheel::Clock::time_point deadline = f.epoch + std::chrono::milliseconds(ms);
    uint64_t e = f.wheel.expiry_for(deadline);
    EXPECT_GE(f.at(e), deadline) << ms;
    EXPECT_LT(f.at(e) - deadline, TimerWheel::kTick + TimerWheel::kTick) << ms;
  }
}

}  // namespace
}  // namespace ringnet
