// SPDX-License-Identifier: MIT
// LoopHistogram: a Log2Histogram that one loop thread records into and any thread reads.
// Single writer, so recording is relaxed loads and stores (no locked instruction); a
// reader may see a record half done (count bumped, bucket not yet): harmless for metrics.
#pragma once

#include <atomic>
#include <cstdint>

#include "ringnet/metrics.h"

namespace ringnet {

class LoopHistogram {
 public:
  // Loop thread only.
  void record(uint64_t v) {
    add(buckets_[Log2Histogram::bucket_of(v)], 1);
    add(count_, 1);
    add(sum_, v);
  }
  // Any thread: adds this histogram into `out`.
  void merge_into(Log2Histogram& out) const {
    for (int b = 0; b < Log2Histogram::kBuckets; ++b) {
      out.buckets[static_cast<size_t>(b)] += buckets_[b].load(std::memory_order_relaxed);
    }
    out.count += count_.load(std::memory_order_relaxed);
    out.sum += sum_.load(std::memory_order_relaxed);
  }

 private:
  static void add(std::atomic<uint64_t>& v, uint64_t n) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> buckets_[Log2Histogram::kBuckets]{};
  std::atomic<uint64_t> count_{0}, sum_{0};
};

}  // namespace ringnet
