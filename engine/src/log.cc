// Default log sink: one write(2) per line to stderr, so lines from several loop threads
// never interleave mid-line, and no stdio lock is held across a slow terminal.
#include "ringnet/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <ctime>
#include <mutex>

namespace ringnet {
namespace detail {
std::atomic<int> g_log_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace detail

namespace {

std::mutex g_sink_mu;
LogSink g_sink;  // empty = default

void default_sink(LogLevel level, std::string_view message) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm t{};
  localtime_r(&tv.tv_sec, &t);
  std::string line = fmt::format("{:02}:{:02}:{:02}.{:06} {} ringnet: {}\n", t.tm_hour,
                                 t.tm_min, t.tm_sec, tv.tv_usec, log_level_name(level), message);
  ssize_t rc = ::write(STDERR_FILENO, line.data(), line.size());
  (void)rc;  // nowhere to report a failed log write
}

}  // namespace

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "TRACE";
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO ";
    case LogLevel::kWarn: return "WARN ";
    case LogLevel::kError: return "ERROR";
    case LogLevel::kOff: return "OFF  ";
  }
  return "?";
}

void set_log_sink(LogSink sink) {
  std::lock_guard lock(g_sink_mu);
  g_sink = std::move(sink);
}

void set_log_level(LogLevel level) {
  detail::g_log_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel log_level() {
  return static_cast<LogLevel>(detail::g_log_level.load(std::memory_order_relaxed));
}

namespace detail {
void log_write(LogLevel level, std::string_view message) {
  std::lock_guard lock(g_sink_mu);
  if (g_sink) {
    g_sink(level, message);
  } else {
    default_sink(level, message);
  }
}
}  // namespace detail

bool LogRateLimit::allow(uint64_t* suppressed) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  int64_t now = ts.tv_sec;
  int64_t window = window_.load(std::memory_order_relaxed);
  if (now != window && window_.compare_exchange_strong(window, now, std::memory_order_relaxed)) {
    passed_.store(0, std::memory_order_relaxed);
  }
  if (passed_.fetch_add(1, std::memory_order_relaxed) >= per_second_) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
  return true;
}

}  // namespace ringnet
