// SPDX-License-Identifier: MIT
/// @file
/// Metrics: histogram snapshots and a writer for the Prometheus text exposition format.
///
/// The engine keeps its counters and histograms per loop, written by that loop alone with
/// plain relaxed stores (no locked instruction, no lock), and merges them only when they
/// are read. Engine::write_metrics() renders them; Engine::listen_admin() serves them at
/// /metrics. Applications add their own families with Engine::add_metrics():
///
///   engine.add_metrics([&](ringnet::MetricsWriter& w) {
///     w.family("myapp_cache_entries", ringnet::MetricType::kGauge, "Entries in the cache.");
///     w.value("", cache.size());
///   });
///
/// Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4):
/// one "# HELP" and one "# TYPE" line per family, then its samples; histograms as
/// cumulative `_bucket{le="..."}` samples ending with le="+Inf", plus `_sum` and `_count`.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ringnet/config.h"

namespace ringnet {

/// A histogram with power-of-two buckets, as a snapshot of plain values. Bucket b holds the
/// values in (2^(b-1), 2^b]; bucket 0 holds 0 and 1. So "values <= 2^b" is exact: the
/// cumulative count through bucket b. Units are the recorder's (bytes, nanoseconds, ...).
struct RINGNET_EXPORT Log2Histogram {
  /// Number of buckets.
  static constexpr int kBuckets = 65;
  /// Count of values per bucket (see bucket_of).
  std::array<uint64_t, kBuckets> buckets{};
  /// Number of values recorded.
  uint64_t count = 0;
  /// Sum of the values recorded.
  uint64_t sum = 0;

  /// The bucket `v` falls in.
  static int bucket_of(uint64_t v) {
    return v <= 1 ? 0 : static_cast<int>(std::bit_width(v - 1));
  }
  /// Values recorded that were <= 2^b (b in 0..64).
  uint64_t count_at_most_pow2(int b) const;
  /// Upper bound (a power of two) of the bucket holding the q-quantile (0 < q <= 1): the
  /// true value is at most this and more than half of it. 0 when empty.
  uint64_t quantile(double q) const;
  /// sum / count, or 0 when empty.
  double mean() const { return count == 0 ? 0.0 : double(sum) / double(count); }
  /// Adds `other`'s counts into this one.
  Log2Histogram& operator+=(const Log2Histogram& other);
};

/// The TYPE of a metric family.
enum class MetricType { kCounter, kGauge, kHistogram };

/// Builds one exposition text. Not thread-safe; one writer per scrape.
class RINGNET_EXPORT MetricsWriter {
 public:
  /// One histogram bucket.
  struct Bucket {
    double le;            ///< inclusive upper bound
    uint64_t cumulative;  ///< values <= le
  };

  /// Starts a family: its HELP and TYPE lines. Names match [a-zA-Z_:][a-zA-Z0-9_:]*;
  /// counters end in _total by convention. A family name written twice is a caller bug
  /// (Prometheus rejects the scrape): the second is skipped, counted in duplicates().
  void family(std::string_view name, MetricType type, std::string_view help);
  /// One sample of the current counter or gauge family. `labels` is the inside of the
  /// braces, already formatted (`loop="0",reason="reset"`; escape values with
  /// escape_label), or empty.
  void value(std::string_view labels, uint64_t v);
  /// The same for a floating-point value.
  void value(std::string_view labels, double v);
  /// One histogram of the current histogram family: `buckets` in increasing `le` order
  /// (the +Inf bucket is added from `count`).
  void histogram(std::string_view labels, std::span<const Bucket> buckets, double sum,
                 uint64_t count);
  /// The same from a Log2Histogram: buckets le = 2^b * scale for b = first, first+step, ...
  /// up to last (e.g. nanoseconds shown in seconds: scale 1e-9).
  void histogram(std::string_view labels, const Log2Histogram& h, double scale, int first,
                 int last, int step);

  /// Backslash, double quote and newline escaped, as label values need.
  static std::string escape_label(std::string_view value);

  /// The exposition text so far.
  const std::string& text() const { return out_; }
  /// Moves the text out.
  std::string take() { return std::move(out_); }
  /// Families skipped because their name was written before.
  int duplicates() const { return duplicates_; }

 private:
  void sample_line(std::string_view suffix, std::string_view labels, std::string_view extra,
                   std::string_view value_text);
  std::string out_;
  std::string name_;       // current family ("" when skipped)
  std::string seen_;       // "\n"-joined family names written so far
  MetricType type_ = MetricType::kCounter;
  int duplicates_ = 0;
};

}  // namespace ringnet
