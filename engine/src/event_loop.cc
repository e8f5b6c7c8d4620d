#include "event_loop.h"

#include <fcntl.h>
#include <unistd.h>

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
  while (tasks_.run(SIZE_MAX) > 0) {
  }
  t_current_loop = nullptr;
}

void EventLoop::drain_after_exit() {
  thread_id_ = std::this_thread::get_id();
  stopping_ = true;
  while (tasks_.run(SIZE_MAX) > 0) {
  }
}

void EventLoop::iterate() {
  int timeout = -1;
  if (task_signal_ || tasks_.has_backlog()) {
    timeout = 0;
  } else if (timers_.size() > 0) {
    timeout = timers_.next_timeout_ms(Clock::now());
  }
  if (Status s = poller_->poll(timeout); !s) {
    log(LogLevel::kError, "loop {}: {} poll failed: {}", index_, poller_->name(), s.message());
  }
  if (timers_.size() > 0) timers_.run_due(Clock::now());
  if (task_signal_ || tasks_.has_backlog()) {
    task_signal_ = false;
    bump(counters_.tasks_run, tasks_.run(engine_.opts.task_budget));
  }
  flush_dirty();
}

void EventLoop::request_stop() {
  if (stop_requested_.exchange(true)) return;
  post([this] { stopping_ = true; });
}

// ---------------------------------------------------------------- connections

Conn* EventLoop::lookup_slot(uint32_t index) {
  return index < slots_.size() ? &slots_[index] : nullptr;
}

Conn* EventLoop::lookup(ConnId id) {
  Conn* c = lookup_slot(id.index);
  if (c == nullptr || c->id_.generation != id.generation) return nullptr;
  if (c->state_ != Conn::State::kOpen && c->state_ != Conn::State::kClosing) return nullptr;
  return c;
}

void EventLoop::adopt(int fd, const SockAddr& peer) {
  if (stopping_) {  // accepted just as the engine stopped: refuse rather than leak
    ::close(fd);
    load_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
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
  c.state_ = Conn::State::kOpen;
  c.dirty_ = c.readable_ = c.eof_ = c.hup_ = false;
  c.remote_ = peer;
  if (Status s = poller_->add_conn(c); !s) {
    log(LogLevel::kWarn, "loop {}: cannot watch fd {}: {}", index_, fd, s.message());
    ::close(fd);
    c.state_ = Conn::State::kFree;
    free_slots_.push_back(index);
    load_.fetch_sub(1, std::memory_order_relaxed);
    bump(counters_.accept_errors);
    return;
  }
  bump(counters_.accepted);
  bump(counters_.open);
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
  c.in_view_ = std::string_view(data, n);
  run_traffic(c);
}

void EventLoop::deliver_buffered(Conn& c) {
  c.in_view_ = c.in_.view();
  run_traffic(c);
}

// Runs on_traffic, then makes the connection's inbound buffer hold exactly the bytes the
// handler left unread: bytes shown from the spill area are copied in (the spill is reused
// by the next read), bytes consumed from the buffer are dropped from it.
void EventLoop::run_traffic(Conn& c) {
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
  apply_action(c, action);
}

void EventLoop::apply_action(Conn& c, Action action) {
  if (action == Action::kClose) begin_close(c, CloseReason::kLocalClose);
  if (action == Action::kShutdown) engine_.request_stop();
}

void EventLoop::on_eof(Conn& c) {
  c.eof_ = true;
  begin_close(c, CloseReason::kPeerClosed);
}

void EventLoop::mark_dirty(Conn& c) {
  if (c.dirty_) return;
  c.dirty_ = true;
  dirty_.push_back(&c);
}

void EventLoop::begin_close(Conn& c, CloseReason reason) {
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
    if (c.out_.empty()) {
      after_send(c);
    } else {
      poller_->send(c);
    }
  }
  dirty_.clear();
}

Status EventLoop::flush_now(Conn& c) {
  if (!c.out_.empty()) poller_->send(c);
  if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) {
    return Status::invalid("connection closed while flushing");
  }
  return Status::ok();
}

void EventLoop::after_send(Conn& c) {
  if (c.state_ == Conn::State::kClosing && c.out_.empty()) {
    close_conn(c, CloseInfo{c.close_reason_, 0});
  }
}

void EventLoop::close_conn(Conn& c, CloseInfo info) {
  if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) return;
  c.state_ = Conn::State::kClosed;
  c.dirty_ = false;
  if (!c.out_.empty()) bump(counters_.outbound_dropped, c.out_.size());
  bool reusable = poller_->detach(c);
  handler_.on_close(c, info);
  ::close(c.fd_);
  c.fd_ = -1;
  c.in_view_ = {};
  c.in_.clear();
  c.in_.release_if_empty();
  c.context_ = nullptr;
  bump(counters_.closed);
  bump(counters_.closed_by_reason[static_cast<int>(info.reason)]);
  counters_.open.store(counters_.open.load(std::memory_order_relaxed) - 1,
                       std::memory_order_relaxed);
  load_.fetch_sub(1, std::memory_order_relaxed);
  if (reusable) free_slot(c);
}

// The outbound queue is kept until here: a completion backend may still be sending from it.
void EventLoop::free_slot(Conn& c) {
  c.out_.clear();
  c.state_ = Conn::State::kFree;
  free_slots_.push_back(c.id_.index);
}

// Stop: accept nothing more, give every connection one last flush, then close it.
void EventLoop::shutdown_all() {
  for (auto& l : listeners_) {
    if (l->fd < 0) continue;
    poller_->remove_listener(*l);
    ::close(l->fd);
    l->fd = -1;
  }
  for (Conn& c : slots_) {
    if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) continue;
    if (!c.out_.empty()) poller_->send_final(c);
    close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
  }
  dirty_.clear();
}

}  // namespace ringnet
