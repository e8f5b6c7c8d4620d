// SPDX-License-Identifier: MIT
/// @file
/// A counter written by many loops without atomic read-modify-write on the hot path: each
/// loop adds to its own cache line (one writer per slot), readers sum the slots.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "ringnet/config.h"

namespace ringnet::proto {

/// A uint64_t counter that many loops add to without contended atomics, one slot per loop.
/// Threads: add() on loop threads only (each loop its own slot), sum() from any thread.
class LoopCounter {
 public:
  /// Loop thread only: `loop` is Conn::loop_index(). Loops beyond kSlots share slots, and
  /// then use a real atomic add.
  void add(int loop, uint64_t n = 1) {
    std::atomic<uint64_t>& v = slots_[static_cast<unsigned>(loop) % kSlots].value;
    if (loop < kSlots) {
      v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
      v.fetch_add(n, std::memory_order_relaxed);
    }
  }
  /// Any thread.
  uint64_t sum() const {
    uint64_t total = 0;
    for (size_t i = 0; i < kSlots; ++i) total += slots_[i].value.load(std::memory_order_relaxed);
    return total;
  }

 private:
  static constexpr int kSlots = 64;
  struct alignas(64) Slot {
    std::atomic<uint64_t> value{0};
  };
  std::unique_ptr<Slot[]> slots_{new Slot[kSlots]};
};

}  // namespace ringnet::proto
