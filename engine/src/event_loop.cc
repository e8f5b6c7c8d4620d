#include "event_loop.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>

#include "engine_impl.h"
#include "poller_epoll.h"
#include "poller_uring.h"
#include "ringnet/log.h"
#include "socket_ops.h"

namespace ringnet {
namespace {
// One loop per thread: a second one on the same thread is a programming error.
thread_local EventLoop* t_current_loop = nullptr;
// How long a close the engine decides on, with input still coming, reads it away.
const uint16_t kDefaultLingerTicks =
    static_cast<uint16_t>(TimerWheel::ticks_for(std::chrono::seconds(2)));
}  // namespace

EventLoop::EventLoop(Engine::Impl& engine, int index)
    : engine_(engine),
      handler_(engine.handler),
      index_(index),
      pool_(engine.opts.pool_cache_bytes),
      spill_(new char[kSpillSize]) {}

EventLoop::~EventLoop() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) ::close(l->fd);
  }
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

const Options& EventLoop::options() const { return engine_.opts; }

Status EventLoop::init() {
  if (Status s = tasks_.init(); !s) return s;
  const Options& o = engine_.opts;
  auto ticks = [](std::chrono::milliseconds d) {
    return d.count() <= 0 ? 0u
                          : static_cast<uint32_t>(std::min<uint64_t>(TimerWheel::ticks_for(d),
                                                                      UINT32_MAX));
  };
  idle_ticks_ = ticks(o.idle_timeout);
  read_ticks_ = ticks(o.read_timeout);
  write_ticks_ = ticks(o.write_timeout);
  timeouts_on_ = idle_ticks_ != 0 || read_ticks_ != 0 || write_ticks_ != 0;
  if (o.max_inbound_total != 0) {
    // At least one frame of the largest size (max_inbound_buffer) fits on every loop,
    // however many loops share the total.
    inbound_budget_ = std::max({size_t{1}, o.max_inbound_total / static_cast<size_t>(std::max(1, o.loops)),
                                std::min(o.max_inbound_buffer, o.max_inbound_total)});
  }
  metrics_on_ = o.metrics;
  if (engine_.opts.backend == Backend::kIoUring) {
    auto uring = std::make_unique<UringPoller>(*this);
    if (Status s = uring->init(engine_.opts); !s) return s;
    if (index_ <= 0) log(LogLevel::kDebug, "loop {}: io_uring ring mode {}", index_, uring->mode());
    poller_ = std::move(uring);
  } else {
    auto epoll = std::make_unique<EpollPoller>(*this);
    if (Status s = epoll->init(); !s) return s;
    poller_ = std::move(epoll);
  }
  if (Status s = poller_->add_wakeup(tasks_.wake_fd()); !s) return s;
  for (auto& l : listeners_) {
    if (Status s = poller_->add_listener(*l); !s) return s;
  }
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return Status::ok();
}

void EventLoop::run(std::promise<Status>& ready) {
  if (t_current_loop != nullptr) {
    log(LogLevel::kError, "two event loops on one thread; aborting");
    std::abort();
  }
  t_current_loop = this;
  thread_id_ = std::this_thread::get_id();
  Status status = init();
  bool ok = status.is_ok();
  ready.set_value(std::move(status));  // `ready` may be gone after this line
  if (!ok) {  // never ran: nothing to drain; what it owns is closed, tasks see it stopped
    stopping_ = true;
    close_listeners();
    exited_.store(true, std::memory_order_release);
    t_current_loop = nullptr;
    return;
  }
  while (!stopping_) iterate();
  shutdown_all();
  poller_->drain_before_exit();
  // Slots whose operations never completed within the drain: close their sockets anyway.
  for (Conn& c : slots_) {
    if (c.state_ == Conn::State::kClosed && c.fd_ >= 0) {
      ::close(c.fd_);
      c.fd_ = -1;
    }
  }
  poller_.reset();  // on this thread: an io_uring ring is torn down by its issuer
  exited_.store(true, std::memory_order_release);
  while (tasks_.run(SIZE_MAX) > 0) {
  }
  t_current_loop = nullptr;
}

void EventLoop::drain_after_exit() {
  thread_id_ = std::this_thread::get_id();
  stopping_ = true;
  while (tasks_.run(SIZE_MAX) > 0) {
  }
  for (TaskQueue::Task& task : tasks_.close()) task();  // posted since the last run
}

void EventLoop::iterate() {
  const bool sweep = sweep_armed_;  // armed by a drain that began in an earlier iteration
  int timeout = -1;
  if (sweep || task_signal_ || tasks_.has_backlog() || !dirty_.empty()) {
    timeout = 0;
  } else if (timers_.size() > 0 || wheel_.size() > 0) {
    Clock::time_point now = Clock::now();
    int t = timers_.size() > 0 ? timers_.next_timeout_ms(now) : -1;
    int w = wheel_.next_timeout_ms(now);
    timeout = t < 0 ? w : (w < 0 ? t : std::min(t, w));
  }
  if (draining_) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(drain_deadline_ - Clock::now());
    int cap = static_cast<int>(std::max<int64_t>(0, left.count()));
    timeout = timeout < 0 ? cap : std::min(timeout, cap);
  }
  tick_fresh_ = false;  // the first activity dispatched by this poll reads the clock anew
  if (Status s = poller_->poll(timeout); !s) {
    log(LogLevel::kError, "loop {}: {} poll failed: {}", index_, poller_->name(), s.message());
  }
  if (timers_.size() > 0) timers_.run_due(Clock::now());
  if (wheel_.size() > 0) {
    wheel_.advance(Clock::now(), [this](detail::WheelTimer& t) {
      on_conn_timer(*static_cast<Conn*>(t.owner));
    });
  }
  if (task_signal_ || tasks_.has_backlog()) {
    task_signal_ = false;
    bump(counters_.tasks_run, tasks_.run(engine_.opts.task_budget));
  }
  // Before the flush, which sends and closes what these decide.
  bool drained = false;
  if (draining_) drained = drain_step(sweep);
  flush_dirty();
  if (batch_started_) {
    batch_started_ = false;
    auto busy = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - batch_start_);
    counters_.busy_ns.record(static_cast<uint64_t>(std::max<int64_t>(busy.count(), 0)));
  }
  if ((drained && counters_.open.load(std::memory_order_relaxed) == 0) ||
      (draining_ && Clock::now() >= drain_deadline_)) {
    stopping_ = true;
  }
}

// A graceful drain serves accepted connections to the end; connections this engine
// dialed stay up meanwhile (a draining proxy still needs its backends) until no loop has
// an accepted connection left, and a loop with nothing left stays until then too (it may
// still be dialed on). The acceptor (index -1) holds no connections and is never dialed
// on. Returns true once this loop has nothing more to wait for.
bool EventLoop::drain_step(bool sweep) {
  if (!graceful_ || index_ < 0) return true;
  if (sweep) drain_sweep();
  if (!drain_swept_ || !served_all()) return false;
  close_dialed();
  return true;
}

void EventLoop::request_stop(std::function<void()> then) {
  if (stop_requested_.exchange(true)) return;
  post([this, then = std::move(then)] {
    begin_shutdown();
    if (then) then();
  });
}

// Accept nothing more. stop(): connections with nothing queued close now, the others
// flush (as kClosing: input is no longer shown to the handler) until they drained or the
// deadline. shutdown(deadline): connections keep being served; drain_sweep, after one
// more poll, stops their input at frame boundaries and they close once done.
void EventLoop::begin_shutdown() {
  if (stopping_ || poller_ == nullptr) return;  // the loop never ran, or has left run()
  draining_ = true;
  const std::chrono::milliseconds drain = engine_.drain_for;
  graceful_ = drain.count() >= 0;
  drain_deadline_ = Clock::now() + (graceful_ ? drain : engine_.opts.stop_flush_timeout);
  close_listeners();
  if (graceful_) {
    sweep_armed_ = true;
    return;
  }
  for (Conn& c : slots_) {
    if (c.state_ == Conn::State::kConnecting) {  // a dial not done: given up, not drained
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
      continue;
    }
    if (c.state_ != Conn::State::kOpen) continue;
    if (c.out_.empty()) {
      close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
    } else {
      begin_close(c, CloseReason::kShutdown);
    }
  }
}

// Runs one poll after the drain began: by then every byte the kernel held for an
// accepted connection when the drain began has been read and shown to the handler (a
// request on a keep-alive connection that looked idle, or on one accepted just before).
void EventLoop::drain_sweep() {
  sweep_armed_ = false;
  drain_swept_ = true;
  for (Conn& c : slots_) {
    // After an EOF the connection settles by its own path (input it left gets a look).
    if (c.state_ != Conn::State::kOpen || c.dialed_ || c.eof_) continue;
    // Input known to wait in the kernel is still read: epoll's budget left some
    // (readable_), or backpressure paused reading; the next frame boundary stops them.
    if (c.in_.empty() && !c.readable_ && !c.read_paused_) stop_input(c);
    settle(c);
  }
}

void EventLoop::stop_input(Conn& c) {
  if (c.input_stopped_) return;
  c.input_stopped_ = true;
  poller_->pause_reading(c);
}

bool EventLoop::served_all() const {
  return served_open_ == 0 && engine_.served.load(std::memory_order_acquire) == 0;
}

void EventLoop::close_dialed() {
  for (Conn& c : slots_) {
    if (!c.dialed_) continue;
    if (c.state_ == Conn::State::kConnecting) {
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
    } else if (c.state_ == Conn::State::kOpen) {
      begin_close(c, CloseReason::kShutdown);
    }
  }
}

// ---------------------------------------------------------------- connections

Conn* EventLoop::lookup_slot(uint32_t index) {
  return index < slots_.size() ? &slots_[index] : nullptr;
}

Conn* EventLoop::lookup(ConnId id) {
  Conn* c = lookup_slot(id.index);
  if (c == nullptr || c->id_.generation != id.generation) return nullptr;
  if (c->state_ == Conn::State::kFree || c->state_ == Conn::State::kClosed) return nullptr;
  return c;
}

Conn& EventLoop::new_slot(int fd, const SockAddr& peer, Conn::State state) {
  RINGNET_ASSERT_IN_LOOP(this);
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back(this, &pool_);
  }
  Conn& c = slots_[index];
  uint32_t gen = c.id_.generation + 1;
  c.id_ = ConnId{index, gen == 0 ? 1 : gen};
  c.fd_ = fd;
  c.state_ = state;
  c.dirty_ = c.readable_ = c.eof_ = c.read_to_eagain_ = c.read_paused_ = false;
  c.input_stopped_ = c.input_refused_ = false;
  c.send_error_ = 0;
  c.holds_ = 0;
  c.lingering_ = false;
  c.dialed_ = false;
  c.linger_ticks_ = 0;
  c.remote_ = peer;
  c.timer_.owner = &c;
  c.idle_ticks_ = idle_ticks_;
  c.read_since_ = c.write_since_ = 0;
  return c;
}

void EventLoop::release_source(const SockAddr& peer) {
  if (engine_.sources != nullptr && peer.is_ip()) engine_.sources->remove(peer);
}

void EventLoop::adopt(int fd, const SockAddr& peer) {
  if (stopping_ || draining_) {  // accepted just as the engine stopped: refuse, counted
    bump(counters_.refused_stopping);  // before the close the client sees
    ::close(fd);
    release_source(peer);
    load_.fetch_sub(1, std::memory_order_relaxed);
    engine_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  Conn& c = new_slot(fd, peer, Conn::State::kOpen);
  if (timeouts_on_) {
    c.last_active_ = now_tick();
    update_timer(c);
  }
  if (Status s = poller_->add_conn(c); !s) {
    log(LogLevel::kWarn, "loop {}: cannot watch fd {}: {}", index_, fd, s.message());
    ::close(fd);
    c.fd_ = -1;
    c.state_ = Conn::State::kFree;
    free_slots_.push_back(c.id_.index);
    release_source(peer);
    load_.fetch_sub(1, std::memory_order_relaxed);
    engine_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    bump(counters_.accept_errors);
    return;
  }
  bump(counters_.accepted);
  bump(counters_.open);
  ++served_open_;
  engine_.served.fetch_add(1, std::memory_order_relaxed);
  apply_action(c, handler_.on_open(c));
}

// ---------------------------------------------------------------- dialing
//
// A dialed connection takes a slot at once, in kConnecting, so that a failure reaches the
// handler like any close (on_close, kConnectFailed, with its context) and the timer wheel
// can time the connect out. The poller starts the connect and reports with
// on_connect_result; only then does the connection become kOpen and see on_open.

void EventLoop::dial(const SockAddr& peer, const DialOptions& options) {
  bump(counters_.dials);
  // Queued as the engine stopped (maybe run after the loop thread left): no poller. A
  // graceful drain still dials; stop() does not.
  if (stopping_ || poller_ == nullptr || (draining_ && !graceful_)) {
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "loop {}: dial refused: engine stopping", index_);
    return fail_dial(peer, options, ECANCELED);
  }
  int fd = ::socket(peer.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_dial(peer, options, errno);
  Conn& c = new_slot(fd, peer, Conn::State::kConnecting);
  c.dialed_ = true;
  c.context_ = options.context;
  bump(counters_.open);  // closing it (connected or not) counts it out again
  if (peer.is_ip()) sockets::tune_accepted(fd, peer.family(), engine_.opts);
  c.deadline_ = now_tick() + TimerWheel::ticks_for(options.timeout) + 1;
  update_timer(c);
  if (int err = poller_->start_connect(c); err != 0) {
    return close_conn(c, CloseInfo{CloseReason::kConnectFailed, err});
  }
}

// A slot with no socket, closed at once: the handler hears on_close (kConnectFailed) with
// the dial's context, like any dial that failed, and the counts given at dial are returned.
void EventLoop::fail_dial(const SockAddr& peer, const DialOptions& options, int err) {
  Conn& c = new_slot(-1, peer, Conn::State::kConnecting);
  c.dialed_ = true;
  c.context_ = options.context;
  bump(counters_.open);
  close_conn(c, CloseInfo{CloseReason::kConnectFailed, err});
}

void EventLoop::on_connect_result(Conn& c, int err) {
  if (c.state_ != Conn::State::kConnecting) return;
  if (err != 0) return close_conn(c, CloseInfo{CloseReason::kConnectFailed, err});
  c.state_ = Conn::State::kOpen;
  wheel_.cancel(c.timer_);  // the connect deadline is over; the usual timeouts start now
  if (timeouts_on_) {
    c.last_active_ = now_tick();
    update_timer(c);
  }
  bump(counters_.dialed);
  apply_action(c, handler_.on_open(c));
}

void EventLoop::wake_conn(ConnId id) {
  post([this, id] {
    Conn* c = lookup(id);
    if (c != nullptr && c->state_ == Conn::State::kOpen) run_traffic(*c);
  });
}

void EventLoop::on_input(Conn& c, std::string_view bytes) {
  bump(counters_.bytes_in, bytes.size());
  if (c.state_ != Conn::State::kOpen) {  // closing by our decision: the input is refused
    bump(counters_.inbound_dropped, bytes.size());
    c.input_refused_ = true;  // the peer is still sending: close with FIN first (after_send)
    return;
  }
  note_activity(c);
  if (c.in_.empty()) return run_traffic(c, bytes);  // zero-copy: the handler reads `bytes`
  c.in_.append(bytes);
  add_inbound_held(static_cast<ptrdiff_t>(bytes.size()));
  run_traffic(c);
}

void EventLoop::on_peer_eof(Conn& c) {
  c.eof_ = true;
  if (c.state_ == Conn::State::kClosing) {
    if (c.lingering_) close_conn(c, CloseInfo{c.close_reason_, 0});  // what we waited for
    return;
  }
  if (c.state_ != Conn::State::kOpen) return;
  // Input the handler left (a request it answers step by step) gets one more look.
  if (!c.in_.empty() && c.holds_ == 0) return schedule_traffic(c);
  settle(c);
}

void EventLoop::on_released(Conn& c) {
  // Inside c's on_traffic its buffer is not settled yet: run_traffic decides after.
  if (c.state_ != Conn::State::kOpen || &c == in_traffic_) return;
  if (c.eof_ && !c.in_.empty()) return schedule_traffic(c);  // the handler may take more now
  settle(c);
}

void EventLoop::settle(Conn& c) {
  if (c.state_ != Conn::State::kOpen || c.holds_ != 0) return;
  if (c.eof_) return begin_close(c, CloseReason::kPeerClosed);
  if (c.input_stopped_ && c.in_.empty()) begin_close(c, CloseReason::kShutdown);
}

void EventLoop::run_traffic(Conn& c, std::string_view fresh) {
  c.in_view_ = fresh.empty() ? c.in_.view() : fresh;
  const size_t shown = c.in_view_.size();
  bump(counters_.traffic_calls);
  in_traffic_ = &c;
  Action action = handler_.on_traffic(c);
  in_traffic_ = nullptr;
  const size_t left = c.in_view_.size();
  if (!fresh.empty()) {
    if (left != 0) {
      c.in_.append(c.in_view_);  // the transient area is reused by the next read
      add_inbound_held(static_cast<ptrdiff_t>(left));
    }
  } else if (shown != left) {
    c.in_.consume(shown - left);
    c.in_.release_if_empty();
    add_inbound_held(-static_cast<ptrdiff_t>(shown - left));
  }
  c.in_view_ = c.in_.view();
  if (read_ticks_ != 0) track_partial_input(c);
  if (left != 0 && check_inbound_limit(c)) return;
  if (c.state_ == Conn::State::kOpen) check_backpressure(c);
  apply_action(c, action);
  if (c.state_ != Conn::State::kOpen) return;
  if (c.eof_ && left != 0 && left < shown && c.holds_ == 0) {
    return schedule_traffic(c);  // it took some: it may take more, and nothing else will come
  }
  if (drain_swept_ && !c.dialed_ && left == 0) stop_input(c);  // a frame boundary
  settle(c);
}

// ---------------------------------------------------------------- backpressure, limits

void EventLoop::check_backpressure(Conn& c) {
  const size_t high = engine_.opts.outbound_high_watermark;
  if (high == 0) return;
  if (!c.read_paused_ && c.out_.size() > high) {
    c.read_paused_ = true;
    bump(counters_.read_pauses);
    poller_->pause_reading(c);
    handler_.on_backpressure(c, true);
  } else if (c.read_paused_ && c.out_.size() <= engine_.opts.outbound_low_watermark) {
    c.read_paused_ = false;
    if (!c.input_stopped_) poller_->resume_reading(c);
    handler_.on_backpressure(c, false);
    // Input a handler left while paused is shown again, from the loop rather than from
    // inside the send that drained the queue.
    if (!c.in_.empty()) schedule_traffic(c);
  }
}

bool EventLoop::check_inbound_limit(Conn& c) {
  // A closing connection takes no more input (on_input refuses it) and is not cut short:
  // its queued answer still goes out.
  if (c.state_ != Conn::State::kOpen) return false;
  const size_t limit = engine_.opts.max_inbound_buffer;
  if (limit == 0 || c.in_.readable_bytes() <= limit) {
    return inbound_budget_ != 0 && inbound_held_ > inbound_budget_ && enforce_inbound_budget(c);
  }
  bump(counters_.inbound_overflows);
  uint64_t dropped = 0;
  if (inbound_log_limit_.allow(&dropped)) {
    log(LogLevel::kWarn, "loop {}: {} holds {} unread bytes, over max_inbound_buffer {}; closing{}",
        index_, c.remote_.to_string(), c.in_.readable_bytes(), limit,
        dropped ? fmt::format(" ({} similar lines suppressed)", dropped) : std::string());
  }
  close_conn(c, CloseInfo{CloseReason::kError, EMSGSIZE});
  return true;
}

// Over the loop's share of max_inbound_total: close the open connections holding the most
// unread input until the rest fit. The largest, not the one whose bytes crossed the line:
// otherwise one peer parked just under the share would get every other connection that
// leaves a byte unread closed. A scan of the slots, only when the share is passed.
bool EventLoop::enforce_inbound_budget(Conn& c) {
  bool closed_c = false;
  while (inbound_held_ > inbound_budget_) {
    Conn* largest = nullptr;
    for (Conn& x : slots_) {
      if (x.state_ != Conn::State::kOpen) continue;
      if (largest == nullptr || x.in_.readable_bytes() > largest->in_.readable_bytes()) largest = &x;
    }
    if (largest == nullptr || largest->in_.empty()) break;  // closing ones hold the rest
    bump(counters_.inbound_budget_closed);
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1,
                        "loop {}: connections hold {} unread bytes, over this loop's share {} "
                        "of max_inbound_total; closing {}, which holds the most: {}",
                        index_, inbound_held_, inbound_budget_, largest->remote_.to_string(),
                        largest->in_.readable_bytes());
    closed_c = closed_c || largest == &c;
    close_conn(*largest, CloseInfo{CloseReason::kError, ENOBUFS});
  }
  return closed_c;
}

void EventLoop::apply_action(Conn& c, Action action) {
  if (action == Action::kClose) begin_close(c, CloseReason::kLocalClose);
  if (action == Action::kShutdown) engine_.request_stop();
}

Status EventLoop::write_from_handle(ConnId id, std::string_view bytes) {
  Conn* c = lookup(id);
  if (c == nullptr) return Status::invalid("connection closed");
  const size_t high = engine_.opts.outbound_high_watermark;
  if (high != 0 && c->out_.size() > high && c->state_ == Conn::State::kOpen) {
    bump(counters_.writes_refused);
    return Status::from_errno(EAGAIN, "async_write: outbound queue over the high watermark");
  }
  return c->write(bytes);
}

void EventLoop::mark_dirty(Conn& c) {
  if (c.dirty_) return;
  c.dirty_ = true;
  dirty_.push_back(&c);
}

void EventLoop::begin_close(Conn& c, CloseReason reason) {
  // A dial closed before it connected: nothing to flush, and on_open never came.
  if (c.state_ == Conn::State::kConnecting) return close_conn(c, CloseInfo{reason, 0});
  if (c.state_ != Conn::State::kOpen) return;
  c.state_ = Conn::State::kClosing;
  c.close_reason_ = reason;
  mark_dirty(c);  // flush_dirty sends what is queued and closes once it drained
}

void EventLoop::flush_dirty() {
  // Index loop: closing a connection may run handler code that writes to others.
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Conn& c = *dirty_[i];
    if (!c.dirty_) continue;  // closed (or already flushed) since it was listed
    c.dirty_ = false;
    if (c.send_error_ != 0) {
      close_conn(c, error_close_info(c.send_error_));
    } else {
      send_or_close(c);
    }
  }
  dirty_.clear();
}

CloseInfo EventLoop::error_close_info(int err) {
  bool reset = err == ECONNRESET || err == EPIPE;
  return CloseInfo{reset ? CloseReason::kReset : CloseReason::kError, err};
}

void EventLoop::send_or_close(Conn& c) {
  if (int err = poller_->send(c); err != 0) return close_conn(c, error_close_info(err));
  after_send(c);
}

// Conn::flush() runs inside handler code: an error is remembered and the connection is
// closed by flush_dirty at the end of the iteration, never under the handler's feet.
Status EventLoop::flush_now(Conn& c) {
  if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) {
    return Status::invalid("flush on a closed connection");
  }
  if (c.send_error_ != 0) return Status::from_errno(c.send_error_, "flush");
  if (c.out_.empty()) return Status::ok();
  if (int err = poller_->send(c); err != 0) {
    c.send_error_ = err;
    mark_dirty(c);
    return Status::from_errno(err, "flush");
  }
  return Status::ok();
}

void EventLoop::after_send(Conn& c) {
  if (c.state_ == Conn::State::kClosing && c.out_.empty()) {
    if (c.lingering_) return;
    if (!c.eof_ && (c.linger_ticks_ != 0 || lingers_on_close(c))) return start_linger(c);
    close_conn(c, CloseInfo{c.close_reason_, 0});
    return;
  }
  if (timeouts_on_) {
    note_activity(c);
    if (write_ticks_ != 0) track_pending_output(c);
  }
  if (c.state_ == Conn::State::kOpen) check_backpressure(c);
}

// Closing with input unread makes the kernel send RST, which can destroy the answer
// before the peer has read it: a close the handler or the drain decided on, while the peer
// may still be sending, sends FIN first and reads the rest away (as close_lingering). A
// peer that finished (EOF) is owed no linger, nor one we close for a timeout.
bool EventLoop::lingers_on_close(const Conn& c) {
  if (c.close_reason_ != CloseReason::kLocalClose && c.close_reason_ != CloseReason::kShutdown) {
    return false;
  }
  return c.input_refused_ || !c.in_.empty() || sockets::unread_bytes(c.fd_) > 0;
}

// Lingering close: our FIN goes out after the reply; the pollers keep reading (and
// dropping) input of a closing connection, and its EOF — or the deadline — closes it.
void EventLoop::start_linger(Conn& c) {
  if (::shutdown(c.fd_, SHUT_WR) != 0) return close_on_error(c, errno);
  c.lingering_ = true;
  if (c.linger_ticks_ == 0) c.linger_ticks_ = kDefaultLingerTicks;
  c.deadline_ = now_tick() + c.linger_ticks_ + 1;
  update_timer(c);
  if (c.read_paused_ || c.input_stopped_) {  // reading had stopped: the EOF must be seen
    c.read_paused_ = false;
    poller_->resume_reading(c);
  }
}

// ---------------------------------------------------------------- timeouts
//
// Activity only stores a tick; the wheel node is armed at the earliest deadline and, when
// it fires, either closes the connection or re-arms at the deadline as it stands now. So
// a busy connection touches the wheel about once per timeout period, not per message.

void EventLoop::track_partial_input(Conn& c) {
  if (c.in_.empty()) {
    c.read_since_ = 0;
  } else if (c.read_since_ == 0 && c.state_ == Conn::State::kOpen) {
    c.read_since_ = now_tick();
    update_timer(c);
  }
}

void EventLoop::track_pending_output(Conn& c) {
  if (c.out_.empty()) {
    c.write_since_ = 0;
  } else if (c.write_since_ == 0) {
    c.write_since_ = now_tick();
    update_timer(c);
  }
}

void EventLoop::set_idle_timeout(Conn& c, std::chrono::milliseconds timeout) {
  c.idle_ticks_ = timeout.count() <= 0
                      ? 0
                      : static_cast<uint32_t>(
                            std::min<uint64_t>(TimerWheel::ticks_for(timeout), UINT32_MAX));
  if (c.idle_ticks_ == 0) return;  // a later deadline, if any, re-arms itself when reached
  timeouts_on_ = true;
  c.last_active_ = now_tick();
  // Re-arm from scratch: the new timeout may be shorter than what the node waits for.
  wheel_.cancel(c.timer_);
  update_timer(c);
}

void EventLoop::update_timer(Conn& c) {
  uint64_t due = UINT64_MAX;
  // +1: a deadline falls inside a tick; firing on the tick after never fires early.
  if (c.idle_ticks_ != 0) due = std::min(due, c.last_active_ + c.idle_ticks_ + 1);
  if (c.read_since_ != 0 && read_ticks_ != 0) due = std::min(due, c.read_since_ + read_ticks_ + 1);
  if (c.write_since_ != 0 && write_ticks_ != 0) {
    due = std::min(due, c.write_since_ + write_ticks_ + 1);
  }
  if (c.lingering_ || c.state_ == Conn::State::kConnecting) due = std::min(due, c.deadline_);
  if (due == UINT64_MAX) return;
  if (c.timer_.armed() && c.timer_.expires <= due) return;  // fires first, then re-checks
  wheel_.arm(c.timer_, due);
}

void EventLoop::on_conn_timer(Conn& c) {
  if (c.state_ == Conn::State::kFree || c.state_ == Conn::State::kClosed) return;
  const uint64_t now = wheel_.now_tick();
  if (c.state_ == Conn::State::kConnecting) {
    if (now >= c.deadline_) return close_conn(c, CloseInfo{CloseReason::kConnectFailed, ETIMEDOUT});
    return update_timer(c);
  }
  if (c.lingering_) {  // the reply is out; only the peer's EOF is still awaited
    if (now >= c.deadline_) return close_conn(c, CloseInfo{c.close_reason_, 0});
    return update_timer(c);
  }
  if (c.write_since_ != 0 && write_ticks_ != 0 && now > c.write_since_ + write_ticks_) {
    // The output cannot drain: flushing first would wait for ever.
    return close_conn(c, CloseInfo{CloseReason::kWriteTimeout, 0});
  }
  if (c.read_since_ != 0 && read_ticks_ != 0 && now > c.read_since_ + read_ticks_) {
    if (c.state_ == Conn::State::kOpen) {
      begin_close(c, CloseReason::kReadTimeout);
      update_timer(c);  // the flush may in turn time out (write_timeout)
      return;
    }
  }
  if (c.idle_ticks_ != 0 && now > c.last_active_ + c.idle_ticks_) {
    if (c.state_ == Conn::State::kOpen) {
      begin_close(c, CloseReason::kIdleTimeout);
    } else {
      return close_conn(c, CloseInfo{CloseReason::kIdleTimeout, 0});
    }
  }
  update_timer(c);
}

void EventLoop::close_conn(Conn& c, CloseInfo info) {
  if (c.state_ == Conn::State::kFree || c.state_ == Conn::State::kClosed) return;
  if (info.reason == CloseReason::kConnectFailed) bump(counters_.dial_failures);
  c.state_ = Conn::State::kClosed;
  c.dirty_ = false;
  wheel_.cancel(c.timer_);
  if (!c.out_.empty()) bump(counters_.outbound_dropped, c.out_.size());
  bool reusable = poller_ == nullptr || poller_->detach(c);
  handler_.on_close(c, info);
  // The fd itself is closed in free_slot: with a completion backend an operation may be
  // prepared but not yet submitted under this fd number, which must not be reused by then.
  c.in_view_ = {};
  add_inbound_held(-static_cast<ptrdiff_t>(c.in_.readable_bytes()));
  c.in_.clear();
  c.in_.release_if_empty();
  c.context_ = nullptr;
  c.codec_word_ = 0;
  c.protocol_state_.reset();
  bump(counters_.closed);
  bump(counters_.closed_by_reason[static_cast<int>(info.reason)]);
  counters_.open.store(counters_.open.load(std::memory_order_relaxed) - 1,
                       std::memory_order_relaxed);
  load_.fetch_sub(1, std::memory_order_relaxed);
  engine_.open_conns.fetch_sub(1, std::memory_order_relaxed);
  if (!c.dialed_) {
    release_source(c.remote_);
    --served_open_;
    // The last accepted connection of the engine: loops waiting to close their dialed
    // connections at the end of a graceful drain look again.
    if (engine_.served.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
        engine_.graceful_stop.load(std::memory_order_acquire)) {
      engine_.wake_loops();  // this loop may not have begun its own drain yet
    }
  }
  if (reusable) free_slot(c);
}

// The fd and the outbound queue are kept until here: a completion backend may still be
// sending from them.
void EventLoop::free_slot(Conn& c) {
  if (c.state_ != Conn::State::kClosed) {
    log(LogLevel::kError, "loop {}: freeing slot {} in state {}; ignored", index_, c.id_.index,
        static_cast<int>(c.state_));
    return;
  }
  if (c.fd_ >= 0) ::close(c.fd_);
  c.fd_ = -1;
  c.out_.clear();
  c.state_ = Conn::State::kFree;
  free_slots_.push_back(c.id_.index);
}

void EventLoop::close_listeners() {
  for (auto& l : listeners_) {
    if (l->fd < 0) continue;
    if (poller_ != nullptr) poller_->remove_listener(*l);
    ::close(l->fd);
    l->fd = -1;
  }
}

// Leaving run(): whatever the drain did not finish is closed now, after one last
// non-blocking attempt to hand its output to the kernel.
void EventLoop::shutdown_all() {
  close_listeners();
  for (Conn& c : slots_) {
    if (c.state_ == Conn::State::kConnecting) {
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
      continue;
    }
    if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) continue;
    // Still busy at the deadline (a lingering close was done; a dialed one serves no one).
    if (graceful_ && !c.lingering_ && !c.dialed_) bump(counters_.drain_deadline_closed);
    if (!c.out_.empty()) poller_->send_final(c);
    close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
  }
  dirty_.clear();
}

}  // namespace ringnet
