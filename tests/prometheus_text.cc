// SPDX-License-Identifier: MIT
#include "prometheus_text.h"

#include <cmath>
#include <cstdlib>

namespace ringnet::test {
namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

bool valid_name(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!name_char(s[i], i == 0)) return false;
  }
  return true;
}

bool parse_value(std::string_view s, double* v) {
  if (s == "+Inf") return *v = HUGE_VAL, true;
  if (s == "-Inf") return *v = -HUGE_VAL, true;
  if (s == "NaN") return *v = NAN, true;
  std::string copy(s);
  char* end = nullptr;
  *v = std::strtod(copy.c_str(), &end);
  return !copy.empty() && end == copy.c_str() + copy.size();
}

struct Labels {
  std::vector<std::pair<std::string, std::string>> pairs;  // unescaped values
};

// Parses `{a="x",b="y"}` starting at s[0] == '{'; sets *used to the bytes taken.
bool parse_labels(std::string_view s, Labels* out, size_t* used, std::string* why) {
  size_t i = 1;
  std::set<std::string> seen;
  while (i < s.size() && s[i] != '}') {
    size_t start = i;
    while (i < s.size() && name_char(s[i], i == start)) ++i;
    std::string name(s.substr(start, i - start));
    if (name.empty() || i + 1 >= s.size() || s[i] != '=' || s[i + 1] != '"') {
      *why = "bad label name or missing =\"";
      return false;
    }
    if (!seen.insert(name).second) {
      *why = "label " + name + " twice";
      return false;
    }
    i += 2;
    std::string value;
    for (;; ++i) {
      if (i >= s.size()) return *why = "unterminated label value", false;
      if (s[i] == '"') break;
      if (s[i] == '\\') {
        if (++i >= s.size()) return *why = "dangling backslash", false;
        if (s[i] == 'n') value += '\n';
        else if (s[i] == '\\' || s[i] == '"') value += s[i];
        else return *why = "bad escape in label value", false;
      } else if (s[i] == '\n') {
        return *why = "raw newline in label value", false;
      } else {
        value += s[i];
      }
    }
    ++i;  // closing quote
    out->pairs.emplace_back(name, value);
    if (i < s.size() && s[i] == ',') ++i;
    else if (i < s.size() && s[i] != '}') return *why = "expected , or }", false;
  }
  if (i >= s.size()) return *why = "unterminated label set", false;
  *used = i + 1;
  return true;
}

struct HistogramSeries {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative) in written order
  bool has_sum = false, has_count = false;
  double count = 0;
};

}  // namespace

double Scrape::sum(std::string_view name, std::vector<std::string> must_have) const {
  double total = 0;
  for (const auto& [series, value] : samples) {
    std::string_view s = series;
    std::string_view n = s.substr(0, s.find('{'));
    if (n != name) continue;
    bool ok = true;
    for (const std::string& want : must_have) ok = ok && s.find(want) != std::string_view::npos;
    if (ok) total += value;
  }
  return total;
}

size_t Scrape::series(std::string_view name) const {
  size_t n = 0;
  for (const auto& [series, value] : samples) {
    if (std::string_view(series).substr(0, series.find('{')) == name) ++n;
  }
  return n;
}

testing::AssertionResult parse_prometheus(std::string_view text, Scrape* out) {
  if (!text.empty() && text.back() != '\n') {
    return testing::AssertionFailure() << "text does not end with a newline";
  }
  std::set<std::string> helped, finished;
  std::string current;  // family whose TYPE came last
  std::map<std::string, HistogramSeries> histograms;  // family + labels without le
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    ++line_no;
    auto fail = [&](const std::string& why) {
      return testing::AssertionFailure() << "line " << line_no << ": " << why << ": '" << line
                                         << "'";
    };
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (line.substr(0, 7) == "# HELP ") {
        std::string_view rest = line.substr(7);
        std::string name(rest.substr(0, rest.find(' ')));
        if (!valid_name(name)) return fail("bad name in HELP");
        if (!helped.insert(name).second) return fail("second HELP for " + name);
      } else if (line.substr(0, 7) == "# TYPE ") {
        std::string_view rest = line.substr(7);
        size_t sp = rest.find(' ');
        if (sp == std::string_view::npos) return fail("TYPE without a type");
        std::string name(rest.substr(0, sp));
        std::string type(rest.substr(sp + 1));
        if (!valid_name(name)) return fail("bad name in TYPE");
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
            type != "untyped") {
          return fail("unknown type " + type);
        }
        if (out->types.count(name) != 0) return fail("second TYPE for " + name);
        if (!current.empty()) finished.insert(current);
        out->types[name] = type;
        current = name;
      }
      continue;  // other comments are allowed
    }
    // A sample: name[{labels}] value
    size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    std::string name(line.substr(0, i));
    if (!valid_name(name)) return fail("bad sample name");
    Labels labels;
    std::string label_text;
    if (i < line.size() && line[i] == '{') {
      size_t used = 0;
      std::string why;
      if (!parse_labels(line.substr(i), &labels, &used, &why)) return fail(why);
      label_text = std::string(line.substr(i + 1, used - 2));
      i += used;
    }
    if (i >= line.size() || line[i] != ' ') return fail("no space before the value");
    std::string_view value_text = line.substr(i + 1);
    value_text = value_text.substr(0, value_text.find(' '));  // an optional timestamp follows
    double value = 0;
    if (!parse_value(value_text, &value)) return fail("bad value");
    // The family this sample belongs to must be the current one.
    std::string family = name;
    if (!current.empty() && out->types[current] == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (name == current + suffix) family = current;
      }
    }
    if (family != current) {
      if (finished.count(family) != 0) return fail("samples of " + family + " are split");
      return fail("sample without a TYPE line before it");
    }
    const std::string& type = out->types[current];
    if (type == "counter" && (value < 0 || std::isnan(value))) return fail("negative counter");
    std::string series = label_text.empty() ? name : name + "{" + label_text + "}";
    if (!out->samples.emplace(series, value).second) return fail("duplicate series");
    if (type == "histogram") {
      std::string key = current + "{";
      double le = NAN;
      for (const auto& [k, v] : labels.pairs) {
        if (k == "le") {
          if (!parse_value(v, &le)) return fail("bad le");
        } else {
          key += k + "=" + v + ",";
        }
      }
      HistogramSeries& h = histograms[key];
      if (name == current + "_bucket") {
        if (std::isnan(le)) return fail("bucket without le");
        if (!h.buckets.empty() && !(le > h.buckets.back().first)) return fail("le not increasing");
        if (!h.buckets.empty() && value < h.buckets.back().second) {
          return fail("buckets not cumulative");
        }
        h.buckets.emplace_back(le, value);
      } else if (name == current + "_sum") {
        h.has_sum = true;
      } else {
        h.has_count = true;
        h.count = value;
      }
    }
  }
  for (const auto& [key, h] : histograms) {
    if (h.buckets.empty() || !std::isinf(h.buckets.back().first)) {
      return testing::AssertionFailure() << key << ": no +Inf bucket";
    }
    if (!h.has_sum || !h.has_count) return testing::AssertionFailure() << key << ": no _sum/_count";
    if (h.buckets.back().second != h.count) {
      return testing::AssertionFailure() << key << ": +Inf bucket " << h.buckets.back().second
                                         << " != _count " << h.count;
    }
  }
  return testing::AssertionSuccess();
}

}  // namespace ringnet::test
