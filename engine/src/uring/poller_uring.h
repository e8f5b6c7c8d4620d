// SPDX-License-Identifier: MIT
// UringPoller: the io_uring backend. One ring per loop thread, created on that thread.
//
//   accept   one multishot accept per listener, re-armed when a completion comes
//            without IORING_CQE_F_MORE (or after a back-off on EMFILE/ENOBUFS)
//   receive  one multishot recv per connection from the loop's provided-buffer ring;
//            each buffer's bytes go to the loop (EventLoop::on_input), and the buffer
//            goes back to the ring right after (the loop copied what the handler left),
//            or, consumed incrementally, once the kernel has filled it.
//            -ENOBUFS (ring ran dry) re-arms. Pausing cancels it; bytes of completions
//            already on their way still go to the loop, which shows them.
//   send     at most one send in flight per connection (order), of everything queued
//            when it was issued; a partial send continues from where it stopped
//   wakeup   a read of the task eventfd, re-armed after each completion
//   close    outstanding operations are cancelled by tag; the slot is reused only after
//            the last completion for it arrived (tags carry the slot's generation)
//   fixed    a connection whose slot index fits the fixed file table is installed there
//            (IORING_OP_FILES_UPDATE, queued ahead of its first operation, which the kernel
//            issues in order) and every operation names the slot; close_direct empties it
//            at close. The plain fd stays open for shutdown, setsockopt, FIONREAD and the
//            final synchronous send, and is closed by the loop as on epoll.
//
// Everything prepared during one loop iteration goes to the kernel with the single
// submit-and-wait of the next poll().
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/poller.h"
#include "ringnet/options.h"
#include "uring/buffer_ring.h"
#include "uring/uring_tag.h"

namespace ringnet {

class EventLoop;

class UringPoller final : public Poller {
 public:
  explicit UringPoller(EventLoop& loop) : loop_(loop) {}
  ~UringPoller() override;

  Status init(const Options& opts);
  const char* name() const override { return "io_uring"; }
  const std::string& mode() const { return mode_; }
  Status add_wakeup(int fd) override;
  Status add_listener(Listener& listener) override;
  void remove_listener(Listener& listener) override;
  void resume_accept(Listener& listener) override;
  void accept_when_ready(Listener& listener) override;
  Status add_conn(Conn& conn) override;
  int start_connect(Conn& conn) override;
  int send(Conn& conn) override;
  void send_final(Conn& conn) override;
  // Backpressure or a drain: cancel the multishot receive (completions already on their
  // way are still delivered) / arm it again.
  void pause_reading(Conn& conn) override;
  void resume_reading(Conn& conn) override;
  bool detach(Conn& conn) override;
  void drain_before_exit() override;
  Status poll(int timeout_ms) override;

 private:
  static constexpr size_t kSendIov = 16;

  // The msghdr and iovecs of a multi-block send, which must stay put until it completes.
  // Borrowed from a per-loop free list for the send's duration, so an idle connection
  // holds none.
  struct SendState {
    msghdr msg{};
    iovec iov[kSendIov];
  };

  // Per connection slot: which operations are in flight.
  struct ConnOps {
    uint32_t generation = 0;
    bool recv_armed = false;
    bool send_inflight = false;
    bool connect_inflight = false;
    bool detached = false;  // closed; the slot waits for the last completion
    SendState* send = nullptr;
  };

  io_uring_sqe* get_sqe();
  bool fixed(const Conn& c) const { return c.id().index < fixed_slots_; }
  void target(io_uring_sqe* sqe, const Conn& c);
  void install_fixed(Conn& c);
  void prep_tagged(io_uring_sqe* sqe, UringTag tag) { io_uring_sqe_set_data64(sqe, tag.pack()); }
  void arm_wake();
  void arm_accept(Listener& l);
  void arm_recv(Conn& c, ConnOps& ops);
  void submit_send(Conn& c, ConnOps& ops);
  void cancel(UringTag tag);
  ConnOps& ops_for(uint32_t index);
  SendState* borrow_send_state();
  void return_send_state(ConnOps& ops);

  void handle(uint64_t user_data, int res, uint32_t flags);
  void on_accept(UringTag tag, int res, uint32_t flags);
  void on_recv(UringTag tag, int res, uint32_t flags);
  void on_recv_bytes(Conn& c, const char* data, size_t n);
  void consume_buffers(Conn* c, uint16_t first, int res, uint32_t flags);
  void on_send(UringTag tag, int res);
  void on_connect(UringTag tag, int res);
  void on_files(UringTag tag, int res);
  void release_if_idle(uint32_t index);
  void check_overflow();
  bool ops_outstanding() const;

  EventLoop& loop_;
  io_uring ring_{};
  bool ring_ready_ = false;
  bool bundle_ = false;  // receives may fill several buffers per completion
  bool grew_this_poll_ = false;  // the buffer ring already grew in this poll
  uint32_t fixed_slots_ = 0;     // fixed file table entries (0: plain fds only)
  std::string mode_;
  BufferRing buffers_;
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  std::deque<ConnOps> ops_;
  std::vector<std::unique_ptr<SendState>> send_states_;  // owns them all
  std::vector<SendState*> free_send_states_;
  std::vector<bool> accept_armed_;    // per listener slot: an accept (or its poll) in flight
  std::vector<bool> accept_polling_;  // ... and it is the readiness poll (kAcceptPollGen)
  bool overflow_logged_ = false;
};

}  // namespace ringnet
