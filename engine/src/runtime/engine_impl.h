// SPDX-License-Identifier: MIT
// Engine::Impl: the loops themselves, the listeners, the balancer and the stop/join state
// machine; what the loops share and ask of the engine is its LoopGroup side.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/event_loop.h"
#include "core/loop_group.h"
#include "ringnet/engine.h"
#include "runtime/admin_server.h"

namespace ringnet {

struct Engine::Impl final : LoopGroup {
  Impl(Engine& owner, EventHandler& h, const Options& o) : LoopGroup(h, o), engine(owner) {
    resolver = &names;
  }

  void dispatch_accepted(EventLoop& from, int fd, const SockAddr& peer, int spec) override;
  EventLoop& pick_loop(const SockAddr& peer);
  // Any thread: begin stopping (idempotent). Before the loops run it is latched and
  // carried out as soon as they do.
  void request_stop(std::chrono::milliseconds drain = std::chrono::milliseconds(-1)) override;
  void wake_loops() override;
  Status make_poller(EventLoop& loop, std::unique_ptr<Poller>* out) override;
  // Stops the acceptor first (no new sockets), and the loops once it has: a socket the
  // acceptor handed over is queued ahead of the loop's stop, so it is opened and closed
  // like any other instead of vanishing. `direct`: tell every loop at once (used when
  // start() failed and the acceptor may not run at all).
  void send_stop(bool direct);

  Engine& engine;

  struct ListenSpec {
    std::string text;
    SockAddr addr;            // as asked
    SockAddr bound;           // as bound (port resolved)
    std::vector<int> fds;     // one, or one per loop with reuse_port
  };
  std::vector<ListenSpec> specs;

  std::vector<std::unique_ptr<EventLoop>> loops;
  std::unique_ptr<EventLoop> acceptor;  // null with reuse_port
  std::vector<std::thread> threads;
  uint64_t rr_next = 0;                 // acceptor thread only
  // Declared after the loops, so destroyed (its thread joined) before them: its answers
  // are posted to loops.
  Resolver names;

  std::mutex mu;
  std::mutex mu_join;                   // serialises wait()
  std::atomic<bool> started{false};  // loops exist (stats may read them)
  bool threads_live = false;         // under mu: loop threads run and take stop requests
  bool stop_requested = false;       // under mu
  bool joined = false;
  std::atomic<bool> is_running{false};
  std::unique_ptr<AdminServer> admin;   // listen_admin()
  std::atomic<uint64_t> dial_next{0};   // round-robin over loops for Engine::dial
  mutable std::mutex mu_metrics;        // guards collectors
  std::vector<std::function<void(MetricsWriter&)>> collectors;
  bool over_limit(EventLoop& from, EventLoop& target, const SockAddr& peer, int fd);
};

}  // namespace ringnet
