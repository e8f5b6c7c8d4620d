// SPDX-License-Identifier: MIT
// A strict reader of the Prometheus text exposition format (0.0.4), for tests: it checks
// what a Prometheus server would reject (bad names, labels, values; samples before their
// TYPE; a family's samples split; duplicate series; histograms whose buckets are not
// cumulative or whose +Inf bucket differs from _count) and gives the samples back by series.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace ringnet::test {

struct Scrape {
  std::map<std::string, std::string> types;  // family -> counter / gauge / histogram ...
  // Series "name{a="x",b="y"}" (labels as written) -> value; "name" without labels.
  std::map<std::string, double> samples;

  bool has_family(const std::string& name) const { return types.count(name) != 0; }
  // Sum over the series of `name` whose label text contains every one of `must_have`
  // (e.g. {"reason=\"reset\""}). Samples of other names never match.
  double sum(std::string_view name, std::vector<std::string> must_have = {}) const;
  // Number of series of `name`.
  size_t series(std::string_view name) const;
};

// Parses `text` into *out, or says which line is wrong and why.
testing::AssertionResult parse_prometheus(std::string_view text, Scrape* out);

}  // namespace ringnet::test
