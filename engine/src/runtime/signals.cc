// SPDX-License-Identifier: MIT
// ShutdownOnSignals: see signals.h.
#include "ringnet/signals.h"

#include <pthread.h>

#include <csignal>

#include "ringnet/engine.h"
#include "ringnet/log.h"

namespace ringnet {

namespace {
sigset_t drain_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

ShutdownOnSignals::ShutdownOnSignals(Engine& engine, std::chrono::milliseconds deadline)
    : ShutdownOnSignals([&engine, deadline](int sig) {
        log(LogLevel::kInfo, "signal {}: draining for up to {} ms", sig, deadline.count());
        engine.shutdown(deadline);
      }) {}

ShutdownOnSignals::ShutdownOnSignals(std::function<void(int)> on_signal) {
  sigset_t set = drain_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this, on_signal = std::move(on_signal), set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (leaving_.load()) return;  // the destructor's wake-up, not a real signal
      if (received_.exchange(sig) == 0) on_signal(sig);
    }
  });
}

ShutdownOnSignals::~ShutdownOnSignals() {
  leaving_.store(true);
  pthread_kill(thread_.native_handle(), SIGTERM);  // blocked, so it reaches sigwait only
  thread_.join();
}

}  // namespace ringnet
