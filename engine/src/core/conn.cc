// SPDX-License-Identifier: MIT
#include "ringnet/conn.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "core/event_loop.h"
#include "net/socket_ops.h"

namespace ringnet {

// ---------------------------------------------------------------- Conn (loop thread)

namespace {
// Below this, copying into the outbound queue and sending once per iteration (coalescing)
// is cheaper; above it, the copy costs more than the syscall it saves. Measured with the
// echo benchmark at 64 B (coalescing wins) and 16 KiB (direct wins by ~7% CPU/message).
constexpr size_t kDirectWriteMin = 8 * 1024;
}  // namespace

void Conn::close_lingering(std::chrono::milliseconds linger) {
  RINGNET_ASSERT_IN_LOOP(loop_);
  if (state_ != State::kOpen) return;
  uint64_t ticks = std::max<uint64_t>(1, TimerWheel::ticks_for(linger));
  linger_ticks_ = static_cast<uint16_t>(std::min<uint64_t>(ticks, UINT16_MAX));
  close();
}

void Conn::release() {
  RINGNET_ASSERT_IN_LOOP(loop_);
  if (holds_ == 0) return;
  if (--holds_ == 0) loop_->on_released(*this);  // what a drain or an EOF waited for
}

Status Conn::write(std::string_view bytes) {
  return writev(std::span<const std::string_view>(&bytes, 1));
}

Status Conn::writev(std::span<const std::string_view> parts) {
  RINGNET_ASSERT_IN_LOOP(loop_);
  if (state_ != State::kOpen) return Status::invalid("write on a closing or closed connection");
  size_t total = 0;
  for (std::string_view part : parts) total += part.size();
  if (total == 0) return Status::ok();
  bump(loop_->counters_mut().conn_writes);
  if (transport_ != nullptr) return seal(parts);
  size_t skip = 0;  // bytes the kernel took directly
  if (out_.empty() && total >= kDirectWriteMin) skip = loop_->write_direct(*this, parts);
  for (std::string_view part : parts) {
    size_t drop = std::min(skip, part.size());
    skip -= drop;
    part.remove_prefix(drop);
    out_.append(part);
  }
  if (!out_.empty()) loop_->mark_dirty(*this);
  return Status::ok();
}

// The handler's plaintext becomes records at once, one per write call (a writev is one).
Status Conn::seal(std::span<const std::string_view> parts) {
  if (handshaking_) return Status::invalid("write before the transport's handshake completed");
  TransportResult r = transport_->seal(parts, out_);
  if (r.failed && send_error_ == 0) {
    send_error_ = EPROTO;  // closed by the flush at the end of the iteration
  }
  if (!out_.empty() || send_error_ != 0) loop_->mark_dirty(*this);
  return send_error_ != 0 ? Status::from_errno(send_error_, "write") : Status::ok();
}

Status Conn::flush() {
  RINGNET_ASSERT_IN_LOOP(loop_);
  return loop_->flush_now(*this);
}

void Conn::set_idle_timeout(std::chrono::milliseconds timeout) {
  RINGNET_ASSERT_IN_LOOP(loop_);
  loop_->set_idle_timeout(*this, timeout);
}

void Conn::close() {
  RINGNET_ASSERT_IN_LOOP(loop_);
  loop_->begin_close(*this, CloseReason::kLocalClose);
}

SockAddr Conn::local_addr() const { return sockets::local_address(fd_); }

ConnHandle Conn::handle() const { return ConnHandle(loop_, id_); }

int Conn::loop_index() const { return loop_->index(); }

bool Conn::draining() const { return loop_->graceful_draining(); }

// ---------------------------------------------------------------- ConnHandle (any thread)

void ConnHandle::async_write(std::string_view bytes, WriteCallback done) const {
  if (loop_ == nullptr) {
    if (done) done(Status::invalid("empty connection handle"));
    return;
  }
  EventLoop* loop = loop_;
  ConnId id = id_;
  loop->post([loop, id, data = std::string(bytes), done = std::move(done)] {
    Status s = loop->write_from_handle(id, data);
    if (done) done(std::move(s));
  });
}

void ConnHandle::wake() const {
  if (loop_ != nullptr) loop_->wake_conn(id_);
}

void ConnHandle::dispatch(std::function<void(Conn*)> task) const {
  if (loop_ == nullptr) {
    task(nullptr);
    return;
  }
  struct OnLoop {
    EventLoop* loop;
    ConnId id;
    std::function<void(Conn*)> task;
    void operator()() {
      Conn* c = loop->lookup(id);
      task(c != nullptr && c->state() == Conn::State::kOpen ? c : nullptr);
    }
  };
  TaskQueue::Task wrapped = OnLoop{loop_, id_, std::move(task)};
  // The engine has stopped and its loops are gone: the connection is too. Say so now
  // rather than leave the task queued, unrun, until the Engine is destroyed.
  if (!loop_->try_post(wrapped)) wrapped.target<OnLoop>()->task(nullptr);
}

void ConnHandle::close() const {
  if (loop_ == nullptr) return;
  EventLoop* loop = loop_;
  ConnId id = id_;
  loop->post([loop, id] {
    if (Conn* c = loop->lookup(id)) loop->begin_close(*c, CloseReason::kLocalClose);
  });
}

}  // namespace ringnet
