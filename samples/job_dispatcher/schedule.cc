// SPDX-License-Identifier: MIT
// Schedule::next_after for epoch-anchored intervals and cron expressions (schedule.h).
#include "schedule.h"

#include <limits>

namespace jobs {

using namespace std::chrono;

TimeMs Schedule::next_after(TimeMs t) const {
  if (const auto* interval = std::get_if<milliseconds>(&rule)) {
    const int64_t step = interval->count();
    if (step <= 0) return kNever;
    const int64_t now = t.time_since_epoch().count();
    // Floor division (C++ rounds toward zero), so times before the epoch work too.
    int64_t slots = now / step;
    if (now % step != 0 && now < 0) --slots;
    if (slots >= std::numeric_limits<int64_t>::max() / step - 1) return kNever;
    return TimeMs{milliseconds{(slots + 1) * step}};
  }
  const auto next = std::get<CronExpr>(rule).next_after(floor<seconds>(t));
  return next ? TimeMs{*next} : kNever;
}

std::string Schedule::describe() const {
  if (const auto* interval = std::get_if<milliseconds>(&rule)) {
    return "every " + std::to_string(interval->count()) + "ms";
  }
  return "cron " + std::get<CronExpr>(rule).text();
}

}  // namespace jobs
