// Engine::Impl: what the loops share — options, the handler, the loops themselves, the
// balancer, and the stop/join state machine.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin_server.h"
#include "event_loop.h"
#include "source_limiter.h"
#include "ringnet/engine.h"

namespace ringnet {

struct Engine::Impl {
  Impl(Engine& owner, EventHandler& h, Options o) : engine(owner), handler(h), opts(o) {}

  // Acceptor side: spread an accepted socket over the loops (or keep it, with reuse_port).
  void dispatch_accepted(EventLoop& from, int fd, const SockAddr& peer);
  EventLoop& pick_loop(const SockAddr& peer);
  // Any thread: begin stopping (idempotent). Before the loops run it is latched and
  // carried out as soon as they do.
  void request_stop(std::chrono::milliseconds drain = std::chrono::milliseconds(-1));
  // Stops the acceptor first (no new sockets), and the loops once it has: a socket the
  // acceptor handed over is queued ahead of the loop's stop, so it is opened and closed
  // like any other instead of vanishing. `direct`: tell every loop at once (used when
  // start() failed and the acceptor may not run at all).
  void send_stop(bool direct);

  Engine& engine;
  EventHandler& handler;
  Options opts;

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

  std::mutex mu;
  std::mutex mu_join;                   // serialises wait()
  std::atomic<bool> started{false};  // loops exist (stats may read them)
  bool threads_live = false;         // under mu: loop threads run and take stop requests
  bool stop_requested = false;       // under mu
  // shutdown(deadline): drain gracefully for this long; negative = stop() (flush only).
  // Written under mu before the stop is sent; loops read it after (the task queue orders it).
  std::chrono::milliseconds drain_for{-1};
  bool joined = false;
  std::atomic<bool> is_running{false};
  // Connections accepted and not yet closed, over every loop (Options::max_connections).
  std::atomic<int64_t> open_conns{0};
  // Accepted connections adopted by a loop and not yet closed (dials excluded): a
  // graceful drain closes dialed connections once this is 0.
  std::atomic<int64_t> served{0};
  // shutdown(deadline) was asked for (set before any loop hears of it): the close of the
  // last accepted connection wakes every loop, even one that has not begun its drain.
  std::atomic<bool> graceful_stop{false};
  // Any thread: every loop runs an iteration soon (an empty task).
  void wake_loops();
  std::unique_ptr<AdminServer> admin;   // listen_admin()
  std::atomic<uint64_t> dial_next{0};   // round-robin over loops for Engine::dial
  std::unique_ptr<SourceLimiter> sources;  // Options::max_connections_per_source
  mutable std::mutex mu_metrics;        // guards collectors
  std::vector<std::function<void(MetricsWriter&)>> collectors;
  bool over_limit(EventLoop& from, EventLoop& target, const SockAddr& peer, int fd);
};

}  // namespace ringnet
