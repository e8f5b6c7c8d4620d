// SPDX-License-Identifier: MIT
// The accept side of EventLoop: listeners, the accept4 loop, and fd exhaustion.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/event_loop.h"
#include "core/loop_group.h"
#include "ringnet/log.h"

namespace ringnet {

namespace {
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);
}  // namespace

void EventLoop::assign_listener(int fd, int spec, const SockAddr& addr) {
  auto l = std::make_unique<Listener>();
  l->fd = fd;
  l->spec = spec;
  l->slot = static_cast<uint32_t>(listeners_.size());
  l->addr = addr;
  listeners_.push_back(std::move(l));
}

Listener* EventLoop::listener(uint32_t slot) {
  return slot < listeners_.size() ? listeners_[slot].get() : nullptr;
}

// Edge-triggered: accept until EAGAIN, or the edge is lost and connections wait forever.
void EventLoop::accept_ready(Listener& l) {
  while (l.fd >= 0 && !stopping_ && !draining_) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd = ::accept4(l.fd, reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      exhausted_logged_ = false;
      group_.dispatch_accepted(*this, fd, SockAddr(reinterpret_cast<sockaddr*>(&ss), len), l.spec);
      continue;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (!on_accept_error(l, err)) return;
  }
}

// A socket accepted by a completion backend, which gives no peer address.
void EventLoop::on_accepted(Listener& l, int fd) {
  exhausted_logged_ = false;
  if (stopping_ || draining_) {
    bump(counters_.refused_stopping);  // before the close the client sees
    ::close(fd);
    return;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) len = 0;
  group_.dispatch_accepted(*this, fd, SockAddr(reinterpret_cast<sockaddr*>(&ss), len), l.spec);
}

// Returns true when accepting may go on at once; otherwise a retry has been scheduled.
bool EventLoop::on_accept_error(Listener& l, int err) {
  if (err == EINTR) return true;
  if (err == ECONNABORTED || err == EPROTO || err == EPERM) {
    bump(counters_.accept_errors);  // that one connection died in the queue; go on
    return true;
  }
  if (err == EMFILE || err == ENFILE) return handle_fd_exhaustion(l, err);
  // ENOBUFS, ENOMEM and the like: the kernel is short; back off instead of spinning.
  bump(counters_.accept_errors);
  // Shared by all loops and listeners: each may retry 20 times a second.
  RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "accept on {}: {}; retrying in {} ms",
                      l.addr.to_string(), std::strerror(err), kAcceptRetryDelay.count());
  arm_accept_retry(l);
  return false;
}

// Out of fds: the pending connection cannot be accepted, and with edge-triggered polling
// it would sit in the backlog unnoticed. Free the spare fd, accept the connection and
// close it at once (the client sees a close rather than a hang), and take the spare back.
// The kernel reserves the descriptor before it looks at the queue, so EMFILE does not
// mean a connection waits: when none did, accept again when one arrives (never sooner,
// or an exhausted loop spins; never later, or refusals wait for a timer).
// Returns true when accepting may go on, false when the loop backed off.
bool EventLoop::handle_fd_exhaustion(Listener& l, int err) {
  bump(counters_.fd_exhausted);
  if (!exhausted_logged_) {
    exhausted_logged_ = true;  // once per burst: reset by the next successful accept
    // Limited too: when fds free up and run out again per connection, bursts are short.
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1,
                        "accept on {}: {}: refusing connections until fds free up",
                        l.addr.to_string(), std::strerror(err));
  }
  if (spare_fd_ < 0) {
    arm_accept_retry(l);
    return false;
  }
  ::close(spare_fd_);
  int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  const int accept_err = fd < 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (spare_fd_ >= 0 && (accept_err == EAGAIN || accept_err == EWOULDBLOCK)) {
    poller_->accept_when_ready(l);  // nobody was waiting
    return false;
  }
  if (fd < 0 || spare_fd_ < 0) {
    arm_accept_retry(l);  // another thread took the freed descriptor
    return false;
  }
  return true;
}

void EventLoop::arm_accept_retry(Listener& l) {
  if (l.retry_armed) return;
  l.retry_armed = true;
  uint32_t slot = l.slot;
  timers_.add(Clock::now() + kAcceptRetryDelay, [this, slot] {
    Listener* again = listener(slot);
    if (again == nullptr) return;
    again->retry_armed = false;
    if (spare_fd_ < 0) spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (again->fd >= 0 && !stopping_ && !draining_) poller_->resume_accept(*again);
  });
}

}  // namespace ringnet
