// SPDX-License-Identifier: MIT
#include "ringnet/engine.h"

#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "net/resolver.h"
#include "net/socket_ops.h"
#include "ringnet/log.h"
#include "runtime/backends.h"
#include "runtime/engine_impl.h"

namespace ringnet {
namespace {

int online_cores() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

void name_and_pin(std::thread& t, int index, bool pin) {
  std::string name = index < 0 ? "ringnet-accept" : "ringnet-loop-" + std::to_string(index);
  pthread_setname_np(t.native_handle(), name.substr(0, 15).c_str());
  if (!pin || index < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(index % online_cores(), &set);
  if (int rc = pthread_setaffinity_np(t.native_handle(), sizeof(set), &set); rc != 0) {
    log(LogLevel::kWarn, "cannot pin loop {}: {}", index, std::strerror(rc));
  }
}

void schedule_tick(Engine::Impl& impl, EventLoop& loop, Clock::time_point when) {
  loop.timers().add(when, [&impl, &loop] {
    TickResult r = impl.handler.on_tick();
    if (r.action == Action::kShutdown) {
      impl.request_stop();
      return;
    }
    auto delay = std::max(r.next_delay, std::chrono::nanoseconds(0));
    schedule_tick(impl, loop, Clock::now() + std::chrono::duration_cast<Clock::duration>(delay));
  });
}

void unlink_unix_path(const SockAddr& addr) {
  if (addr.family() != AF_UNIX) return;
  const auto* sun = reinterpret_cast<const sockaddr_un*>(addr.raw());
  if (sun->sun_path[0] != '\0') ::unlink(sun->sun_path);
}

// Starts one thread per loop and waits until each has set up its poller (on its own
// thread). Returns the first failure.
Status spawn_loops(Engine::Impl& impl) {
  std::vector<EventLoop*> all;
  for (auto& loop : impl.loops) all.push_back(loop.get());
  if (impl.acceptor) all.push_back(impl.acceptor.get());
  Status first_error;
  for (EventLoop* loop : all) {
    std::promise<Status> ready;
    std::future<Status> result = ready.get_future();
    impl.threads.emplace_back([loop, &ready] { loop->run(ready); });
    name_and_pin(impl.threads.back(), loop->index(), impl.opts.pin_loops);
    Status s = result.get();
    if (!s && first_error.is_ok()) first_error = std::move(s);
  }
  return first_error;
}

}  // namespace

// ---------------------------------------------------------------- Impl

EventLoop& Engine::Impl::pick_loop(const SockAddr& peer) {
  size_t n = loops.size();
  if (n == 1) return *loops[0];
  switch (opts.balancer) {
    case Balancer::kLeastConnections: {
      size_t best = 0;
      for (size_t i = 1; i < n; ++i) {
        if (loops[i]->load().load(std::memory_order_relaxed) <
            loops[best]->load().load(std::memory_order_relaxed)) {
          best = i;
        }
      }
      return *loops[best];
    }
    case Balancer::kSourceHash:
      if (peer.is_ip()) return *loops[peer.ip_hash() % n];
      break;  // Unix peers have no source address: spread them round-robin
    case Balancer::kRoundRobin:
      break;
  }
  return *loops[rr_next++ % n];
}

// Max connections: checked where the socket is accepted, before any loop adopts it.
bool Engine::Impl::over_limit(EventLoop& from, EventLoop& target, const SockAddr& peer, int fd) {
  const char* which = nullptr;
  if (opts.max_connections != 0 &&
      open_conns.load(std::memory_order_relaxed) >= static_cast<int64_t>(opts.max_connections)) {
    which = "max_connections";
  } else if (opts.max_connections_per_loop != 0 &&
             target.load().load(std::memory_order_relaxed) >=
                 static_cast<int64_t>(opts.max_connections_per_loop)) {
    which = "max_connections_per_loop";
  }
  // Last, so a refusal for another reason never has to give the source's count back.
  if (which == nullptr && sources != nullptr && peer.is_ip() && !sources->try_add(peer)) {
    // Counted before the close: whoever sees the close sees the count.
    bump(from.counters_mut().refused_source_limit);
    ::close(fd);
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "refusing {}: max_connections_per_source ({}) reached",
                        peer.to_string(), opts.max_connections_per_source);
    return true;
  }
  if (which == nullptr) return false;
  bump(from.counters_mut().refused_limit);
  ::close(fd);
  RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "refusing {}: {} reached", peer.to_string(), which);
  return true;
}

void Engine::Impl::dispatch_accepted(EventLoop& from, int fd, const SockAddr& peer, int spec) {
  if (acceptor == nullptr) {  // reuse_port: the accepting loop keeps it
    if (over_limit(from, from, peer, fd)) return;
    sockets::tune_accepted(fd, peer.family(), opts);
    from.load().fetch_add(1, std::memory_order_relaxed);
    open_conns.fetch_add(1, std::memory_order_relaxed);
    from.adopt(fd, peer, spec);
    return;
  }
  EventLoop& target = pick_loop(peer);
  if (over_limit(from, target, peer, fd)) return;
  sockets::tune_accepted(fd, peer.family(), opts);
  open_conns.fetch_add(1, std::memory_order_relaxed);
  // Counted now, not at adoption, so a burst of accepts sees its own assignments.
  target.load().fetch_add(1, std::memory_order_relaxed);
  target.post([&target, fd, peer, spec] { target.adopt(fd, peer, spec); });
}

Status Engine::Impl::make_poller(EventLoop& loop, std::unique_ptr<Poller>* out) {
  return ringnet::make_poller(loop, opts, out);
}

void Engine::Impl::wake_loops() {
  for (auto& loop : loops) {
    TaskQueue::Task nothing = [] {};
    loop->try_post(nothing);
  }
}

void Engine::Impl::request_stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard lock(mu);
    if (stop_requested) return;
    stop_requested = true;
    drain_for = drain;
    graceful_stop.store(drain.count() >= 0, std::memory_order_release);
    if (!threads_live) return;  // start() sends it once the loops run
  }
  send_stop(false);
}

void Engine::Impl::send_stop(bool direct) {
  auto stop_loops = [this] {
    for (auto& loop : loops) loop->request_stop();
  };
  if (acceptor && !direct) {
    acceptor->request_stop(stop_loops);
    return;
  }
  if (acceptor) acceptor->request_stop();
  stop_loops();
}

// ---------------------------------------------------------------- Engine

Engine::Engine(EventHandler& handler, Options options)
    : impl_(std::make_unique<Impl>(*this, handler, options)) {
  if (impl_->opts.loops <= 0) impl_->opts.loops = online_cores();
}

Engine::~Engine() {
  if (impl_->started) {
    stop();
    wait();
  } else {
    for (auto& spec : impl_->specs) {
      for (int fd : spec.fds) ::close(fd);
      unlink_unix_path(spec.bound);
    }
  }
}

Status Engine::listen(std::string_view address) { return listen(address, ListenOptions{}); }

Status Engine::listen(std::string_view address, ListenOptions options) {
  if (impl_->started) return Status::invalid("listen() after start()");
  Impl::ListenSpec spec;
  spec.text = std::string(address);
  if (Status s = SockAddr::parse(address, spec.addr); !s) {
    NamedAddress name;
    if (!parse_named_address(address, name)) return s;
    // Before start(), on the caller's thread: a blocking lookup stalls no loop.
    if (int rc = resolve_now(name, spec.addr); rc != 0) {
      return Status::invalid("listen " + std::string(address) + ": cannot resolve '" + name.host +
                             "': " + ::gai_strerror(rc));
    }
  }
  bool reuse_port = impl_->opts.reuse_port && spec.addr.is_ip();
  int count = reuse_port ? impl_->opts.loops : 1;
  SockAddr bind_addr = spec.addr;
  for (int i = 0; i < count; ++i) {
    int fd = -1;
    Status s = sockets::open_listener(bind_addr, impl_->opts, reuse_port, &fd);
    if (!s) {
      for (int open_fd : spec.fds) ::close(open_fd);
      return s;
    }
    spec.fds.push_back(fd);
    if (i == 0) {
      spec.bound = spec.addr.is_ip() ? sockets::local_address(fd) : spec.addr;
      bind_addr = spec.bound;  // the other reuse_port listeners share the resolved port
    }
  }
  impl_->specs.push_back(std::move(spec));
  impl_->listen_transports.push_back(std::move(options.transport));
  return Status::ok();
}

Status Engine::start() {
  Impl& impl = *impl_;
  if (impl.started) return Status::invalid("engine already started");
  if (Status s = resolve_backend(impl.opts); !s) return s;
  if (impl.opts.max_connections_per_source != 0) {
    impl.sources = std::make_unique<SourceLimiter>(static_cast<uint32_t>(
        std::min<size_t>(impl.opts.max_connections_per_source, UINT32_MAX)));
  }
  for (int i = 0; i < impl.opts.loops; ++i) {
    impl.loops.push_back(std::make_unique<EventLoop>(impl, i));
  }
  if (!impl.opts.reuse_port) impl.acceptor = std::make_unique<EventLoop>(impl, -1);
  for (size_t spec_index = 0; spec_index < impl.specs.size(); ++spec_index) {
    auto& spec = impl.specs[spec_index];
    for (size_t i = 0; i < spec.fds.size(); ++i) {
      // The acceptor's, or with reuse_port loop i's (a Unix listener then goes to loop 0).
      EventLoop& owner = impl.acceptor ? *impl.acceptor : *impl.loops[i];
      owner.assign_listener(spec.fds[i], static_cast<int>(spec_index), spec.bound);
    }
    spec.fds.clear();  // the loops own them now
  }
  if (impl.admin) {
    if (Status s = impl.admin->start(); !s) return Status::invalid("admin listener: " + s.message());
  }
  impl.started = true;
  Action boot = impl.handler.on_boot(*this);
  if (boot == Action::kShutdown) impl.request_stop();
  if (impl.opts.ticker) {
    EventLoop& loop0 = *impl.loops[0];
    loop0.post([&impl, &loop0] { schedule_tick(impl, loop0, Clock::now()); });
  }
  if (Status s = spawn_loops(impl); !s) {
    {
      std::lock_guard lock(impl.mu);
      impl.stop_requested = true;
    }
    impl.send_stop(true);
    wait();
    return s;
  }
  impl.is_running = true;
  bool stop_pending;
  {
    std::lock_guard lock(impl.mu);
    impl.threads_live = true;
    stop_pending = impl.stop_requested;
  }
  if (stop_pending) impl.send_stop(false);
  for (auto& spec : impl.specs) {
    log(LogLevel::kDebug, "listening on {} ({} loops, {})", spec.bound.to_string(),
        impl.opts.loops, balancer_name(impl.opts.balancer));
  }
  return Status::ok();
}

void Engine::wait() {
  Impl& impl = *impl_;
  std::lock_guard lock(impl.mu_join);
  if (!impl.started || impl.joined) return;
  for (auto& t : impl.threads) t.join();
  // Sockets the acceptor handed over after a loop had left run() are closed here.
  for (auto& loop : impl.loops) loop->drain_after_exit();
  for (auto& spec : impl.specs) unlink_unix_path(spec.bound);
  impl.joined = true;
  impl.is_running = false;
  if (impl.admin) impl.admin->stop_and_wait();  // /metrics stays up through the drain
  impl.handler.on_shutdown(*this);
  flush_logs(std::chrono::seconds(1));  // what the loops logged reaches stderr before exit
}

Status Engine::run() {
  if (Status s = start(); !s) return s;
  wait();
  return Status::ok();
}

void Engine::stop() { impl_->request_stop(); }

void Engine::shutdown(std::chrono::milliseconds deadline) {
  impl_->request_stop(std::max(deadline, std::chrono::milliseconds(0)));
}

void Engine::stop_accepting() {
  Impl& impl = *impl_;
  if (!impl.is_running.load()) return;
  // Each loop owns its listeners (the acceptor's, or one per loop with reuse_port) and
  // closes them itself. A loop that has left (its queue closed) closed them already.
  auto close_on = [](EventLoop& loop) {
    TaskQueue::Task task([&loop] { loop.close_listeners(); });
    if (!loop.exited()) (void)loop.try_post(task);
  };
  if (impl.acceptor) close_on(*impl.acceptor);
  for (auto& loop : impl.loops) close_on(*loop);
}

bool Engine::running() const { return impl_->is_running.load(); }

Status Engine::dial(std::string_view address, DialOptions options) {
  Impl& impl = *impl_;
  SockAddr addr;
  NamedAddress name;
  bool named = false;
  if (Status s = SockAddr::parse(address, addr); !s) {
    if (!parse_named_address(address, name)) return s;
    named = true;  // looked up off the loops (EventLoop::dial_name)
  } else if (!addr.is_ip() && addr.family() != AF_UNIX) {
    return Status::invalid("dial: unsupported address");
  }
  if (!impl.is_running.load()) return Status::invalid("dial: engine not running");
  {
    // A graceful drain still dials (a draining proxy must reach its backends); stop()
    // does not. A dial that meets the loop's end anyway ends in on_close (ECANCELED).
    std::lock_guard lock(impl.mu);
    if (impl.stop_requested && impl.drain_for.count() < 0) {
      return Status::invalid("dial: engine stopping");
    }
  }
  const int n = static_cast<int>(impl.loops.size());
  if (options.loop >= n) return Status::invalid("dial: no loop " + std::to_string(options.loop));
  int index = options.loop >= 0 ? options.loop
                                : static_cast<int>(impl.dial_next.fetch_add(1) % uint64_t(n));
  EventLoop& loop = *impl.loops[static_cast<size_t>(index)];
  loop.load().fetch_add(1, std::memory_order_relaxed);
  impl.open_conns.fetch_add(1, std::memory_order_relaxed);
  // Refused once the loop has left for good (its queue is closed): nothing would run it.
  TaskQueue::Task task = named ? TaskQueue::Task([&loop, name, options] { loop.dial_name(name, options); })
                               : TaskQueue::Task([&loop, addr, options] { loop.dial(addr, options); });
  if (loop.exited() || !loop.try_post(task)) {
    loop.load().fetch_sub(1, std::memory_order_relaxed);
    impl.open_conns.fetch_sub(1, std::memory_order_relaxed);
    return Status::invalid("dial: engine stopping");
  }
  return Status::ok();
}

bool Engine::stopping() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stop_requested;
}

Status Engine::listen_admin(std::string_view address) {
  if (impl_->started) return Status::invalid("listen_admin() after start()");
  if (impl_->admin) return Status::invalid("listen_admin(): there is one already");
  auto admin = std::make_unique<AdminServer>(*this);
  if (Status s = admin->listen(address); !s) return s;
  impl_->admin = std::move(admin);
  return Status::ok();
}

SockAddr Engine::admin_addr() const { return impl_->admin ? impl_->admin->bound() : SockAddr(); }

void Engine::add_metrics(std::function<void(MetricsWriter&)> collector) {
  std::lock_guard lock(impl_->mu_metrics);
  impl_->collectors.push_back(std::move(collector));
}

int Engine::loop_count() const { return impl_->opts.loops; }

const Options& Engine::options() const { return impl_->opts; }

std::vector<SockAddr> Engine::listen_addrs() const {
  std::vector<SockAddr> out;
  for (const auto& spec : impl_->specs) out.push_back(spec.bound);
  return out;
}

EngineStats Engine::stats() const {
  EngineStats s;
  if (!impl_->started.load(std::memory_order_acquire)) return s;
  auto add = [&s](const LoopCounters& c) {
    auto get = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
    s.accepted += get(c.accepted);
    s.open += get(c.open);
    s.closed += get(c.closed);
    for (int i = 0; i < kCloseReasonCount; ++i) s.closed_by_reason[i] += get(c.closed_by_reason[i]);
    s.bytes_in += get(c.bytes_in);
    s.bytes_out += get(c.bytes_out);
    s.read_calls += get(c.read_calls);
    s.write_calls += get(c.write_calls);
    s.accept_errors += get(c.accept_errors);
    s.fd_exhausted += get(c.fd_exhausted);
    s.budget_yields += get(c.budget_yields);
    s.tasks_run += get(c.tasks_run);
    s.outbound_dropped += get(c.outbound_dropped);
    s.inbound_dropped += get(c.inbound_dropped);
    s.writes_refused += get(c.writes_refused);
    s.inbound_budget_closed += get(c.inbound_budget_closed);
    s.inbound_held += get(c.inbound_held);
    s.pool_cached_bytes += get(c.pool_cached_bytes);
    s.buffer_ring_empty += get(c.buffer_ring_empty);
    s.cq_overflows += get(c.cq_overflows);
    s.refused_stopping += get(c.refused_stopping);
    s.refused_limit += get(c.refused_limit);
    s.refused_source_limit += get(c.refused_source_limit);
    s.drain_deadline_closed += get(c.drain_deadline_closed);
    s.recv_bundles += get(c.recv_bundles);
    s.uring_registered_rings += get(c.uring_registered_ring);
    s.uring_incremental_rings += get(c.uring_incremental_buffers);
    s.uring_buffers_offered += get(c.uring_buffers_offered);
    s.uring_fixed_file_slots += get(c.uring_fixed_file_slots);
    s.read_pauses += get(c.read_pauses);
    s.inbound_overflows += get(c.inbound_overflows);
    s.traffic_calls += get(c.traffic_calls);
    s.dials += get(c.dials);
    s.dialed += get(c.dialed);
    s.dial_failures += get(c.dial_failures);
    s.conn_writes += get(c.conn_writes);
    c.flush_bytes.merge_into(s.flush_bytes);
    c.batch_events.merge_into(s.batch_events);
    c.busy_ns.merge_into(s.busy_ns);
  };
  for (const auto& loop : impl_->loops) {
    add(loop->counters());
    s.queued_tasks += loop->queued_tasks();
  }
  if (impl_->acceptor) {
    add(impl_->acceptor->counters());
    s.queued_tasks += impl_->acceptor->queued_tasks();
  }
  return s;
}

LoopStats Engine::loop_stats(int loop) const {
  LoopStats s;
  if (!impl_->started.load(std::memory_order_acquire)) return s;
  if (loop < 0 || loop >= static_cast<int>(impl_->loops.size())) return s;
  const LoopCounters& c = impl_->loops[static_cast<size_t>(loop)]->counters();
  s.open = c.open.load(std::memory_order_relaxed);
  s.accepted = c.accepted.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ringnet
