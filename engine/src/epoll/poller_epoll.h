// SPDX-License-Identifier: MIT
// EpollPoller: Go netpoll's model. Every fd is registered once, at open, with
// EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET; there is no EPOLL_CTL_MOD per write — an
// EPOLLOUT edge just means "you may flush now".
//
// epoll_data carries a 64-bit tag: a connection's ConnId (generation in the high half,
// never 0), or, with generation 0, a listener slot or the wakeup fd:
//
//   63            32 31             0
//   +---------------+---------------+
//   |  generation   |  slot index   |   connection
//   |       0       |  listener slot|   listener
//   |       0       |  0xFFFFFFFF   |   task-queue eventfd
//   +---------------+---------------+
//
// A stale event (its connection closed earlier in the same batch, slot maybe reused)
// fails the generation check and is dropped.
#pragma once

#include <sys/epoll.h>

#include <utility>
#include <vector>

#include "core/poller.h"

namespace ringnet {

class EventLoop;

class EpollPoller final : public Poller {
 public:
  explicit EpollPoller(EventLoop& loop) : loop_(loop) {}
  ~EpollPoller() override;

  Status init();
  const char* name() const override { return "epoll"; }
  Status add_wakeup(int fd) override;
  Status add_listener(Listener& listener) override;
  void remove_listener(Listener& listener) override;
  Status add_conn(Conn& conn) override;
  int start_connect(Conn& conn) override;
  void resume_accept(Listener& listener) override;
  // The listener is edge-triggered: the next connection raises an edge by itself.
  void accept_when_ready(Listener&) override {}
  int send(Conn& conn) override;
  void send_final(Conn& conn) override { (void)send(conn); }
  // Nothing to tell the kernel: read_conn just leaves a paused connection's input in the
  // socket (TCP flow control holds the peer back); resume queues a read before blocking.
  void pause_reading(Conn&) override {}
  void resume_reading(Conn& conn) override;
  size_t write_direct(Conn& conn, std::span<const std::string_view> parts) override;
  bool detach(Conn& conn) override;
  Status poll(int timeout_ms) override;

 private:
  void dispatch(const epoll_event& ev);
  void on_conn_event(Conn& c, uint32_t events);
  void read_conn(Conn& c);
  void serve_pending_reads();

  EventLoop& loop_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  std::vector<epoll_event> events_ = std::vector<epoll_event>(256);
  std::vector<ConnId> pending_reads_;  // hit the read budget; served before blocking
  std::vector<ConnId> serving_;
};

}  // namespace ringnet
