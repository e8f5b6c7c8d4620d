// SPDX-License-Identifier: MIT
#include "ringnet/metrics.h"

#include <fmt/format.h>

#include <cassert>
#include <cmath>

namespace ringnet {

uint64_t Log2Histogram::count_at_most_pow2(int b) const {
  uint64_t n = 0;
  for (int i = 0; i <= b && i < kBuckets; ++i) n += buckets[static_cast<size_t>(i)];
  return n;
}

uint64_t Log2Histogram::quantile(double q) const {
  if (count == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * double(count)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += buckets[static_cast<size_t>(b)];
    if (seen >= rank) return b >= 64 ? UINT64_MAX : uint64_t{1} << b;
  }
  return UINT64_MAX;
}

Log2Histogram& Log2Histogram::operator+=(const Log2Histogram& other) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  count += other.count;
  sum += other.sum;
  return *this;
}

namespace {

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

const char* type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// HELP text escapes backslash and newline only.
std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// Shortest text that reads back as the same double ("0.001", "1e-06", "+Inf").
std::string number_text(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return fmt::format("{}", v);
}

}  // namespace

void MetricsWriter::family(std::string_view name, MetricType type, std::string_view help) {
  assert(valid_name(name) && "metric names match [a-zA-Z_:][a-zA-Z0-9_:]*");
  std::string key = fmt::format("\n{}\n", name);
  if (!valid_name(name) || seen_.find(key) != std::string::npos) {
    ++duplicates_;
    name_.clear();  // its samples are dropped too
    return;
  }
  seen_ += key;
  name_ = name;
  type_ = type;
  fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name,
                 escape_help(help), name, type_name(type));
}

void MetricsWriter::sample_line(std::string_view suffix, std::string_view labels,
                                std::string_view extra, std::string_view value_text) {
  out_ += name_;
  out_ += suffix;
  if (!labels.empty() || !extra.empty()) {
    out_ += '{';
    out_ += labels;
    if (!labels.empty() && !extra.empty()) out_ += ',';
    out_ += extra;
    out_ += '}';
  }
  out_ += ' ';
  out_ += value_text;
  out_ += '\n';
}

void MetricsWriter::value(std::string_view labels, uint64_t v) {
  if (name_.empty()) return;
  assert(type_ != MetricType::kHistogram);
  sample_line("", labels, "", fmt::format("{}", v));
}

void MetricsWriter::value(std::string_view labels, double v) {
  if (name_.empty()) return;
  assert(type_ != MetricType::kHistogram);
  sample_line("", labels, "", number_text(v));
}

void MetricsWriter::histogram(std::string_view labels, std::span<const Bucket> buckets,
                              double sum, uint64_t count) {
  if (name_.empty()) return;
  assert(type_ == MetricType::kHistogram);
  for (const Bucket& b : buckets) {
    sample_line("_bucket", labels, fmt::format("le=\"{}\"", number_text(b.le)),
                fmt::format("{}", b.cumulative));
  }
  sample_line("_bucket", labels, "le=\"+Inf\"", fmt::format("{}", count));
  sample_line("_sum", labels, "", number_text(sum));
  sample_line("_count", labels, "", fmt::format("{}", count));
}

void MetricsWriter::histogram(std::string_view labels, const Log2Histogram& h, double scale,
                              int first, int last, int step) {
  Bucket buckets[Log2Histogram::kBuckets];
  size_t n = 0;
  for (int b = first; b <= last && b < Log2Histogram::kBuckets && step > 0; b += step) {
    buckets[n++] = {std::ldexp(1.0, b) * scale, h.count_at_most_pow2(b)};
  }
  histogram(labels, std::span<const Bucket>(buckets, n), double(h.sum) * scale, h.count);
}

std::string MetricsWriter::escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace ringnet
