// SPDX-License-Identifier: MIT
// Default log sink: a bounded queue drained to stderr by one writer thread (see log.h for
// the contract). Loop threads only format and push; the writer does every write(2), so a
// stderr that blocks stalls the writer, never a loop. Also: user sinks, fork handling, the
// per-site rate limit.
#include "ringnet/log.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace ringnet {
namespace detail {
std::atomic<int> g_log_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace detail

namespace {

// How long the atexit handler waits for queued lines: long enough for a terminal or a log
// collector, short enough that a blocked stderr does not hold up exit for long.
constexpr std::chrono::milliseconds kExitFlushTimeout{500};
constexpr size_t kMaxIov = 64;

// Seconds east of UTC for timestamps. localtime_r takes glibc's tzset lock, which fork()
// does not reset: a child forked while a logging thread held it would hang in its first
// log(). So loggers only read this; the writer thread refreshes it once a minute (DST).
std::atomic<long> g_utc_offset{0};
constexpr std::chrono::seconds kUtcOffsetRefresh{60};

void refresh_utc_offset() {
  time_t now = ::time(nullptr);
  tm t{};
  if (localtime_r(&now, &t) != nullptr) g_utc_offset.store(t.tm_gmtoff, std::memory_order_relaxed);
}

std::string format_line(LogLevel level, std::string_view message) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  long day_secs = (tv.tv_sec + g_utc_offset.load(std::memory_order_relaxed)) % 86400;
  if (day_secs < 0) day_secs += 86400;
  return fmt::format("{:02}:{:02}:{:02}.{:06} {} ringnet: {}\n", day_secs / 3600,
                     day_secs / 60 % 60, day_secs % 60, tv.tv_usec, log_level_name(level),
                     message);
}

// Writes all of iov[0..n) to stderr. Retries EINTR; waits out EAGAIN (stderr may be a
// non-blocking fd shared with someone else); gives up on anything else (EPIPE, EBADF):
// there is nowhere to report a failed log write.
void write_all(iovec* iov, int n) {
  while (n > 0) {
    ssize_t rc = ::writev(STDERR_FILENO, iov, n);
    if (rc < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{STDERR_FILENO, POLLOUT, 0};
        ::poll(&p, 1, 100);
        continue;
      }
      return;
    }
    auto left = static_cast<size_t>(rc);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {  // short write: resume mid-line
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}

void write_lines(const std::vector<std::string>& lines) {
  iovec iov[kMaxIov];
  for (size_t i = 0; i < lines.size();) {
    int n = 0;
    for (; n < static_cast<int>(kMaxIov) && i < lines.size(); ++n, ++i) {
      iov[n] = iovec{const_cast<char*>(lines[i].data()), lines[i].size()};
    }
    write_all(iov, n);
  }
}

void write_line(const std::string& line) {
  iovec iov{const_cast<char*>(line.data()), line.size()};
  write_all(&iov, 1);
}

// Process-wide logging state. Leaked on purpose: the writer thread (detached) and loggers
// on other threads may still run during static destruction.
class Logging {
 public:
  static Logging& get() {
    static Logging* const instance = new Logging;
    return *instance;
  }

  // ---- user sink ----
  void set_sink(LogSink sink) {
    std::shared_ptr<const LogSink> next;
    if (sink) next = std::make_shared<const LogSink>(std::move(sink));
    std::lock_guard lock(sink_mu_);
    user_sink_set_.store(next != nullptr, std::memory_order_relaxed);
    user_sink_.swap(next);
    // The old sink is released outside the lock (`next` dies after `lock`).
  }
  // A reference to the user sink, or null. The mutex guards only the pointer copy, so no
  // ringnet lock is held while the sink runs.
  std::shared_ptr<const LogSink> user_sink() {
    if (!user_sink_set_.load(std::memory_order_relaxed)) return nullptr;
    std::lock_guard lock(sink_mu_);
    return user_sink_;
  }

  // ---- default sink ----
  // Queues a formatted line. Holds mu_ for O(1) work: the queue's capacity is reserved, so
  // push_back does not allocate, and the writer is woken after the unlock.
  void push(std::string line) {
    std::unique_lock lock(mu_);
    if (writer_ != Writer::kRunning && !start_writer_locked()) {
      lock.unlock();
      write_line(line);  // no writer thread could be started: write on the caller
      return;
    }
    bool full = queue_.size() >= kLogQueueLines ||
                (!queue_.empty() && queued_bytes_ + line.size() > kLogQueueBytes);
    if (full) {
      ++drop_pending_;
      dropped_total_.fetch_add(1, std::memory_order_relaxed);
      return;  // `line` is freed after the unlock
    }
    queued_bytes_ += line.size();
    queue_.push_back(std::move(line));
    ++pushed_;
    bool wake = writer_idle_;
    writer_idle_ = false;  // one wake-up per idle period
    lock.unlock();
    if (wake) work_cv_.notify_one();
  }

  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (writer_ != Writer::kRunning) return true;  // lines were written on their callers
    uint64_t target = pushed_;
    return done_cv_.wait_for(lock, timeout, [&] { return written_ >= target; });
  }

  uint64_t dropped() const { return dropped_total_.load(std::memory_order_relaxed); }

 private:
  enum class Writer { kNone, kRunning, kFailed };

  Logging() {
    refresh_utc_offset();
    // Registered once per process image; a fork child inherits both registrations.
    pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child);
    std::atexit(&flush_at_exit);
  }

  // Starts the writer, with every signal blocked so that none is delivered to it (and a
  // SIGPIPE from a closed stderr pipe stays pending on it instead of killing the process:
  // writev just fails with EPIPE). Called with mu_ held; the writer waits for it.
  bool start_writer_locked() {
    if (writer_ == Writer::kFailed) return false;
    queue_.reserve(kLogQueueLines);
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, &writer_main, this);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    writer_ = rc == 0 ? Writer::kRunning : Writer::kFailed;
    return rc == 0;
  }

  static void* writer_main(void* self) {
    pthread_setname_np(pthread_self(), "ringnet-log");
    static_cast<Logging*>(self)->run_writer();
    return nullptr;
  }

  // Swaps the whole queue out under the lock and writes it outside, muduo-style, so
  // producers contend with the writer only for the swap.
  void run_writer() {
    std::vector<std::string> batch;
    batch.reserve(kLogQueueLines);
    auto next_refresh = std::chrono::steady_clock::now() + kUtcOffsetRefresh;
    std::unique_lock lock(mu_);
    for (;;) {
      while (queue_.empty() && drop_pending_ == 0) {
        writer_idle_ = true;
        work_cv_.wait(lock);
      }
      if (std::chrono::steady_clock::now() >= next_refresh) {
        // Outside mu_: were this thread stuck on the tzset lock (see g_utc_offset), only
        // writing would stall, never a logger.
        lock.unlock();
        refresh_utc_offset();
        next_refresh = std::chrono::steady_clock::now() + kUtcOffsetRefresh;
        lock.lock();
      }
      writer_idle_ = false;
      queue_.swap(batch);
      queued_bytes_ = 0;
      // Drops happen only while the queue is full, so every line in `batch` was queued
      // before them: the note goes after the batch.
      uint64_t dropped = std::exchange(drop_pending_, 0);
      uint64_t end = pushed_;
      lock.unlock();
      write_lines(batch);
      if (dropped != 0) {
        write_line(format_line(
            LogLevel::kWarn, fmt::format("{} log lines dropped (stderr too slow)", dropped)));
      }
      batch.clear();
      lock.lock();
      written_ = end;
      done_cv_.notify_all();
    }
  }

  static void flush_at_exit() { get().flush(kExitFlushTimeout); }

  // fork(): hold both locks across it so the child never inherits one held by a thread
  // that does not exist there. Neither is held across I/O or a user sink.
  static void before_fork() {
    Logging& l = get();
    l.sink_mu_.lock();
    l.mu_.lock();
  }
  static void after_fork_parent() {
    Logging& l = get();
    l.mu_.unlock();
    l.sink_mu_.unlock();
  }
  // The child has no writer thread. Its queued lines are the parent's (the parent writes
  // them); a condition variable may count the parent's writer as a waiter, so both are
  // rebuilt (not destroyed: glibc's destroy would wait for that waiter). The next line
  // starts a writer of the child's own.
  static void after_fork_child() {
    Logging& l = get();
    new (&l.work_cv_) std::condition_variable;
    new (&l.done_cv_) std::condition_variable;
    l.queue_.clear();
    l.queued_bytes_ = 0;
    l.drop_pending_ = 0;
    l.written_ = l.pushed_;
    l.writer_ = Writer::kNone;
    l.writer_idle_ = false;
    l.dropped_total_.store(0, std::memory_order_relaxed);
    l.mu_.unlock();
    l.sink_mu_.unlock();
  }

  std::mutex sink_mu_;
  std::shared_ptr<const LogSink> user_sink_;  // guarded by sink_mu_
  std::atomic<bool> user_sink_set_{false};    // lets the default path skip sink_mu_

  std::mutex mu_;                     // guards everything below but dropped_total_
  std::condition_variable work_cv_;   // the writer waits here for lines
  std::condition_variable done_cv_;   // flush() waits here for the writer
  std::vector<std::string> queue_;    // formatted lines, oldest first
  size_t queued_bytes_ = 0;
  uint64_t pushed_ = 0;               // lines ever queued
  uint64_t written_ = 0;              // of those, lines the writer has finished with
  uint64_t drop_pending_ = 0;         // dropped since the writer last reported
  Writer writer_ = Writer::kNone;
  bool writer_idle_ = false;          // the writer waits on work_cv_
  std::atomic<uint64_t> dropped_total_{0};
};

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

void set_log_sink(LogSink sink) { Logging::get().set_sink(std::move(sink)); }

void set_log_level(LogLevel level) {
  detail::g_log_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel log_level() {
  return static_cast<LogLevel>(detail::g_log_level.load(std::memory_order_relaxed));
}

bool flush_logs(std::chrono::milliseconds timeout) { return Logging::get().flush(timeout); }

uint64_t log_lines_dropped() { return Logging::get().dropped(); }

namespace detail {
void log_write(LogLevel level, std::string_view message) {
  Logging& logging = Logging::get();
  if (auto sink = logging.user_sink()) {
    (*sink)(level, message);
    return;
  }
  logging.push(format_line(level, message));
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
