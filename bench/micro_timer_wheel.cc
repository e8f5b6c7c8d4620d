// SPDX-License-Identifier: MIT
// Micro-benchmarks of the per-loop timer wheel (engine/src/core/timer_wheel.h, white-box): the
// cost a connection's timeouts add to the loop.
//
//   build-release/bench/micro_timer_wheel
//   build-release/bench/micro_timer_wheel --benchmark_filter=Rearm
//
// range(0) is how many other timers are armed in the wheel (0, 10,000, 100,000), spread
// over its whole revolution like connections' idle timeouts: arm/cancel are list operations
// and must not depend on it; advance and next_timeout_ms look at the slot bitmap only.
// A fake clock (start + ticks) drives advance, so no benchmark reads the real time.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/timer_wheel.h"

namespace {

using ringnet::TimerWheel;
using ringnet::WheelTimer;

void populations(benchmark::internal::Benchmark* b) {
  b->Arg(0)->Arg(10'000)->Arg(100'000);
}

// A wheel with `n` background timers, one per connection, spread over every slot and due
// 64 revolutions ahead (idle timeouts longer than the wheel's 10.24 s revolution), so
// advancing fires none of them for a long while; ticks count from 1, as in the wheel.
struct Loaded {
  TimerWheel::Clock::time_point epoch = TimerWheel::Clock::now();
  TimerWheel wheel{epoch};
  std::vector<WheelTimer> background;
  uint64_t tick = 0;  // ticks advanced so far

  explicit Loaded(size_t n, uint64_t first_due = TimerWheel::kSlots * 64)
      : background(n) {
    for (size_t i = 0; i < n; ++i) {
      wheel.arm(background[i], first_due + i % TimerWheel::kSlots);
    }
  }
  // The start of tick t.
  TimerWheel::Clock::time_point at(uint64_t t) const {
    return epoch + TimerWheel::kTick * (static_cast<int64_t>(t) - 1);
  }
};

// What every new connection with an idle timeout does, and its close: arm, then cancel.
void BM_TimerWheelArmCancel(benchmark::State& state) {
  Loaded w(static_cast<size_t>(state.range(0)));
  WheelTimer t;
  uint64_t expires = 1;
  for (auto _ : state) {
    w.wheel.arm(t, 1 + (expires++ % 3000));  // ~3 revolutions of deadlines
    w.wheel.cancel(t);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerWheelArmCancel)->Apply(populations);

// The hot path: traffic on a connection pushes its idle deadline back (unlink + link).
void BM_TimerWheelRearm(benchmark::State& state) {
  Loaded w(static_cast<size_t>(state.range(0)));
  WheelTimer t;
  w.wheel.arm(t, 500);
  uint64_t expires = 500;
  for (auto _ : state) {
    w.wheel.arm(t, 500 + (++expires % 1000));
    benchmark::DoNotOptimize(t.expires);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerWheelRearm)->Apply(populations);

// A loop iteration with nothing due: advance one tick past timers that stay armed. The
// slot of that tick is walked (its timers are a later round's), so with more timers than
// slots this grows with timers per slot: the price of long timeouts in a hashed wheel.
void BM_TimerWheelAdvanceNothingDue(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto w = std::make_unique<Loaded>(n);
  size_t fired = 0;
  for (auto _ : state) {
    fired += w->wheel.advance(w->at(++w->tick), [](WheelTimer&) {});
    // Background timers come due after 64 revolutions; start afresh well before that.
    if (w->tick == TimerWheel::kSlots * 60) {
      state.PauseTiming();
      w = std::make_unique<Loaded>(n);
      state.ResumeTiming();
    }
  }
  if (fired != 0) state.SkipWithError("a background timer fired");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerWheelAdvanceNothingDue)->Apply(populations);

// Expiry: range(0) timers all due on the next tick, fired by one advance; the callback
// re-arms each one revolution later (an idle timeout that closes the connection would
// cancel instead; both are one list operation). Items = timers fired.
void BM_TimerWheelAdvanceFire(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Loaded w(0);
  std::vector<WheelTimer> due(n);
  for (auto& t : due) w.wheel.arm(t, 1);
  size_t fired = 0;
  for (auto _ : state) {
    const uint64_t next = ++w.tick;
    fired += w.wheel.advance(w.at(next), [&](WheelTimer& t) { w.wheel.arm(t, next + 1); });
  }
  if (fired != n * state.iterations()) state.SkipWithError("not every due timer fired");
  state.SetItemsProcessed(static_cast<int64_t>(fired));
}
BENCHMARK(BM_TimerWheelAdvanceFire)->Arg(1)->Arg(100)->Arg(10'000);

// The poll timeout the loop computes before it blocks.
void BM_TimerWheelNextTimeout(benchmark::State& state) {
  Loaded w(static_cast<size_t>(state.range(0)));
  const auto now = w.at(1);
  for (auto _ : state) benchmark::DoNotOptimize(w.wheel.next_timeout_ms(now));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerWheelNextTimeout)->Apply(populations);

}  // namespace

BENCHMARK_MAIN();
