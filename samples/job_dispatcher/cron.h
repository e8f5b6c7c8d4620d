// SPDX-License-Identifier: MIT
// CronExpr: a five-field cron expression and the first time it fires after a given time.
//
// Syntax (Vixie cron's):
//
//   minute  hour  day-of-month  month  day-of-week
//   0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
//                               JAN-DEC SUN-SAT (names: three letters, any case)
//
//   *        every value          a-b     a through b
//   a,b,c    a list of items      */n     every n-th value from the field's minimum
//   a-b/n    a through b, step n  a/n     a through the field's maximum, step n
//
//   @yearly (@annually) = 0 0 1 1 *      @monthly = 0 0 1 * *    @weekly = 0 0 * * 0
//   @daily (@midnight)  = 0 0 * * *      @hourly  = 0 * * * *
//
// Days follow Vixie cron's rule: when both day fields are restricted (neither starts with
// `*`), a day matches if either field does ("0 0 13 * FRI" is every 13th and every Friday);
// when one starts with `*` (`*/2` too), the other alone decides.
//
// Times are UTC: there are no time zones here (g++ 12 has no tz database), so no daylight
// saving gaps or repeats either. A job meant for 02:00 local time needs its UTC hour.
#pragma once

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace jobs {

/// A parsed cron expression. Threads: a plain value (const methods may run concurrently).
class CronExpr {
 public:
  /// Parses `text`: five fields or a macro. On failure returns nullopt and, when `error`
  /// is not null, sets it to what is wrong and in which field.
  static std::optional<CronExpr> parse(std::string_view text, std::string* error);

  /// The first whole minute strictly after `t` that the expression matches; nullopt when
  /// none falls within the next 10 years ("0 0 30 2 *" never does; a satisfiable
  /// expression always fires within 8 years: Feb 29 skips at most 2100-style years), or
  /// when `t` is outside years 1..9999.
  std::optional<std::chrono::sys_seconds> next_after(std::chrono::sys_seconds t) const;

  /// The text it was parsed from, as given (a macro stays a macro).
  const std::string& text() const { return text_; }

 private:
  CronExpr() = default;
  bool day_matches(std::chrono::sys_days day) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;      // bit 0 unused: days are 1..31
  std::bitset<13> months_;    // bit 0 unused: months are 1..12
  std::bitset<7> weekdays_;   // 0 = Sunday (7 is folded into 0 when parsed)
  bool days_star_ = false;    // day-of-month starts with '*'
  bool weekdays_star_ = false;
};

}  // namespace jobs
