// SPDX-License-Identifier: MIT
// Schedule: when a job runs, either every fixed interval or on a cron expression (UTC).
//
// Every replica of the dispatcher must compute the same fire times on its own, with no
// shared state: so an interval is anchored at the Unix epoch (a 5 s job fires at every
// multiple of 5 s since 1970-01-01T00:00:00Z, whenever the process started), and a cron
// expression fires at whole UTC minutes.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <variant>

#include "cron.h"

namespace jobs {

/// A time in Unix milliseconds (UTC, no leap seconds: chrono's system_clock).
using TimeMs = std::chrono::sys_time<std::chrono::milliseconds>;

/// A fixed interval or a cron expression. Threads: a plain value.
struct Schedule {
  /// Never fires: what next_after returns when there is no next time.
  static constexpr TimeMs kNever = TimeMs::max();

  /// Every `interval` (> 0) since the epoch.
  static Schedule every(std::chrono::milliseconds interval) { return Schedule{interval}; }
  /// On `expr`'s minutes.
  static Schedule cron(CronExpr expr) { return Schedule{std::move(expr)}; }

  /// The first fire time strictly after `t`. An interval: floor(t / interval) * interval +
  /// interval. A cron expression: its next whole minute after t. kNever when there is none
  /// (a cron expression that matches nothing within 10 years, an interval <= 0, overflow).
  TimeMs next_after(TimeMs t) const;

  /// For logs: "every 5000ms" or "cron */5 * * * *".
  std::string describe() const;

  /// The interval, or the expression. A default Schedule is an interval of 0: never.
  std::variant<std::chrono::milliseconds, CronExpr> rule{std::chrono::milliseconds{0}};
};

}  // namespace jobs
