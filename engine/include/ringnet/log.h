// Logging: levels, fmt formatting, a pluggable sink. The default sink writes one line per
// message to stderr. Nothing in the engine logs per message at the default level (info).
//
// Thread-safety: set_log_sink/set_log_level may be called from any thread; log() may be
// called from any thread (the sink must be thread-safe; the default one is).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>

namespace ringnet {

enum class LogLevel : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

std::string_view log_level_name(LogLevel level);

using LogSink = std::function<void(LogLevel, std::string_view message)>;

// Replaces the sink; an empty function restores the default stderr sink.
void set_log_sink(LogSink sink);
void set_log_level(LogLevel level);
LogLevel log_level();

namespace detail {
extern std::atomic<int> g_log_level;
void log_write(LogLevel level, std::string_view message);
}  // namespace detail

inline bool log_enabled(LogLevel level) {
  return static_cast<int>(level) >= detail::g_log_level.load(std::memory_order_relaxed);
}

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  detail::log_write(level, fmt::format(format, std::forward<Args>(args)...));
}

// Rate limit for lines that bad input can trigger at will (protocol errors, refused
// connections): at most `per_second` lines per second pass; the rest are counted and the
// next line that passes reports how many were dropped. Lock-free, any thread.
class LogRateLimit {
 public:
  explicit LogRateLimit(uint32_t per_second = 10) : per_second_(per_second) {}
  // True when a line may be written now; then *suppressed holds the number of lines
  // dropped since the last one that passed.
  bool allow(uint64_t* suppressed);

 private:
  uint32_t per_second_;
  std::atomic<int64_t> window_{0};  // the current second (CLOCK_MONOTONIC_COARSE)
  std::atomic<uint32_t> passed_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace ringnet
