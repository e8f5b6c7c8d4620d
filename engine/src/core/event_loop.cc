// SPDX-License-Identifier: MIT
#include "core/event_loop.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "core/loop_group.h"
#include "ringnet/log.h"

namespace ringnet {
namespace {
// One loop per thread: a second one on the same thread is a programming error.
thread_local EventLoop* t_current_loop = nullptr;
}  // namespace

EventLoop::EventLoop(LoopGroup& group, int index)
    : group_(group),
      handler_(group.handler),
      index_(index),
      pool_(group.opts.pool_cache_bytes),
      spill_(new char[kSpillSize]) {}

EventLoop::~EventLoop() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) ::close(l->fd);
  }
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

const Options& EventLoop::options() const { return group_.opts; }

Status EventLoop::init() {
  if (Status s = tasks_.init(); !s) return s;
  const Options& o = group_.opts;
  idle_ticks_ = capped_ticks(o.idle_timeout);
  read_ticks_ = capped_ticks(o.read_timeout);
  write_ticks_ = capped_ticks(o.write_timeout);
  timeouts_on_ = idle_ticks_ != 0 || read_ticks_ != 0 || write_ticks_ != 0;
  if (o.max_inbound_total != 0) {
    // At least one frame of the largest size (max_inbound_buffer) fits on every loop,
    // however many loops share the total.
    inbound_budget_ = std::max({size_t{1}, o.max_inbound_total / static_cast<size_t>(std::max(1, o.loops)),
                                std::min(o.max_inbound_buffer, o.max_inbound_total)});
  }
  metrics_on_ = o.metrics;
  if (Status s = group_.make_poller(*this, &poller_); !s) return s;
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
    poller_.reset();  // here too: an io_uring ring is torn down by its issuer
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
    bump(counters_.tasks_run, tasks_.run(group_.opts.task_budget));
  }
  // Before the flush, which sends and closes what these decide.
  bool drained = false;
  if (draining_) drained = drain_step(sweep);
  flush_dirty();
  counters_.pool_cached_bytes.store(pool_.cached_bytes(), std::memory_order_relaxed);
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

void EventLoop::request_stop(std::function<void()> then) {
  if (stop_requested_.exchange(true)) return;
  post([this, then = std::move(then)] {
    begin_shutdown();
    if (then) then();
  });
}

Conn* EventLoop::lookup_slot(uint32_t index) {
  return index < slots_.size() ? &slots_[index] : nullptr;
}

Conn* EventLoop::lookup(ConnId id) {
  Conn* c = lookup_slot(id.index);
  if (c == nullptr || c->id_.generation != id.generation) return nullptr;
  if (c->state_ == Conn::State::kFree || c->state_ == Conn::State::kClosed) return nullptr;
  return c;
}

void EventLoop::wake_conn(ConnId id) {
  post([this, id] {
    Conn* c = lookup(id);
    if (c != nullptr && c->state_ == Conn::State::kOpen && !c->handshaking_) run_traffic(*c);
  });
}

Status EventLoop::write_from_handle(ConnId id, std::string_view bytes) {
  Conn* c = lookup(id);
  if (c == nullptr) return Status::invalid("connection closed");
  const size_t high = group_.opts.outbound_high_watermark;
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

void EventLoop::close_listeners() {
  for (auto& l : listeners_) {
    if (l->fd < 0) continue;
    if (poller_ != nullptr) poller_->remove_listener(*l);
    ::close(l->fd);
    l->fd = -1;
  }
}

}  // namespace ringnet
