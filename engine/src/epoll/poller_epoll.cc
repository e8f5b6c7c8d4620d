// SPDX-License-Identifier: MIT
#include "epoll/poller_epoll.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/event_loop.h"
#include "net/listener.h"

namespace ringnet {
namespace {

constexpr uint32_t kWakeSlot = 0xFFFFFFFFu;
// EPOLLPRI: urgent data (TCP, and AF_UNIX OOB) makes a read stop at its mark with bytes
// still queued behind it, and no new edge comes for them: read on to EAGAIN then.
constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
constexpr uint32_t kReadEvents = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI;
constexpr size_t kMaxIov = 64;
constexpr size_t kMaxEvents = 4096;

uint64_t special_tag(uint32_t slot) { return slot; }  // generation 0

}  // namespace

EpollPoller::~EpollPoller() {
  if (epfd_ >= 0) ::close(epfd_);
}

Status EpollPoller::init() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return Status::from_errno(errno, "epoll_create1");
  return Status::ok();
}

Status EpollPoller::add_wakeup(int fd) {
  wake_fd_ = fd;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = special_tag(kWakeSlot);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Status::from_errno(errno, "epoll_ctl add eventfd");
  }
  return Status::ok();
}

Status EpollPoller::add_listener(Listener& l) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = special_tag(l.slot);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, l.fd, &ev) != 0) {
    return Status::from_errno(errno, "epoll_ctl add listener");
  }
  return Status::ok();
}

void EpollPoller::resume_accept(Listener& l) { loop_.accept_ready(l); }

void EpollPoller::remove_listener(Listener& l) {
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, l.fd, nullptr);
}

Status EpollPoller::add_conn(Conn& c) {
  epoll_event ev{};
  ev.events = kConnEvents;
  ev.data.u64 = c.id().pack();
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd(), &ev) != 0) {
    return Status::from_errno(errno, "epoll_ctl add conn");
  }
  return Status::ok();
}

// connect() itself, then the one registration every connection gets: the EPOLLOUT edge
// (or EPOLLERR/HUP) says the connect finished, SO_ERROR says how. A loopback or Unix
// connect that completes at once still waits for that edge, so the result always comes
// from the loop, never from inside Engine::dial's task.
int EpollPoller::start_connect(Conn& c) {
  int rc;
  do {
    rc = ::connect(c.fd(), c.remote_.raw(), c.remote_.length());
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) return errno;  // refused at once, EAGAIN (Unix backlog)...
  if (Status s = add_conn(c); !s) return s.code() > 0 ? s.code() : EIO;
  return 0;
}

bool EpollPoller::detach(Conn& c) {
  // close() drops the registration; pending-read entries die by the generation check.
  c.readable_ = false;
  return true;
}

Status EpollPoller::poll(int timeout_ms) {
  if (!pending_reads_.empty()) timeout_ms = 0;
  int n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return Status::ok();
    return Status::from_errno(errno, "epoll_wait");
  }
  loop_.begin_batch(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) dispatch(events_[i]);
  if (static_cast<size_t>(n) == events_.size() && events_.size() < kMaxEvents) {
    events_.resize(events_.size() * 2);  // a full batch: take more per call next time
  }
  serve_pending_reads();
  return Status::ok();
}

void EpollPoller::dispatch(const epoll_event& ev) {
  ConnId tag = ConnId::unpack(ev.data.u64);
  if (tag.generation != 0) {
    if (Conn* c = loop_.lookup(tag)) on_conn_event(*c, ev.events);
    return;
  }
  if (tag.index == kWakeSlot) {
    uint64_t count = 0;
    ssize_t rc = ::read(wake_fd_, &count, sizeof(count));  // reset the eventfd counter
    (void)rc;
    loop_.on_wakeup();
  } else if (Listener* l = loop_.listener(tag.index)) {
    loop_.accept_ready(*l);
  }
}

// EPOLLOUT before EPOLLIN: leftover output goes out (and frees its memory) before new
// input produces more, and a dead peer shows up as a send error before we read.
void EpollPoller::on_conn_event(Conn& c, uint32_t events) {
  ConnId id = c.id();
  if (c.state() == Conn::State::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(c.fd(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == ECONNRESET || err == EPIPE) {
      // Connected, then reset before we looked (a refused SYN is ECONNREFUSED): report it
      // as io_uring would, on_open and then a reset.
      loop_.on_connect_result(c, 0);
      if (loop_.lookup(id) != nullptr) loop_.close_on_error(c, err);
      return;
    }
    loop_.on_connect_result(c, err);
    if (loop_.lookup(id) == nullptr || c.state() != Conn::State::kOpen) return;
    if (err == 0 && (events & EPOLLERR)) events &= ~EPOLLERR;  // stale: the connect won
  }
  if ((events & EPOLLOUT) && !c.out_.empty()) loop_.send_or_close(c);
  if (loop_.lookup(id) == nullptr) return;  // closed by the send
  // A hang-up or urgent data is remembered on the connection: this edge will not come
  // again, and a read cut short by the budget must still go on to EAGAIN or EOF later.
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) c.read_to_eagain_ = true;
  if (events & kReadEvents) read_conn(c);
}

// Reads into the loop's spill area and hands the bytes to the loop (EventLoop::on_input),
// which shows them to the handler at once and keeps only what it leaves: an idle
// connection owns no inbound buffer. A closing connection is read too (the loop drops its
// input) so that its EOF or reset is seen.
void EpollPoller::read_conn(Conn& c) {
  const ConnId id = c.id();
  const size_t budget = loop_.options().read_budget;
  char* spill = loop_.spill();
  size_t total = 0;
  LoopCounters& counters = loop_.counters_mut();
  for (;;) {
    if (!EventLoop::wants_input(c)) return;  // the edge is spent; resume_reading reads on
    ssize_t n = ::read(c.fd(), spill, EventLoop::kSpillSize);
    bump(counters.read_calls);
    if (n > 0) {
      loop_.on_input(c, std::string_view(spill, static_cast<size_t>(n)));
      if (loop_.lookup(id) == nullptr) return;
      total += static_cast<size_t>(n);
      // A short read drained the socket: new data raises a new edge, so skip the EAGAIN
      // read — unless the peer hung up or sent urgent data (see kConnEvents).
      if (static_cast<size_t>(n) < EventLoop::kSpillSize && !c.read_to_eagain_) return;
      if (total >= budget) {
        if (!c.readable_) pending_reads_.push_back(id);
        c.readable_ = true;
        bump(counters.budget_yields);
        return;
      }
      continue;
    }
    if (n == 0) return loop_.on_peer_eof(c);
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c.read_to_eagain_ = false;  // drained, urgent mark included
      return;
    }
    if (errno == EINTR) continue;
    return loop_.close_on_error(c, errno);
  }
}

void EpollPoller::resume_reading(Conn& c) {
  if (!c.readable_) pending_reads_.push_back(c.id());
  c.readable_ = true;
}

void EpollPoller::serve_pending_reads() {
  if (pending_reads_.empty()) return;
  serving_.swap(pending_reads_);
  for (ConnId id : serving_) {
    Conn* c = loop_.lookup(id);
    if (c == nullptr || !c->readable_) continue;
    c->readable_ = false;
    read_conn(*c);
  }
  serving_.clear();
}

// One sendmsg per call while the kernel takes everything; a short write means the
// socket buffer is full and the next EPOLLOUT edge resumes. MSG_NOSIGNAL: a dead peer is
// an EPIPE to handle, not a SIGPIPE that kills the process.
int EpollPoller::send(Conn& c) {
  LoopCounters& counters = loop_.counters_mut();
  iovec iov[kMaxIov];
  while (!c.out_.empty()) {
    size_t count = c.out_.gather(iov, kMaxIov);
    size_t want = 0;
    for (size_t i = 0; i < count; ++i) want += iov[i].iov_len;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n = ::sendmsg(c.fd(), &msg, MSG_NOSIGNAL);
    bump(counters.write_calls);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return errno;
    }
    bump(counters.bytes_out, static_cast<uint64_t>(n));
    loop_.note_flush(static_cast<uint64_t>(n));
    c.out_.consume(static_cast<size_t>(n));
    if (static_cast<size_t>(n) < want) break;
  }
  return 0;
}

// Errors are not handled here: the caller queues what was not taken, and the flush at the
// end of the iteration meets the same error and closes the connection properly.
size_t EpollPoller::write_direct(Conn& c, std::span<const std::string_view> parts) {
  iovec iov[kMaxIov];
  size_t count = 0;
  for (std::string_view part : parts) {
    if (part.empty()) continue;
    if (count == kMaxIov) break;
    iov[count++] = {const_cast<char*>(part.data()), part.size()};
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  ssize_t n = ::sendmsg(c.fd(), &msg, MSG_NOSIGNAL);
  LoopCounters& counters = loop_.counters_mut();
  bump(counters.write_calls);
  if (n <= 0) return 0;
  bump(counters.bytes_out, static_cast<uint64_t>(n));
  loop_.note_flush(static_cast<uint64_t>(n));
  return static_cast<size_t>(n);
}


}  // namespace ringnet
