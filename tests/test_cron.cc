// SPDX-License-Identifier: MIT
// CronExpr and Schedule (samples/job_dispatcher): a table of expressions, each with a start
// time and the next several fire times (UTC, written as text); impossible expressions give
// nullopt; malformed ones are refused with a reason; intervals are anchored at the epoch.
// No wall clock: every time is given.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cron.h"
#include "schedule.h"

namespace jobs {
namespace {

using namespace std::chrono;

// "2025-03-10 12:34" or "2025-03-10 12:34:56", UTC.
sys_seconds utc(const std::string& text) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  const int n = std::sscanf(text.c_str(), "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &s);
  EXPECT_GE(n, 5) << "bad time in the test: " << text;
  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)},
                            day{static_cast<unsigned>(d)}};
  EXPECT_TRUE(date.ok()) << "bad date in the test: " << text;
  return sys_days{date} + hours{h} + minutes{mi} + seconds{s};
}

// The inverse, with the weekday, so a failure reads well: "2025-03-10 12:34 Mon".
std::string show(sys_seconds t) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  const sys_days day = floor<days>(t);
  const year_month_day date{day};
  const hh_mm_ss<seconds> time{t - day};
  char out[64];
  std::snprintf(out, sizeof out, "%04d-%02u-%02u %02d:%02d%s %s", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                time.seconds().count() ? ":??" : "", kDays[weekday{day}.c_encoding()]);
  return out;
}

CronExpr must_parse(const std::string& text) {
  std::string error;
  auto expr = CronExpr::parse(text, &error);
  EXPECT_TRUE(expr.has_value()) << text << ": " << error;
  return expr ? *expr : *CronExpr::parse("* * * * *", nullptr);
}

struct Case {
  const char* name;
  const char* expr;
  const char* from;
  std::vector<const char*> next;  // consecutive fire times after `from`
};

const Case kCases[] = {
    {"EveryMinute", "* * * * *", "2025-03-10 12:34:56",
     {"2025-03-10 12:35", "2025-03-10 12:36", "2025-03-10 12:37"}},
    {"EveryQuarterHour", "*/15 * * * *", "2025-03-10 12:34",
     {"2025-03-10 12:45", "2025-03-10 13:00", "2025-03-10 13:15"}},
    {"HourRangeWithStep", "30 9-17/4 * * *", "2025-03-10 10:00",
     {"2025-03-10 13:30", "2025-03-10 17:30", "2025-03-11 09:30"}},
    {"Lists", "0,30 8,20 * * *", "2025-03-10 08:15",
     {"2025-03-10 08:30", "2025-03-10 20:00", "2025-03-10 20:30", "2025-03-11 08:00"}},
    {"StartWithStepRunsToTheMaximum", "5/20 * * * *", "2025-03-10 12:30",
     {"2025-03-10 12:45", "2025-03-10 13:05", "2025-03-10 13:25"}},
    {"MonthNamesAnyCase", "0 0 1 jan,Jul *", "2025-03-10 00:00",
     {"2025-07-01 00:00", "2026-01-01 00:00", "2026-07-01 00:00"}},
    {"MonthNameRangeWithStep", "0 12 15 FEB-DEC/3 *", "2025-06-01 00:00",
     {"2025-08-15 12:00", "2025-11-15 12:00", "2026-02-15 12:00"}},
    {"WeekdayNames", "0 9 * * MON-FRI", "2025-03-14 10:00",  // a Friday
     {"2025-03-17 09:00", "2025-03-18 09:00", "2025-03-19 09:00"}},
    {"SevenIsSunday", "0 0 * * 7", "2025-03-10 00:00",
     {"2025-03-16 00:00", "2025-03-23 00:00", "2025-03-30 00:00"}},
    {"RangeToSeven", "0 0 * * 5-7", "2025-03-10 00:00",
     {"2025-03-14 00:00", "2025-03-15 00:00", "2025-03-16 00:00", "2025-03-21 00:00"}},
    {"SundayName", "0 0 * * sun", "2025-03-10 00:00", {"2025-03-16 00:00", "2025-03-23 00:00"}},
    // Both day fields restricted: the 13th or any Friday.
    {"DayOfMonthOrDayOfWeek", "0 0 13 * FRI", "2025-05-01 00:00",
     {"2025-05-02 00:00", "2025-05-09 00:00", "2025-05-13 00:00", "2025-05-16 00:00"}},
    // A day field starting with '*' (a step too): both must match, odd days that are Mondays.
    {"StarredDayFieldMeansBoth", "0 0 */2 * MON", "2025-03-01 00:00",
     {"2025-03-03 00:00", "2025-03-17 00:00", "2025-03-31 00:00", "2025-04-07 00:00"}},
    // "30 Feb or Monday": the Mondays of February.
    {"ImpossibleDateOrWeekday", "0 0 30 2 MON", "2025-01-01 00:00",
     {"2025-02-03 00:00", "2025-02-10 00:00", "2025-02-17 00:00", "2025-02-24 00:00",
      "2026-02-02 00:00"}},
    {"ThirtyFirstSkipsShortMonths", "0 0 31 * *", "2025-01-31 00:00",
     {"2025-03-31 00:00", "2025-05-31 00:00", "2025-07-31 00:00", "2025-08-31 00:00",
      "2025-10-31 00:00", "2025-12-31 00:00", "2026-01-31 00:00"}},
    {"LeapDay", "0 0 29 2 *", "2025-01-01 00:00", {"2028-02-29 00:00", "2032-02-29 00:00"}},
    {"LeapDayAcross2100", "0 0 29 2 *", "2096-03-01 00:00",
     {"2104-02-29 00:00", "2108-02-29 00:00"}},
    {"YearRollover", "* * * * *", "2025-12-31 23:59", {"2026-01-01 00:00", "2026-01-01 00:01"}},
    {"LastMinuteOfTheYear", "59 23 31 12 *", "2025-12-31 23:59",
     {"2026-12-31 23:59", "2027-12-31 23:59"}},
    {"Yearly", "@yearly", "2025-03-10 12:00", {"2026-01-01 00:00", "2027-01-01 00:00"}},
    {"Annually", "@annually", "2025-03-10 12:00", {"2026-01-01 00:00"}},
    {"Monthly", "@monthly", "2025-03-10 12:00", {"2025-04-01 00:00", "2025-05-01 00:00"}},
    {"Weekly", "@weekly", "2025-03-10 12:00", {"2025-03-16 00:00", "2025-03-23 00:00"}},
    {"Daily", "@daily", "2025-03-10 12:00", {"2025-03-11 00:00", "2025-03-12 00:00"}},
    {"Midnight", "@MIDNIGHT", "2025-03-10 12:00", {"2025-03-11 00:00"}},
    {"Hourly", "@hourly", "2025-03-10 12:34", {"2025-03-10 13:00", "2025-03-10 14:00"}},
    // Strictly after: a start on a fire time (or within its minute) gives the next one.
    {"StartOnAMatch", "0 12 * * *", "2025-03-10 12:00", {"2025-03-11 12:00"}},
    {"StartWithinAMatchingMinute", "0 12 * * *", "2025-03-10 12:00:30", {"2025-03-11 12:00"}},
    {"StartJustBefore", "0 12 * * *", "2025-03-10 11:59:59", {"2025-03-10 12:00"}},
    {"BeforeTheEpoch", "0 0 1 1 *", "1969-06-01 00:00", {"1970-01-01 00:00", "1971-01-01 00:00"}},
};

class CronTable : public testing::TestWithParam<Case> {};

TEST_P(CronTable, NextFireTimes) {
  const Case& c = GetParam();
  const CronExpr expr = must_parse(c.expr);
  sys_seconds t = utc(c.from);
  for (const char* expected : c.next) {
    const auto next = expr.next_after(t);
    ASSERT_TRUE(next.has_value()) << c.expr << " after " << show(t);
    EXPECT_EQ(show(*next), show(utc(expected))) << c.expr << " after " << show(t);
    t = *next;
  }
}

INSTANTIATE_TEST_SUITE_P(Cron, CronTable, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(CronExpr, NeverMatchingGivesNullopt) {
  for (const char* text : {"0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"}) {
    EXPECT_FALSE(must_parse(text).next_after(utc("2025-01-01 00:00")).has_value()) << text;
  }
}

TEST(CronExpr, OutsideYearsOneToNineThousandGivesNullopt) {
  const CronExpr every = must_parse("* * * * *");
  EXPECT_FALSE(every.next_after(utc("9999-12-31 23:59")).has_value());
  EXPECT_TRUE(every.next_after(utc("9999-12-31 23:58")).has_value());
}

TEST(CronExpr, TextIsWhatWasGivenTrimmed) {
  EXPECT_EQ(must_parse("*/5 * * * *").text(), "*/5 * * * *");
  EXPECT_EQ(must_parse("  @daily\n").text(), "@daily");
}

TEST(CronExpr, MalformedExpressionsAreRefusedWithAReason) {
  const char* const bad[] = {
      "",              "   ",           "hello",          "@reboot",       "* * * *",
      "* * * * * *",   "60 * * * *",    "* 24 * * *",     "* * 0 * *",     "* * 32 * *",
      "* * * 0 *",     "* * * 13 *",    "* * * * 8",      "*/0 * * * *",   "5/0 * * * *",
      "*/ * * * *",    "5-1 * * * *",   "1,,2 * * * *",   "1, * * * *",    "-1 * * * *",
      "1-2-3 * * * *", "* * * FOO *",   "MON * * * *",    "* * * * JAN",   "*/61 * * * *",
      "1.5 * * * *",   "+1 * * * *",    "** * * * *",     "*-5 * * * *",   "99999999999 * * * *",
  };
  for (const char* text : bad) {
    std::string error;
    EXPECT_FALSE(CronExpr::parse(text, &error).has_value()) << "accepted: \"" << text << "\"";
    EXPECT_FALSE(error.empty()) << "no reason for: \"" << text << "\"";
  }
  EXPECT_FALSE(CronExpr::parse("60 * * * *", nullptr).has_value());  // no error string
}

TEST(CronExpr, ErrorsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"60 * * * *", "minute"},       {"* 24 * * *", "hour"},
      {"* * 32 * *", "day-of-month"}, {"* * * 13 *", "month"},
      {"* * * * 8", "day-of-week"},   {"* * * * * *", "expected 5 fields"},
  };
  for (const auto& [text, word] : cases) {
    std::string error;
    CronExpr::parse(text, &error);
    EXPECT_NE(error.find(word), std::string::npos) << text << " -> " << error;
  }
}

// Schedule works in milliseconds.
TimeMs at_ms(int64_t ms) { return TimeMs{milliseconds{ms}}; }
TimeMs at(const std::string& text, int64_t extra_ms = 0) {
  return TimeMs{utc(text)} + milliseconds{extra_ms};
}

TEST(Schedule, IntervalIsAnchoredAtTheEpochAndStrictlyAfter) {
  const Schedule s = Schedule::every(milliseconds{7});
  EXPECT_EQ(s.next_after(at_ms(0)), at_ms(7));
  EXPECT_EQ(s.next_after(at_ms(6)), at_ms(7));
  EXPECT_EQ(s.next_after(at_ms(7)), at_ms(14));
  EXPECT_EQ(s.next_after(at_ms(8)), at_ms(14));
  EXPECT_EQ(s.next_after(at_ms(-1)), at_ms(0));
  EXPECT_EQ(s.next_after(at_ms(-7)), at_ms(0));
  EXPECT_EQ(s.next_after(at_ms(-8)), at_ms(-7));
}

TEST(Schedule, IntervalTimesAreWholeMultiplesWhateverTheStart) {
  const Schedule five_s = Schedule::every(seconds{5});
  EXPECT_EQ(five_s.next_after(at("2025-03-10 12:00:03", 250)), at("2025-03-10 12:00:05"));
  EXPECT_EQ(five_s.next_after(at("2025-03-10 12:00:05")), at("2025-03-10 12:00:10"));
  const Schedule hourly = Schedule::every(hours{1});
  EXPECT_EQ(hourly.next_after(at("2025-03-10 12:34:56", 789)), at("2025-03-10 13:00"));
}

TEST(Schedule, CronFiresOnWholeMinutesStrictlyAfter) {
  const Schedule s = Schedule::cron(must_parse("*/15 * * * *"));
  EXPECT_EQ(s.next_after(at("2025-03-10 12:14:59", 999)), at("2025-03-10 12:15"));
  EXPECT_EQ(s.next_after(at("2025-03-10 12:15")), at("2025-03-10 12:30"));
  EXPECT_EQ(s.next_after(at("2025-03-10 12:15", 1)), at("2025-03-10 12:30"));
}

TEST(Schedule, NoNextTimeIsNever) {
  EXPECT_EQ(Schedule::cron(must_parse("0 0 30 2 *")).next_after(at("2025-01-01 00:00")),
            Schedule::kNever);
  EXPECT_EQ(Schedule{}.next_after(at_ms(0)), Schedule::kNever);
  EXPECT_EQ(Schedule::every(milliseconds{-5}).next_after(at_ms(0)), Schedule::kNever);
  EXPECT_EQ(Schedule::every(milliseconds{10}).next_after(TimeMs::max() - milliseconds{5}),
            Schedule::kNever);
}

TEST(Schedule, Describe) {
  EXPECT_EQ(Schedule::every(seconds{5}).describe(), "every 5000ms");
  EXPECT_EQ(Schedule::cron(must_parse("@hourly")).describe(), "cron @hourly");
}

}  // namespace
}  // namespace jobs
