// SPDX-License-Identifier: MIT
/// @file
/// ShutdownOnSignals: SIGTERM/SIGINT start a graceful Engine::shutdown(deadline), the way a
/// pod being replaced expects. Opt-in; construct it on the main thread before
/// Engine::start(): it blocks the two signals in the calling thread — the loop threads
/// created afterwards inherit the mask — and a helper thread takes them with sigwait(), so
/// no asynchronous signal handler ever runs. Destroying it (after wait()) ends that thread.
/// Construct it before ANY other thread exists (a WorkerPool's, your own): a thread
/// created earlier keeps the signals unblocked, the kernel may hand SIGTERM to it, and its
/// default action kills the process with no drain. (Starting a pool in on_boot is safe.)
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "ringnet/config.h"

namespace ringnet {

class Engine;

/// SIGTERM/SIGINT start Engine::shutdown(deadline) (see the file comment).
/// Threads: construct and destroy it on the main thread, before any other thread exists; received() from any thread.
class RINGNET_EXPORT ShutdownOnSignals {
 public:
  /// Blocks SIGTERM/SIGINT and starts the thread that calls engine.shutdown(deadline) on one.
  ShutdownOnSignals(Engine& engine, std::chrono::milliseconds deadline);
  /// Blocks SIGTERM/SIGINT and starts the thread that calls `on_signal(signal)` on the
  /// first one (later ones are counted in received() only), for a server whose own drain
  /// comes before the engine's (RpcServer). It runs on that thread and may block; the
  /// destructor waits for it.
  explicit ShutdownOnSignals(std::function<void(int)> on_signal);
  ~ShutdownOnSignals();
  ShutdownOnSignals(const ShutdownOnSignals&) = delete;
  ShutdownOnSignals& operator=(const ShutdownOnSignals&) = delete;

  /// The signal that started the drain, or 0.
  int received() const { return received_.load(); }

 private:
  std::atomic<int> received_{0};
  std::atomic<bool> leaving_{false};
  std::thread thread_;
};

}  // namespace ringnet
