// SPDX-License-Identifier: MIT
// RpcServer: the engine handler that turns frames into calls (dispatch), the services'
// listeners, and the drain. Completion and deadlines are in rpc_call.cc.
#include "ringnet/proto/rpc_server.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <exception>

#include "ringnet/log.h"
#include "ringnet/proto/frame_reader.h"
#include "ringnet/signals.h"
#include "rpc_server_core.h"

namespace ringnet::proto {

namespace {

using Clock = RpcCall::Clock;

// Timeouts past this are taken as this: a deadline must stay representable.
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 30);

std::chrono::milliseconds capped(std::chrono::milliseconds t) { return std::min(t, kMaxTimeout); }

// What the server keeps per connection (Conn::context), on its loop: the service, and the
// calls that may outlive the callback that read them, to cancel when it closes.
struct RpcConnState {
  RpcService* service = nullptr;
  std::vector<std::weak_ptr<RpcCall>> held;

  void add(const std::shared_ptr<RpcCall>& call) {
    if (held.size() >= 64 && held.size() == held.capacity()) {  // amortised pruning
      std::erase_if(held, [](const std::weak_ptr<RpcCall>& w) {
        auto c = w.lock();
        return !c || c->done();
      });
    }
    held.push_back(call);
  }
};

// The service whose listener accepted `conn`: its bound address, or a wildcard one
// (0.0.0.0, ::) on the same port and family.
RpcService* service_for(const std::vector<std::unique_ptr<RpcService>>& services,
                        const SockAddr& local) {
  const std::string text = local.to_string();
  RpcService* by_port = nullptr;
  for (const auto& svc : services) {
    for (const SockAddr& a : svc->addrs()) {
      if (a.to_string() == text) return svc.get();
      if (by_port == nullptr && a.is_ip() && a.family() == local.family() &&
          a.port() == local.port() && (a.ip_string() == "0.0.0.0" || a.ip_string() == "::")) {
        by_port = svc.get();
      }
    }
  }
  return by_port;
}

std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

// ---------------------------------------------------------------- the engine handler

class RpcServerHandler final : public EventHandler {
 public:
  explicit RpcServerHandler(std::shared_ptr<RpcServerCore> core)
      : core_(*core), core_ptr_(std::move(core)) {}

  Action on_open(Conn& conn) override {
    RpcService* svc = service_for(core_.services, conn.local_addr());
    if (svc == nullptr) return Action::kClose;  // not one of ours (cannot happen)
    auto* state = new RpcConnState;
    state->service = svc;
    conn.set_context(state);
    return Action::kNone;
  }

  Action on_traffic(Conn& conn) override {
    auto* state = static_cast<RpcConnState*>(conn.context());
    if (state == nullptr) {
      conn.discard();
      return Action::kClose;
    }
    RpcService& svc = *state->service;
    DecodeWork work;
    const RpcCurrentConn prev = rpc_set_current({&core_, &conn});
    const RpcServerCore* prev_core = rpc_current_core();
    rpc_set_current_core(&core_);
    Action action = read_frames(
        svc.codec_, conn, work, [&](const RpcFrame& f) { return dispatch(conn, *state, f); },
        [](uint8_t) { return Action::kNone; },
        [&](const ProtocolError& error) { return protocol_error(conn, error.reason); });
    rpc_set_current_core(prev_core);
    rpc_set_current(prev);
    return action;
  }

  // The calls still running for this connection are cancelled: nobody is left to answer.
  void on_close(Conn& conn, CloseInfo) override {
    auto* state = static_cast<RpcConnState*>(conn.context());
    if (state == nullptr) return;
    conn.set_context(nullptr);
    for (auto& weak : state->held) {
      if (auto call = weak.lock()) {
        core_.complete(*call, RpcStatus::make(RpcCode::kCancelled, "connection closed"), {},
                       kCallCancelled);
      }
    }
    delete state;
  }

 private:
  Action protocol_error(Conn& conn, std::string_view reason) {
    core_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    log_limited(core_.error_log, LogLevel::kWarn, "rpc: closing {}: {}",
                conn.remote_addr().to_string(), reason);
    conn.discard();  // nothing after a broken frame can be trusted
    conn.close_lingering();
    return Action::kNone;
  }

  // An answer for a frame that never became a call (no method, draining).
  void refuse(Conn& conn, const RpcService& svc, const RpcFrame& f, RpcCode code,
              std::string_view message) {
    if (f.type == RpcType::kOneWay) return;
    std::string body = encode_rpc_error_body(code, message);
    RpcFrame answer{RpcType::kError, 0, f.method, f.request_id, body};
    if (!svc.reply_codec_.encode(answer, conn)) conn.close();
  }

  Action dispatch(Conn& conn, RpcConnState& state, const RpcFrame& f) {
    RpcService& svc = *state.service;
    if (f.type == RpcType::kResponse || f.type == RpcType::kError) {
      return protocol_error(conn, "rpc: response/error frame sent to a server");
    }
    core_.calls.fetch_add(1, std::memory_order_relaxed);
    const RpcMethod* m = svc.find(f.method);
    if (m == nullptr) {
      core_.unknown_method.fetch_add(1, std::memory_order_relaxed);
      refuse(conn, svc, f, RpcCode::kUnknownMethod,
             "unknown method " + std::to_string(f.method) + " on service " + svc.name());
      return Action::kNone;
    }
    // Counted before the draining check (both sequentially consistent): a drain that
    // sees no call of this service running cannot miss one that is past the check.
    svc.in_flight_.fetch_add(1, std::memory_order_seq_cst);
    if (core_.draining.load(std::memory_order_seq_cst)) {
      svc.in_flight_.fetch_sub(1, std::memory_order_seq_cst);
      core_.notify_drain();
      core_.unavailable.fetch_add(1, std::memory_order_relaxed);
      m->counters->codes[static_cast<size_t>(RpcCode::kUnavailable)].fetch_add(1, std::memory_order_relaxed);
      refuse(conn, svc, f, RpcCode::kUnavailable, "server draining");
      return Action::kNone;
    }

    // Handlers that may outlive this callback get a shared call that owns its request;
    // an inline unary handler answers before returning, so its call lives on the stack.
    const bool later = static_cast<bool>(m->async) || m->options.exec == RpcExec::kPool;
    std::shared_ptr<RpcCall> shared;
    RpcCall local;
    RpcCall& call = later ? *(shared = std::make_shared<RpcCall>()) : local;
    call.core_ = &core_;
    if (later) call.keep_ = core_ptr_;
    call.service_ = &svc;
    call.method_ = m;
    call.conn_ = conn.handle();
    call.loop_ = conn.loop_index();
    call.request_id_ = f.request_id;
    call.flags_ = f.flags;
    call.one_way_ = f.type == RpcType::kOneWay;
    call.peer_ = conn.remote_addr();
    call.start_ = Clock::now();
    auto timeout = capped(svc.options_.timeout);
    if (m->options.timeout.count() > 0 && m->options.timeout < timeout) timeout = m->options.timeout;
    if (f.has_budget() && std::chrono::milliseconds(f.budget_ms) < timeout) {
      timeout = std::chrono::milliseconds(f.budget_ms);
    }
    call.deadline_ = call.start_ + timeout;
    RpcMethod::Counters& counters = *m->counters;
    counters.calls.fetch_add(1, std::memory_order_relaxed);
    counters.in_flight.fetch_add(1, std::memory_order_relaxed);
    counters.bytes_in_wire.fetch_add(f.body.size(), std::memory_order_relaxed);
    core_.in_flight.fetch_add(1, std::memory_order_relaxed);
    if (later) {
      call.held_ = true;  // the drain waits for the answer
      conn.hold();
      state.add(shared);  // its connection's close cancels it
    }

    // Decompression is the chain's first step.
    if (const uint8_t bits = f.compression_bits(); bits != 0) {
      RpcStatus st = rpc_decompress(bits, f.body, svc.options_.max_decompressed, call.owned_);
      if (!st) {
        core_.decompress_refused.fetch_add(1, std::memory_order_relaxed);
        core_.complete(call, st, {}, kCallAnswered);
        // A bomb (over the limit) says the peer cannot be trusted with this connection.
        if (st.code == RpcCode::kResourceExhausted) conn.close_lingering();
        return st.code == RpcCode::kResourceExhausted ? Action::kClose : Action::kNone;
      }
      call.request_ = call.owned_;
      call.reply_codec_ = static_cast<RpcCompression>(bits);
    } else if (later) {
      call.owned_.assign(f.body);
      call.request_ = call.owned_;
    } else {
      call.request_ = f.body;
    }
    counters.bytes_in.fetch_add(call.request_.size(), std::memory_order_relaxed);

    if (timeout.count() <= 0) {  // a caller with no time left: nothing runs
      core_.complete(call, RpcStatus::make(RpcCode::kDeadlineExceeded, "no budget left"), {},
                     kCallExpired);
      return Action::kNone;
    }
    if (!run_filters(call)) return Action::kNone;

    if (m->options.exec == RpcExec::kPool) {
      call.queued_ = Clock::now();
      Status s = core_.pool->submit([shared] { run_on_pool(shared); });
      if (!s) {
        core_.complete(call, RpcStatus::make(RpcCode::kResourceExhausted, "worker pool queue full"),
                       {}, kCallAnswered);
        return Action::kNone;
      }
      core_.track(call);
      return Action::kNone;
    }
    if (m->async) {
      try {
        m->async(shared);
      } catch (...) {
        core_.handler_exceptions.fetch_add(1, std::memory_order_relaxed);
        call.fail(RpcCode::kInternal, "handler threw: " + what_of(std::current_exception()));
      }
      core_.track(call);  // no-op if it was answered already
      return Action::kNone;
    }
    RpcStatus st;
    std::string out;
    try {
      st = m->unary(call, call.request_, out);
      if (call.done()) return Action::kNone;  // it answered through call.reply() itself
    } catch (...) {
      core_.handler_exceptions.fetch_add(1, std::memory_order_relaxed);
      st = RpcStatus::make(RpcCode::kInternal, "handler threw: " + what_of(std::current_exception()));
      out.clear();
    }
    if (Clock::now() > call.deadline_) {  // too late to be of use: the caller gave up
      core_.late_completions.fetch_add(1, std::memory_order_relaxed);
      core_.complete(call, RpcStatus::make(RpcCode::kDeadlineExceeded, "deadline exceeded"), {},
                     kCallExpired);
    } else {
      core_.complete(call, std::move(st), std::move(out), kCallAnswered);
    }
    return Action::kNone;
  }

  // The filters' on_request, server-wide first; false when one ended the call.
  bool run_filters(RpcCall& call) {
    const auto& service_filters = call.service_->filters_;
    const size_t total = core_.filters.size() + service_filters.size();
    for (size_t i = 0; i < total; ++i) {
      RpcServerFilter& f = i < core_.filters.size() ? *core_.filters[i]
                                                    : *service_filters[i - core_.filters.size()];
      RpcStatus st;
      try {
        st = f.on_request(call);
      } catch (...) {
        core_.handler_exceptions.fetch_add(1, std::memory_order_relaxed);
        st = RpcStatus::make(RpcCode::kInternal, "filter threw: " + what_of(std::current_exception()));
      }
      if (!st) {
        if (st.code == RpcCode::kOk) st.code = RpcCode::kUnknown;
        core_.complete(call, std::move(st), {}, kCallAnswered);
        return false;
      }
      call.passed_ = static_cast<uint16_t>(i + 1);
    }
    return true;
  }

  static void run_on_pool(const std::shared_ptr<RpcCall>& call) {
    RpcServerCore& core = *call->core_;
    rpc_set_current_core(&core);  // a shutdown() from the handler must not wait for it
    struct Reset {
      ~Reset() { rpc_set_current_core(nullptr); }
    } reset;
    const auto waited = Clock::now() - call->queued_;
    call->method_->counters->queue_ns.add(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count()));
    if (call->done()) return;  // its deadline (or the drain) ended it while queued
    const RpcMethod& m = *call->method_;
    try {
      if (m.async) {
        m.async(call);
      } else {
        std::string out;
        RpcStatus st = m.unary(*call, call->request_, out);
        if (!call->done()) call->finish(st, std::move(out));
      }
    } catch (...) {
      core.handler_exceptions.fetch_add(1, std::memory_order_relaxed);
      call->fail(RpcCode::kInternal, "handler threw: " + what_of(std::current_exception()));
    }
  }

  RpcServerCore& core_;
  std::shared_ptr<RpcServerCore> core_ptr_;
};

// ---------------------------------------------------------------- RpcService

RpcService::RpcService(RpcServiceOptions options)
    : options_(std::move(options)),
      codec_(options_.frame),
      reply_codec_(RpcFrameOptions{.min_body = 0, .max_body = options_.frame.max_body}) {
  add_list_method();
}

RpcService::~RpcService() = default;

void RpcService::add_list_method() {
  auto m = std::make_unique<RpcMethod>();
  m->name = "rpc.list";
  m->id = 0;
  m->unary = [this](RpcCall&, std::string_view, std::string& out) {
    for (const auto& method : methods_) {
      out += std::to_string(method->id);
      out += ' ';
      out += method->name;
      out += '\n';
    }
    return RpcStatus::ok();
  };
  m->counters = std::make_shared<RpcMethod::Counters>();
  by_id_.assign(1, m.get());
  methods_.push_back(std::move(m));
}

Status RpcService::add(std::unique_ptr<RpcMethod> method) {
  if (method->id == 0) return Status::invalid("rpc: method id 0 is rpc.list");
  if (method->name.empty()) return Status::invalid("rpc: a method needs a name");
  if (find(method->id) != nullptr) {
    return Status::invalid("rpc: method id " + std::to_string(method->id) + " taken");
  }
  if (find(std::string_view(method->name)) != nullptr) {
    return Status::invalid("rpc: method name '" + method->name + "' taken");
  }
  method->counters = std::make_shared<RpcMethod::Counters>();
  if (by_id_.size() <= method->id) by_id_.resize(size_t{method->id} + 1, nullptr);
  by_id_[method->id] = method.get();
  methods_.push_back(std::move(method));
  return Status::ok();
}

namespace {
std::unique_ptr<RpcMethod> new_method(std::string name, uint16_t id, RpcMethodOptions options) {
  auto m = std::make_unique<RpcMethod>();
  m->name = std::move(name);
  m->id = id;
  m->options = options;
  return m;
}
}  // namespace

Status RpcService::add_unary(std::string name, uint16_t id, RpcUnaryHandler handler,
                             RpcMethodOptions options) {
  if (!handler) return Status::invalid("rpc: empty handler");
  auto m = new_method(std::move(name), id, options);
  m->unary = std::move(handler);
  return add(std::move(m));
}

Status RpcService::add_async(std::string name, uint16_t id, RpcAsyncHandler handler,
                             RpcMethodOptions options) {
  if (!handler) return Status::invalid("rpc: empty handler");
  auto m = new_method(std::move(name), id, options);
  m->async = std::move(handler);
  return add(std::move(m));
}

void RpcService::add_filter(std::shared_ptr<RpcServerFilter> filter) {
  if (filter) filters_.push_back(std::move(filter));
}

const RpcMethod* RpcService::find(uint16_t id) const {
  return id < by_id_.size() ? by_id_[id] : nullptr;
}

const RpcMethod* RpcService::find(std::string_view name) const {
  for (const auto& m : methods_) {
    if (m->name == name) return m.get();
  }
  return nullptr;
}

// ---------------------------------------------------------------- RpcServer

struct RpcServer::Impl {
  explicit Impl(RpcServerOptions options)
      : core_ptr(std::make_shared<RpcServerCore>(std::move(options))),
        core(*core_ptr),
        handler(core_ptr),
        engine(handler, core.options.engine) {}
  std::shared_ptr<RpcServerCore> core_ptr;  // shared calls keep it alive past the server
  RpcServerCore& core;
  RpcServerHandler handler;
  Engine engine;

  // The server's life: configured -> started -> draining -> stopped. One lock, so that a
  // shutdown() racing start() (a signal during start) is neither lost nor run twice.
  std::mutex life_mu;
  std::condition_variable life_cv;
  bool started = false;
  bool start_failed = false;
  bool drain_begun = false;
  bool stopped = false;  // the drain is over
  bool stop_pending = false;  // shutdown() came before start() finished
  std::chrono::milliseconds pending_deadline{0};
  std::thread drainer;  // a drain started from a handler runs here

  void drain(std::chrono::milliseconds deadline);
};

RpcServerCore::RpcServerCore(RpcServerOptions opts) : options(std::move(opts)) {}

RpcServerCore::~RpcServerCore() { stop_timer(); }

void RpcServerCore::stop_timer() {
  {
    std::lock_guard lock(mu);
    timer_stop = true;
  }
  cv.notify_all();
  if (timer.joinable() && timer.get_id() != std::this_thread::get_id()) timer.join();
}

RpcServer::RpcServer(RpcServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

RpcServer::~RpcServer() {
  Impl& impl = *impl_;
  bool started = false;
  {
    std::lock_guard lock(impl.life_mu);
    started = impl.started;
  }
  if (started) shutdown(std::chrono::milliseconds(0));  // waits for one in progress too
  if (impl.drainer.joinable()) impl.drainer.join();
  if (impl.core.pool) impl.core.pool->shutdown();
  impl.core.stop_timer();  // here, not when the last shared call lets the core go
  // Calls that outlive the server (RpcCallPtr kept by the application) must not reach
  // for the engine, which goes with this object.
  std::unique_lock lock(impl.core.engine_mu);
  impl.core.engine_gone = true;
}

RpcService& RpcServer::add_service(RpcServiceOptions options) {
  auto svc = std::make_unique<RpcService>(std::move(options));
  svc->index_ = static_cast<int>(impl_->core.services.size());
  impl_->core.services.push_back(std::move(svc));
  return *impl_->core.services.back();
}

void RpcServer::add_filter(std::shared_ptr<RpcServerFilter> filter) {
  if (filter) impl_->core.filters.push_back(std::move(filter));
}

Status RpcServer::start() {
  Impl& impl = *impl_;
  RpcServerCore& core = impl.core;
  {
    std::lock_guard lock(impl.life_mu);
    if (impl.started || impl.start_failed) {
      return Status::invalid("rpc server: start() may be called once");
    }
  }
  auto failed = [&impl](Status s) {
    std::lock_guard lock(impl.life_mu);
    impl.start_failed = true;
    impl.stopped = true;
    impl.life_cv.notify_all();
    return s;
  };
  if (core.services.empty()) return failed(Status::invalid("rpc server: no services"));
  bool needs_pool = false;
  size_t listened = 0;
  for (const auto& svc : core.services) {
    if (svc->options_.listen.empty()) {
      return failed(Status::invalid("rpc server: service '" + svc->name() + "' has no address"));
    }
    if (svc->options_.timeout.count() <= 0) {
      return failed(Status::invalid("rpc server: service '" + svc->name() +
                                    "': timeout must be positive"));
    }
    for (const auto& other : core.services) {
      if (other != svc && other->name() == svc->name()) {
        return failed(Status::invalid("rpc server: two services named '" + svc->name() + "'"));
      }
    }
    for (const auto& m : svc->methods_) needs_pool |= m->options.exec == RpcExec::kPool;
    for (const std::string& address : svc->options_.listen) {
      if (Status s = impl.engine.listen(address, {.transport = svc->options_.transport}); !s) {
        return failed(s);
      }
    }
  }
  const std::vector<SockAddr> bound = impl.engine.listen_addrs();
  for (const auto& svc : core.services) {
    svc->addrs_.assign(bound.begin() + static_cast<std::ptrdiff_t>(listened),
                       bound.begin() + static_cast<std::ptrdiff_t>(listened + svc->options_.listen.size()));
    listened += svc->options_.listen.size();
  }
  if (!core.options.admin.empty()) {
    if (Status s = impl.engine.listen_admin(core.options.admin); !s) return failed(s);
  }
  if (needs_pool) {
    core.pool = std::make_unique<WorkerPool>(core.options.pool);
    if (Status s = core.pool->start(); !s) return failed(s);
  }
  impl.engine.add_metrics([this](MetricsWriter& w) {
    write_metrics(w);
    if (impl_->core.pool) impl_->core.pool->write_metrics(w);
  });
  core.timer = std::thread([&core] { core.timer_main(); });
  if (Status s = impl.engine.start(); !s) return failed(s);
  bool pending = false;
  std::chrono::milliseconds deadline{0};
  {
    std::lock_guard lock(impl.life_mu);
    impl.started = true;
    pending = impl.stop_pending;
    deadline = impl.pending_deadline;
  }
  if (pending) shutdown(deadline);  // asked for while starting (a signal): drain now
  return Status::ok();
}

void RpcServer::wait() {
  Impl& impl = *impl_;
  {
    std::lock_guard lock(impl.life_mu);
    if (!impl.started) return;
  }
  impl.engine.wait();
  std::unique_lock lock(impl.life_mu);
  if (impl.drain_begun) impl.life_cv.wait(lock, [&impl] { return impl.stopped; });
}

Status RpcServer::run_until_signal(std::chrono::milliseconds deadline) {
  ShutdownOnSignals signals([this, deadline](int sig) {
    log(LogLevel::kInfo, "rpc server: signal {}: draining for up to {} ms", sig, deadline.count());
    shutdown(deadline);
  });
  if (Status s = start(); !s) return s;
  wait();
  return Status::ok();
}

void RpcServer::shutdown(std::chrono::milliseconds deadline) {
  Impl& impl = *impl_;
  deadline = std::clamp(deadline, std::chrono::milliseconds(0), kMaxTimeout);
  {
    std::unique_lock lock(impl.life_mu);
    if (!impl.started) {
      if (!impl.start_failed) {  // remembered: start() drains as soon as it is done
        impl.stop_pending = true;
        impl.pending_deadline = deadline;
      }
      return;
    }
    if (impl.drain_begun) {  // a second caller waits for the first (not from a handler)
      if (rpc_current_core() != &impl.core) impl.life_cv.wait(lock, [&impl] { return impl.stopped; });
      return;
    }
    impl.drain_begun = true;
    if (rpc_current_core() == &impl.core) {
      // From a handler: the drain waits for calls (this one too) and joins the pool, so
      // it cannot run on this thread.
      impl.drainer = std::thread([&impl, deadline] { impl.drain(deadline); });
      return;
    }
  }
  impl.drain(deadline);
}

void RpcServer::Impl::drain(std::chrono::milliseconds deadline) {
  const auto t0 = Clock::now();
  const auto end = t0 + deadline;
  // 1. No new connections; 2. new requests on open ones are refused (UNAVAILABLE).
  engine.stop_accepting();
  core.draining.store(true, std::memory_order_seq_cst);
  // 3. Each service's calls get until its drain limit, shortest limit first; those still
  //    running then are cancelled (their callers hear CANCELLED).
  std::vector<RpcService*> order;
  for (const auto& svc : core.services) order.push_back(svc.get());
  std::stable_sort(order.begin(), order.end(), [](RpcService* a, RpcService* b) {
    return a->options_.drain_limit < b->options_.drain_limit;
  });
  for (RpcService* svc : order) {
    const auto limit = std::min(t0 + capped(svc->options_.drain_limit), end);
    {
      std::unique_lock lock(core.mu);
      core.drained_cv.wait_until(lock, limit, [svc] {
        return svc->in_flight_.load(std::memory_order_seq_cst) == 0;
      });
      svc->drain_cancelled_ = true;  // a call tracked from now on is cancelled at once
    }
    const size_t n = core.cancel_pending(svc);
    if (n != 0) {
      log(LogLevel::kWarn, "rpc server: service {}: {} calls still running at the drain limit, cancelled",
          svc->name(), n);
    }
  }
  // 4. Answers flush and connections close; the engine keeps at least a moment for the
  //    last answers (the cancellations) even when the deadline is spent.
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
  engine.shutdown(std::max(left, std::chrono::milliseconds(100)));
  engine.wait();
  if (core.pool) core.pool->shutdown(WorkerPool::ShutdownMode::kDiscardQueued);
  std::lock_guard lock(life_mu);
  stopped = true;
  life_cv.notify_all();
}

RpcService* RpcServer::service(std::string_view name) {
  for (const auto& svc : impl_->core.services) {
    if (svc->name() == name) return svc.get();
  }
  return nullptr;
}

Engine& RpcServer::engine() { return impl_->engine; }

RpcServerStats RpcServer::stats() const { return impl_->core.snapshot(); }

void RpcServer::write_metrics(MetricsWriter& w) const { write_rpc_metrics(impl_->core, w); }

RpcServerStats RpcServerCore::snapshot() const {
  auto get = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  RpcServerStats s;
  s.calls = get(calls);
  s.ok = get(ok);
  s.errors = get(errors);
  s.deadline_exceeded = get(deadline_exceeded);
  s.cancelled = get(cancelled);
  s.unavailable = get(unavailable);
  s.unknown_method = get(unknown_method);
  s.late_completions = get(late_completions);
  s.double_completions = get(double_completions);
  s.handler_exceptions = get(handler_exceptions);
  s.protocol_errors = get(protocol_errors);
  s.decompress_refused = get(decompress_refused);
  s.in_flight = get(in_flight);
  return s;
}

}  // namespace ringnet::proto
