// SPDX-License-Identifier: MIT
// CronExpr: parsing the five fields into bitsets, and the next matching minute (cron.h).
#include "cron.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <vector>

namespace jobs {
namespace {

using namespace std::chrono;

constexpr std::array<std::string_view, 12> kMonthNames = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kWeekdayNames = {
    "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

// One of the five fields: its name (for errors), its values, and names for its values.
struct Field {
  std::string_view name;
  int min;
  int max;
  const std::string_view* value_names;  // the name of value first_named + i, or null
  int names_count;
  int first_named;
};

constexpr std::array<Field, 5> kFields = {{
    {"minute", 0, 59, nullptr, 0, 0},
    {"hour", 0, 23, nullptr, 0, 0},
    {"day-of-month", 1, 31, nullptr, 0, 0},
    {"month", 1, 12, kMonthNames.data(), 12, 1},
    {"day-of-week", 0, 7, kWeekdayNames.data(), 7, 0},
}};

constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) !=
        std::toupper(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) words.push_back(s.substr(i, j - i));
    i = j;
  }
  return words;
}

// A decimal number (digits only: no sign, no spaces); nullopt otherwise or on overflow.
std::optional<int> parse_number(std::string_view s) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || s.front() == '-' || ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

// Parses one field into `bits` (bit v set = value v matches); on failure sets `why`.
class FieldParser {
 public:
  FieldParser(const Field& field, std::string* why) : f_(field), why_(why) {}

  bool parse(std::string_view text, uint64_t* bits) {
    size_t begin = 0;
    while (true) {
      const size_t comma = text.find(',', begin);
      const std::string_view item = text.substr(begin, comma - begin);
      if (!parse_item(item, bits)) return false;
      if (comma == std::string_view::npos) return true;
      begin = comma + 1;
    }
  }

 private:
  // `*`, `v`, `a-b`, each optionally followed by `/step`.
  bool parse_item(std::string_view item, uint64_t* bits) {
    if (item.empty()) return fail("an empty list item");
    const size_t slash = item.find('/');
    const std::string_view range = item.substr(0, slash);
    int step = 1;
    if (slash != std::string_view::npos) {
      const auto s = parse_number(item.substr(slash + 1));
      if (!s) return fail("bad step \"" + std::string(item.substr(slash + 1)) + "\"");
      if (*s < 1 || *s > f_.max) {
        return fail("step " + std::to_string(*s) + " out of range 1-" + std::to_string(f_.max));
      }
      step = *s;
    }
    int lo = f_.min;
    int hi = f_.max;
    if (range != "*") {
      const size_t dash = range.find('-');
      if (!value(range.substr(0, dash), &lo)) return false;
      if (dash != std::string_view::npos) {
        if (!value(range.substr(dash + 1), &hi)) return false;
        if (lo > hi) return fail("range " + std::string(range) + " goes backwards");
      } else if (slash == std::string_view::npos) {
        hi = lo;  // a single value; "a/n" runs from a to the maximum
      }
    }
    for (int v = lo; v <= hi; v += step) *bits |= uint64_t{1} << v;
    return true;
  }

  // A number in the field's range, or one of its names.
  bool value(std::string_view s, int* out) {
    for (int i = 0; i < f_.names_count; ++i) {
      if (iequals(s, f_.value_names[i])) {
        *out = f_.first_named + i;
        return true;
      }
    }
    const auto v = parse_number(s);
    if (!v) return fail("bad value \"" + std::string(s) + "\"");
    if (*v < f_.min || *v > f_.max) {
      return fail("value " + std::to_string(*v) + " out of range " + std::to_string(f_.min) +
                  "-" + std::to_string(f_.max));
    }
    *out = *v;
    return true;
  }

  bool fail(const std::string& what) {
    if (why_) *why_ = what;
    return false;
  }

  const Field& f_;
  std::string* why_;
};

template <size_t N>
std::bitset<N> to_bitset(uint64_t bits) {
  return std::bitset<N>(bits & ((uint64_t{1} << N) - 1));
}

// The first set bit at `from` or above, or -1.
template <size_t N>
int next_bit(const std::bitset<N>& b, int from) {
  for (size_t i = static_cast<size_t>(from); i < N; ++i) {
    if (b[i]) return static_cast<int>(i);
  }
  return -1;
}

bool fail(std::string* error, std::string what) {
  if (error) *error = std::move(what);
  return false;
}

}  // namespace

std::optional<CronExpr> CronExpr::parse(std::string_view text, std::string* error) {
  const std::string_view given = trim(text);
  std::string_view fields_text = given;
  if (given.empty()) {
    fail(error, "empty cron expression");
    return std::nullopt;
  }
  if (given.front() == '@') {
    fields_text = {};
    for (const auto& [macro, expansion] : kMacros) {
      if (iequals(given, macro)) fields_text = expansion;
    }
    if (fields_text.empty()) {
      fail(error, "unknown macro \"" + std::string(given) +
                      "\" (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)");
      return std::nullopt;
    }
  }
  const std::vector<std::string_view> words = split_words(fields_text);
  if (words.size() != kFields.size()) {
    fail(error, "expected 5 fields (minute hour day-of-month month day-of-week), got " +
                    std::to_string(words.size()) + " in \"" + std::string(given) + "\"");
    return std::nullopt;
  }
  std::array<uint64_t, 5> bits{};
  for (size_t i = 0; i < kFields.size(); ++i) {
    std::string why;
    if (!FieldParser(kFields[i], &why).parse(words[i], &bits[i])) {
      fail(error, std::string(kFields[i].name) + " \"" + std::string(words[i]) + "\": " + why);
      return std::nullopt;
    }
  }
  // Day-of-week 7 is Sunday, as 0 is.
  if (bits[4] & (uint64_t{1} << 7)) bits[4] = (bits[4] & ~(uint64_t{1} << 7)) | 1;

  CronExpr e;
  e.text_ = std::string(given);
  e.minutes_ = to_bitset<60>(bits[0]);
  e.hours_ = to_bitset<24>(bits[1]);
  e.days_ = to_bitset<32>(bits[2]);
  e.months_ = to_bitset<13>(bits[3]);
  e.weekdays_ = to_bitset<7>(bits[4]);
  e.days_star_ = words[2].front() == '*';
  e.weekdays_star_ = words[4].front() == '*';
  return e;
}

bool CronExpr::day_matches(sys_days day) const {
  const bool by_date = days_[static_cast<unsigned>(year_month_day{day}.day())];
  const bool by_weekday = weekdays_[weekday{day}.c_encoding()];
  // Vixie cron: a `*` in either day field lets the other decide; two restricted fields
  // widen each other.
  if (days_star_ || weekdays_star_) return by_date && by_weekday;
  return by_date || by_weekday;
}

std::optional<sys_seconds> CronExpr::next_after(sys_seconds t) const {
  constexpr sys_days kFirstDay = sys_days{year{1} / 1 / 1};
  constexpr sys_days kLastDay = sys_days{year{9999} / 12 / 31};
  constexpr days kHorizon{366 * 10};

  const sys_time<minutes> start = floor<minutes>(t) + minutes{1};
  sys_days day = floor<days>(start);
  if (day < kFirstDay || day > kLastDay) return std::nullopt;
  const sys_days last = std::min(day + kHorizon, kLastDay);
  const hh_mm_ss<minutes> start_time{start - day};
  int from_hour = static_cast<int>(start_time.hours().count());
  int from_minute = static_cast<int>(start_time.minutes().count());

  // Whole months and days are skipped at once; within a matching day, hours and minutes
  // are found by scanning their bitsets: at most ~3,660 days are looked at.
  while (day <= last) {
    const year_month_day date{day};
    if (!months_[static_cast<unsigned>(date.month())]) {
      day = sys_days{(date.year() / date.month() + months{1}) / 1};
      from_hour = from_minute = 0;
      continue;
    }
    if (day_matches(day)) {
      for (int h = next_bit(hours_, from_hour); h >= 0; h = next_bit(hours_, h + 1)) {
        const int m = next_bit(minutes_, h == from_hour ? from_minute : 0);
        if (m >= 0) return day + hours{h} + minutes{m};
      }
    }
    day += days{1};
    from_hour = from_minute = 0;
  }
  return std::nullopt;
}

}  // namespace jobs
