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
  if (!ok) {
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
  int timeout = -1;
  if (task_signal_ || tasks_.has_backlog()) {
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
  flush_dirty();
  if (batch_started_) {
    batch_started_ = false;
    auto busy = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - batch_start_);
    counters_.busy_ns.record(static_cast<uint64_t>(std::max<int64_t>(busy.count(), 0)));
  }
  if (draining_ && (counters_.open.load(std::memory_order_relaxed) == 0 ||
                    Clock::now() >= drain_deadline_)) {
    stopping_ = true;
  }
}

void EventLoop::request_stop(std::function<void()> then) {
  if (stop_requested_.exchange(true)) return;
  post([this, then = std::move(then)] {
    begin_shutdown();
    if (then) then();
  });
}

// Accept nothing more; connections with nothing queued close now, the others flush (as
// kClosing: input is no longer shown to the handler) until they drained or the deadline.
void EventLoop::begin_shutdown() {
  draining_ = true;
  const std::chrono::milliseconds drain = engine_.drain_for;
  graceful_ = drain.count() >= 0;
  drain_deadline_ = Clock::now() + (graceful_ ? drain : engine_.opts.stop_flush_timeout);
  close_listeners();
  for (Conn& c : slots_) {
    if (c.state_ == Conn::State::kConnecting) {  // a dial not done: given up, not drained
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
      continue;
    }
    if (c.state_ != Conn::State::kOpen) continue;
    if (graceful_) {  // keep serving what was received; idle ones go now
      if (idle_for_drain(c)) close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
      continue;
    }
    if (c.out_.empty()) {
      close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
    } else {
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
  c.dirty_ = c.readable_ = c.eof_ = c.hup_ = c.read_paused_ = false;
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
    ::close(fd);
    release_source(peer);
    load_.fetch_sub(1, std::memory_order_relaxed);
    engine_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    bump(counters_.refused_stopping);
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
  auto give_up = [this](const char* why) {
    load_.fetch_sub(1, std::memory_order_relaxed);
    engine_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    bump(counters_.dial_failures);
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "loop {}: dial dropped: {}", index_, why);
  };
  // Queued as the engine stopped (maybe run after the loop thread left): no slot, no poller.
  if (stopping_ || draining_ || poller_ == nullptr) return give_up("engine stopping");
  int fd = ::socket(peer.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int socket_err = errno;
  Conn& c = new_slot(fd, peer, Conn::State::kConnecting);
  c.dialed_ = true;
  c.context_ = options.context;
  bump(counters_.open);  // closing it (connected or not) counts it out again
  if (fd < 0) return close_conn(c, CloseInfo{CloseReason::kConnectFailed, socket_err});
  if (peer.is_ip()) sockets::tune_accepted(fd, peer.family(), engine_.opts);
  c.deadline_ = now_tick() + TimerWheel::ticks_for(options.timeout) + 1;
  update_timer(c);
  if (int err = poller_->start_connect(c); err != 0) {
    return close_conn(c, CloseInfo{CloseReason::kConnectFailed, err});
  }
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

void EventLoop::deliver_view(Conn& c, const char* data, size_t n) {
  bump(counters_.bytes_in, n);
  // Closed while a completion batch was being handed over (e.g. over max_inbound_buffer):
  // the rest of the batch is dropped.
  if (c.state_ != Conn::State::kOpen) return;
  note_activity(c);
  if (c.read_paused_) {  // a completion already in flight: keep it for the resume
    c.in_.append(std::string_view(data, n));
    return check_inbound_limit(c);
  }
  c.in_view_ = std::string_view(data, n);
  run_traffic(c);
}

void EventLoop::deliver_buffered(Conn& c) {
  if (c.state_ != Conn::State::kOpen) return;
  note_activity(c);
  if (c.read_paused_) return check_inbound_limit(c);
  c.in_view_ = c.in_.view();
  run_traffic(c);
}

// Runs on_traffic, then makes the connection's inbound buffer hold exactly the bytes the
// handler left unread: bytes shown from the spill area are copied in (the spill is reused
// by the next read), bytes consumed from the buffer are dropped from it.
void EventLoop::run_traffic(Conn& c) {
  bump(counters_.traffic_calls);
  Action action = handler_.on_traffic(c);
  if (c.in_.empty()) {
    if (!c.in_view_.empty()) {
      c.in_.append(c.in_view_);
      c.in_view_ = c.in_.view();
    }
  } else {
    c.in_.consume(c.in_.readable_bytes() - c.in_view_.size());
    c.in_.release_if_empty();
    c.in_view_ = c.in_.view();
  }
  if (read_ticks_ != 0) track_partial_input(c);
  if (c.in_.readable_bytes() > 0) check_inbound_limit(c);
  if (c.state_ == Conn::State::kOpen) check_backpressure(c);
  apply_action(c, action);
  close_if_drained(c);
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
    poller_->resume_reading(c);
    handler_.on_backpressure(c, false);
    // Input that arrived while paused is shown now, from the loop rather than from inside
    // the send that drained the queue.
    if (!c.in_.empty()) {
      ConnId id = c.id_;
      post([this, id] {
        Conn* conn = lookup(id);
        if (conn != nullptr && conn->state_ == Conn::State::kOpen && !conn->read_paused_ &&
            !conn->in_.empty()) {
          deliver_buffered(*conn);
        }
      });
    }
  }
}

void EventLoop::check_inbound_limit(Conn& c) {
  const size_t limit = engine_.opts.max_inbound_buffer;
  if (limit == 0 || c.in_.readable_bytes() <= limit) return;
  bump(counters_.inbound_overflows);
  uint64_t dropped = 0;
  if (inbound_log_limit_.allow(&dropped)) {
    log(LogLevel::kWarn, "loop {}: {} holds {} unread bytes, over max_inbound_buffer {}; closing{}",
        index_, c.remote_.to_string(), c.in_.readable_bytes(), limit,
        dropped ? fmt::format(" ({} similar lines suppressed)", dropped) : std::string());
  }
  close_conn(c, CloseInfo{CloseReason::kError, EMSGSIZE});
}

void EventLoop::apply_action(Conn& c, Action action) {
  if (action == Action::kClose) begin_close(c, CloseReason::kLocalClose);
  if (action == Action::kShutdown) engine_.request_stop();
}

void EventLoop::on_eof(Conn& c) {
  c.eof_ = true;
  begin_close(c, CloseReason::kPeerClosed);
}

void EventLoop::on_eof_while_closing(Conn& c) {
  c.eof_ = true;
  if (c.lingering_) close_conn(c, CloseInfo{c.close_reason_, 0});  // what we waited for
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
    if (c.linger_ticks_ != 0 && !c.eof_) return start_linger(c);
    close_conn(c, CloseInfo{c.close_reason_, 0});
    return;
  }
  if (timeouts_on_) {
    note_activity(c);
    if (write_ticks_ != 0) track_pending_output(c);
  }
  if (c.state_ == Conn::State::kOpen) check_backpressure(c);
  close_if_drained(c);
}

// Lingering close: our FIN goes out after the reply; the pollers keep reading (and
// dropping) input of a closing connection, and its EOF — or the deadline — closes it.
void EventLoop::start_linger(Conn& c) {
  if (::shutdown(c.fd_, SHUT_WR) != 0) return close_on_error(c, errno);
  c.lingering_ = true;
  c.deadline_ = now_tick() + c.linger_ticks_ + 1;
  update_timer(c);
  if (c.read_paused_) {  // backpressure had stopped reading: the EOF must be seen
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
  bool reusable = poller_->detach(c);
  handler_.on_close(c, info);
  // The fd itself is closed in free_slot: with a completion backend an operation may be
  // prepared but not yet submitted under this fd number, which must not be reused by then.
  c.in_view_ = {};
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
  if (!c.dialed_) release_source(c.remote_);
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
    poller_->remove_listener(*l);
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
    if (graceful_) bump(counters_.drain_deadline_closed);  // still busy at the deadline
    if (!c.out_.empty()) poller_->send_final(c);
    close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
  }
  dirty_.clear();
}

}  // namespace ringnet
