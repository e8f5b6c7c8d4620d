// SPDX-License-Identifier: MIT
/// @file
/// Logging: levels, fmt formatting, a pluggable sink, rate-limited error lines.
///
/// Default sink: log() formats the line (with a timestamp) on the caller's thread and pushes
/// it into a bounded in-memory queue (kLogQueueLines lines or kLogQueueBytes bytes, whichever
/// fills first). One background writer thread, started on the first line, writes the queue
/// to stderr. A slow or blocked stderr (full pipe, paused terminal) therefore never blocks a
/// loop thread in write(2): the caller holds one mutex for a push (no allocation, no
/// syscall under it). When the queue is full the line is dropped and counted; the writer
/// later writes "ringnet: N log lines dropped (stderr too slow)". Lines from one thread keep
/// their order (one FIFO, one writer). If the writer thread cannot be started, lines are
/// written on the caller, as before. Timestamps are local time from a UTC offset that the
/// writer refreshes once a minute (localtime_r's lock is not fork-safe; see log.cc).
///
/// Exit: queued lines are lost if the process ends before the writer gets to them. An
/// atexit handler calls flush_logs(500ms); Engine::wait()/~Engine, and any path that ends
/// with _exit() or quick_exit(), should call flush_logs() themselves.
///
/// fork(): the writer thread is not inherited. pthread_atfork handlers take the queue lock
/// around fork() (it is only ever held for a push or a swap, so fork waits microseconds),
/// and the child drops the parent's queued lines (the parent writes them), resets the
/// queue's lock and condition variables, and starts its own writer on its first line, so a
/// daemon that forks and then runs an engine keeps the non-blocking sink.
///
/// User sink (set_log_sink): called synchronously on the logging thread, as before, without
/// the queue: the user owns its blocking behaviour. It is not serialised by ringnet (so no
/// ringnet lock is held across it, and fork() cannot catch one held): it must be thread-safe.
///
/// Thread-safety: every function here may be called from any thread.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>

#include "ringnet/config.h"

namespace ringnet {

/// Severity of a log line; kOff disables logging.
enum class LogLevel : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

/// A short name for `level`.
RINGNET_EXPORT std::string_view log_level_name(LogLevel level);

/// Receives each formatted line that passes the level.
using LogSink = std::function<void(LogLevel, std::string_view message)>;

/// Bounds of the default sink's queue.
inline constexpr size_t kLogQueueLines = 4096;
/// Bytes the default sink's queue holds at most.
inline constexpr size_t kLogQueueBytes = size_t{1} << 20;

/// Replaces the sink; an empty function restores the default stderr sink. A call of the old
/// sink already under way on another thread may still be running when this returns.
RINGNET_EXPORT void set_log_sink(LogSink sink);
/// Lines below `level` are dropped before formatting.
RINGNET_EXPORT void set_log_level(LogLevel level);
/// The current level.
RINGNET_EXPORT LogLevel log_level();

/// Waits until every line the default sink had queued when this was called has been written
/// to stderr, or `timeout` passes. True when written (or nothing was queued). Never call it
/// from a user sink.
RINGNET_EXPORT bool flush_logs(std::chrono::milliseconds timeout);

/// Lines the default sink dropped because its queue was full, since the process started.
RINGNET_EXPORT uint64_t log_lines_dropped();

namespace detail {
RINGNET_EXPORT extern std::atomic<int> g_log_level;
RINGNET_EXPORT void log_write(LogLevel level, std::string_view message);
}  // namespace detail

/// True when a line at `level` would be written.
inline bool log_enabled(LogLevel level) {
  return static_cast<int>(level) >= detail::g_log_level.load(std::memory_order_relaxed);
}

template <typename... Args>
/// Formats (fmt syntax) and writes one line, if `level` is enabled.
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  detail::log_write(level, fmt::format(format, std::forward<Args>(args)...));
}

/// Rate limit for lines that bad input can trigger at will (protocol errors, refused
/// connections): at most `per_second` lines per second pass; the rest are counted and the
/// next line that passes reports how many were dropped. Lock-free, any thread.
class RINGNET_EXPORT LogRateLimit {
 public:
  /// constexpr: a function-local static one is constant-initialised (no guard per call).
  constexpr explicit LogRateLimit(uint32_t per_second = 10) : per_second_(per_second) {}
  /// True when a line may be written now; then *suppressed holds the number of lines
  /// dropped since the last one that passed.
  bool allow(uint64_t* suppressed);

 private:
  uint32_t per_second_;
  std::atomic<int64_t> window_{0};  // the current second (CLOCK_MONOTONIC_COARSE)
  std::atomic<uint32_t> passed_{0};
  std::atomic<uint64_t> suppressed_{0};
};

/// log() through `limit`: a line that passes gets " (N similar lines suppressed)" appended
/// when lines were dropped before it. Suppressed lines are not formatted. The count is only
/// reported by the next line that passes, so a burst that stops is reported by the next
/// line from the same limiter (there is no timer).
template <typename... Args>
void log_limited(LogRateLimit& limit, LogLevel level, fmt::format_string<Args...> format,
                 Args&&... args) {
  if (!log_enabled(level)) return;  // disabled lines are not counted as suppressed
  uint64_t suppressed = 0;
  if (!limit.allow(&suppressed)) return;
  std::string message = fmt::format(format, std::forward<Args>(args)...);
  if (suppressed != 0) {
    fmt::format_to(std::back_inserter(message), " ({} similar lines suppressed)", suppressed);
  }
  detail::log_write(level, message);
}

}  // namespace ringnet

/// log() at an error site that a peer or an overload can trigger repeatedly: at most
/// `per_second` lines per second from this call site (one function-local LogRateLimit per
/// site; per instantiation inside a template), the rest suppressed and counted, e.g.
///   RINGNET_LOG_LIMITED(LogLevel::kWarn, 10, "accept on {}: {}", addr, std::strerror(err));
#define RINGNET_LOG_LIMITED(level, per_second, format, ...)                              \
  do {                                                                                   \
    static ::ringnet::LogRateLimit ringnet_site_limit_{per_second};                      \
    ::ringnet::log_limited(ringnet_site_limit_, level, format __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)
