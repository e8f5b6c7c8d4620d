// Engine::Impl: what the loops share — options, the handler, the loops themselves, the
// balancer, and the stop/join state machine.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "event_loop.h"
#include "ringnet/engine.h"

namespace ringnet {

struct Engine::Impl {
  Impl(Engine& owner, EventHandler& h, Options o) : engine(owner), handler(h), opts(o) {}

  // Acceptor side: spread an accepted socket over the loops (or keep it, with reuse_port).
  void dispatch_accepted(EventLoop& from, int fd, const SockAddr& peer);
  EventLoop& pick_loop(const SockAddr& peer);
  // Any thread: begin stopping (idempotent).
  void request_stop();

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
  std::condition_variable cv;
  bool started = false;
  bool stop_requested = false;
  bool joined = false;
  std::atomic<bool> is_running{false};
};

}  // namespace ringnet
