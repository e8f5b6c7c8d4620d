// SPDX-License-Identifier: MIT
// Log-bucketed latency histogram (HDR-style) for the load generator.
//
// Values are nanoseconds. Below 128 ns every value has its own bucket; above, each power of
// two [2^e, 2^(e+1)) is split into 64 equal sub-buckets, so a bucket is at most 1/64 of its
// value wide and the reported midpoint is within ~0.8% of any sample in it. That gives
// p50/p99/p999 without storing samples, in a fixed ~30 KiB per histogram.
//
//   index:  0 .. 127            128 + (e-7)*64 + (mantissa - 64)
//           exact values        e = floor(log2 v) >= 7, mantissa = top 7 bits of v
//
// Thread-safety: none; each load-generator thread owns one and they are merged after join.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>

namespace bench {

class LatencyHistogram {
 public:
  void record(uint64_t ns) {
    ++counts_[index_of(ns)];
    ++total_;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
  }

  void merge(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  uint64_t count() const { return total_; }
  uint64_t max() const { return total_ ? max_ : 0; }
  uint64_t min() const { return total_ ? min_ : 0; }

  // Value (ns) at quantile q in [0, 1]: the midpoint of the bucket holding that rank,
  // clamped to the observed min/max so exact extremes are never overstated.
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_ - 1)) + 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(midpoint_of(i), min_, max_);
    }
    return max_;
  }

 private:
  static constexpr unsigned kLinearBits = 7;                  // 128 exact buckets
  static constexpr uint64_t kLinear = 1u << kLinearBits;
  static constexpr uint64_t kSub = kLinear / 2;               // 64 sub-buckets per octave
  static constexpr size_t kBuckets = kLinear + (64 - kLinearBits) * kSub;

  static size_t index_of(uint64_t v) {
    if (v < kLinear) return static_cast<size_t>(v);
    unsigned e = 63u - static_cast<unsigned>(std::countl_zero(v));
    uint64_t mantissa = v >> (e - (kLinearBits - 1));         // in [64, 128)
    return kLinear + (e - kLinearBits) * kSub + (mantissa - kSub);
  }

  static uint64_t midpoint_of(size_t i) {
    if (i < kLinear) return i;
    size_t octave = (i - kLinear) / kSub;
    uint64_t mantissa = (i - kLinear) % kSub + kSub;
    unsigned shift = static_cast<unsigned>(octave) + 1;       // e - (kLinearBits - 1)
    uint64_t low = mantissa << shift;
    return low + ((uint64_t{1} << shift) >> 1);
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t min_ = std::numeric_limits<uint64_t>::max();
  uint64_t max_ = 0;
};

}  // namespace bench
