// SPDX-License-Identifier: MIT
// LoopGroup: what the loops of one engine share, and the few things a loop asks of the
// engine that owns it. core/ sees the engine only through this class, and a backend only
// as a Poller, which make_poller hands it; Engine::Impl (runtime/) implements this class,
// and runtime/backends.cc builds the pollers.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "core/poller.h"
#include "net/resolver.h"
#include "net/source_limiter.h"
#include "ringnet/address.h"
#include "ringnet/handler.h"
#include "ringnet/options.h"
#include "ringnet/status.h"
#include "ringnet/transport.h"

namespace ringnet {

class EventLoop;

class LoopGroup {
 public:
  LoopGroup(EventHandler& h, const Options& o) : handler(h), opts(o) {}
  virtual ~LoopGroup() = default;
  LoopGroup(const LoopGroup&) = delete;
  LoopGroup& operator=(const LoopGroup&) = delete;

  // Acceptor side: spread an accepted socket over the loops (or keep it, with reuse_port).
  // `spec`: the Engine::listen() call whose listener accepted it.
  virtual void dispatch_accepted(EventLoop& from, int fd, const SockAddr& peer, int spec) = 0;
  // Any thread: begin stopping (idempotent); drain < 0: stop() (flush only).
  virtual void request_stop(std::chrono::milliseconds drain) = 0;
  // Any thread: every loop runs an iteration soon.
  virtual void wake_loops() = 0;
  // On the loop's own thread (an io_uring ring belongs to its issuer): the loop's
  // backend for Options::backend, set up and ready to watch descriptors.
  virtual Status make_poller(EventLoop& loop, std::unique_ptr<Poller>* out) = 0;

  EventHandler& handler;
  Options opts;
  // shutdown(deadline): drain gracefully for this long; negative = stop() (flush only).
  // Written under the engine's lock before the stop is sent; loops read it after (the
  // task queue orders it).
  std::chrono::milliseconds drain_for{-1};
  // Connections accepted and not yet closed, over every loop (Options::max_connections).
  std::atomic<int64_t> open_conns{0};
  // Accepted connections adopted by a loop and not yet closed (dials excluded): a
  // graceful drain closes dialed connections once this is 0.
  std::atomic<int64_t> served{0};
  // shutdown(deadline) was asked for (set before any loop hears of it): the close of the
  // last accepted connection wakes every loop, even one that has not begun its drain.
  std::atomic<bool> graceful_stop{false};
  // ListenOptions::transport per Engine::listen() call (null: plain), fixed before start.
  std::vector<std::shared_ptr<TransportFactory>> listen_transports;
  std::unique_ptr<SourceLimiter> sources;  // Options::max_connections_per_source
  // Host-name lookups for Engine::dial, off the loops. Owned by the engine, which joins
  // it before the loops go away.
  Resolver* resolver = nullptr;
};

}  // namespace ringnet
