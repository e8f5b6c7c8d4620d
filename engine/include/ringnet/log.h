// Logging: levels, fmt formatting, a pluggable sink. The default sink writes one line per
// message to stderr. Nothing in the engine logs per message at the default level (info).
//
// Thread-safety: set_log_sink/set_log_level may be called from any thread; log() may be
// called from any thread (the sink must be thread-safe; the default one is).
#pragma once

#include <fmt/format.h>

#include <atomic>
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

}  // namespace ringnet
