// SPDX-License-Identifier: MIT
#include "uring/poller_uring.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/event_loop.h"
#include "net/listener.h"
#include "ringnet/log.h"
#include "uring/uring_setup.h"

namespace ringnet {
namespace {
// IORING_RECVSEND_BUNDLE (kernel 6.10) and IORING_CQE_F_BUF_MORE (6.12); liburing 2.3's
// headers predate them.
constexpr uint16_t kRecvBundle = 1u << 4;
constexpr uint32_t kCqeBufMore = 1u << 4;

// The fixed file table: one entry per connection this loop may hold, no more than the
// process may open nor the kernel takes (IORING_MAX_FIXED_FILES, 2^20: it refuses more).
uint32_t fixed_table_size(const Options& o) {
  size_t n = o.max_connections_per_loop != 0 ? o.max_connections_per_loop
             : o.max_connections != 0        ? o.max_connections
                                             : 16384;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    n = std::min<size_t>(n, rl.rlim_cur);
  }
  return static_cast<uint32_t>(std::min<size_t>(n, size_t{1} << 20));
}
}  // namespace

UringPoller::~UringPoller() {
  if (!ring_ready_) return;
  buffers_.release();  // unregister before the ring goes away
  io_uring_queue_exit(&ring_);
}

Status UringPoller::init(const Options& opts) {
  if (Status s = setup_ring(&ring_, opts.uring_entries, &mode_); !s) return s;
  ring_ready_ = true;
  if (Status s = buffers_.init(&ring_, 0, opts.uring_buffer_count, opts.uring_buffer_size,
                               opts.uring_buffer_incremental, opts.uring_buffer_initial);
      !s) {
    return s;
  }
  loop_.counters_mut().uring_buffers_offered.store(buffers_.offered(), std::memory_order_relaxed);
  if (buffers_.incremental()) {
    loop_.counters_mut().uring_incremental_buffers.store(1, std::memory_order_relaxed);
    mode_ += "+incremental_buffers";
  } else if (opts.uring_buffer_incremental) {
    log(LogLevel::kInfo, "loop {}: provided buffers not consumed incrementally (kernel "
                         "older than 6.12): a whole buffer per receive", loop_.index());
  }
  bundle_ = opts.uring_recv_bundle && kernel_at_least(6, 10);
  if (opts.uring_register_ring) {
    // 1 = registered; liburing's enter calls use the registered index from now on.
    int rc = io_uring_register_ring_fd(&ring_);
    if (rc == 1) {
      loop_.counters_mut().uring_registered_ring.store(1, std::memory_order_relaxed);
      mode_ += "+registered_ring";
    } else {
      log(LogLevel::kInfo, "loop {}: io_uring ring fd not registered ({}); using the plain fd",
          loop_.index(), std::strerror(-rc));
    }
  }
  // Before 6.13 a fixed file's release waited for every older request on any fixed file
  // of the ring (one node for the whole table, recycled in order): behind a long-lived
  // multishot receive, a closed socket would stay open. From 6.13 each slot has its own
  // reference. The acceptor loop hands its sockets to the others: it needs no table.
  if (opts.uring_fixed_files && !kernel_at_least(6, 13)) {
    log(LogLevel::kInfo, "loop {}: no io_uring fixed file table (kernel older than 6.13); "
                         "using plain fds", loop_.index());
  } else if (opts.uring_fixed_files && loop_.index() >= 0) {
    const uint32_t slots = fixed_table_size(opts);
    int rc = io_uring_register_files_sparse(&ring_, slots);
    if (rc == 0) {
      fixed_slots_ = slots;
      loop_.counters_mut().uring_fixed_file_slots.store(slots, std::memory_order_relaxed);
      mode_ += "+fixed_files";
    } else {
      log(LogLevel::kInfo, "loop {}: no io_uring fixed file table ({}); using plain fds",
          loop_.index(), std::strerror(-rc));
    }
  }
  return Status::ok();
}

// The SQ is flushed to the kernel when full, so a slot is found. A ring that keeps
// refusing submissions is broken beyond what the loop can repair: say so and stop.
io_uring_sqe* UringPoller::get_sqe() {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
    int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
      log(LogLevel::kError, "loop {}: io_uring_submit failed: {}", loop_.index(), std::strerror(-rc));
    }
    if (rc <= 0) io_uring_get_events(&ring_);  // reap completions to make room
  }
  log(LogLevel::kError, "loop {}: io_uring submission queue stuck; aborting", loop_.index());
  std::abort();
}

// A connection in the fixed table is named by its slot, so the kernel skips the fd lookup.
void UringPoller::target(io_uring_sqe* sqe, const Conn& c) {
  if (!fixed(c)) return;
  sqe->fd = static_cast<int>(c.id().index);
  sqe->flags |= IOSQE_FIXED_FILE;
}

// Queued ahead of the connection's first operation: the kernel issues a submission's
// entries in order and the update completes inline, so that operation finds the slot
// filled. It reads the fd when issued; c.fd_ stays put until the slot is freed.
void UringPoller::install_fixed(Conn& c) {
  if (!fixed(c)) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_files_update(sqe, &c.fd_, 1, static_cast<int>(c.id().index));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  prep_tagged(sqe, UringTag::for_conn(UringOp::kFiles, c.id()));
}

// Only a failure completes (IOSQE_CQE_SKIP_SUCCESS). A connection whose slot stayed empty
// sees EBADF on its next operation and closes with that error.
void UringPoller::on_files(UringTag tag, int res) {
  if (res >= 0) return;
  RINGNET_LOG_LIMITED(LogLevel::kWarn, 10, "loop {}: io_uring fixed file update or close for "
                      "slot {} failed: {}", loop_.index(), tag.index, std::strerror(-res));
}

UringPoller::ConnOps& UringPoller::ops_for(uint32_t index) {
  while (ops_.size() <= index) ops_.emplace_back();
  return ops_[index];
}

// ---------------------------------------------------------------- arming

Status UringPoller::add_wakeup(int fd) {
  wake_fd_ = fd;
  arm_wake();
  return Status::ok();
}

void UringPoller::arm_wake() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
  prep_tagged(sqe, {UringOp::kWake, 0, 0});
}

Status UringPoller::add_listener(Listener& l) {
  if (accept_armed_.size() <= l.slot) {
    accept_armed_.resize(l.slot + 1, false);
    accept_polling_.resize(l.slot + 1, false);
  }
  arm_accept(l);
  return Status::ok();
}

void UringPoller::arm_accept(Listener& l) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  prep_tagged(sqe, {UringOp::kAccept, l.slot, 0});
  accept_armed_[l.slot] = true;
}

void UringPoller::resume_accept(Listener& l) {
  if (!accept_armed_[l.slot]) arm_accept(l);
}

// A multishot accept re-armed while the process is out of descriptors completes at once
// with EMFILE, queue empty or not; so wait for a connection with a one-shot poll, and
// arm the accept when it fires (on_accept).
void UringPoller::accept_when_ready(Listener& l) {
  if (accept_armed_[l.slot]) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_poll_add(sqe, l.fd, POLLIN);
  prep_tagged(sqe, {UringOp::kAccept, l.slot, kAcceptPollGen});
  accept_armed_[l.slot] = true;
  accept_polling_[l.slot] = true;
}

// The accept stays "armed" until its cancellation completes (drain_before_exit waits).
// Submitted now: the caller closes the listener fd next, and an accept prepared but not
// yet submitted must not meet a reused fd number.
void UringPoller::remove_listener(Listener& l) {
  if (!accept_armed_[l.slot]) return;
  cancel({UringOp::kAccept, l.slot, accept_polling_[l.slot] ? kAcceptPollGen : 0u});
  io_uring_submit(&ring_);
}

Status UringPoller::add_conn(Conn& c) {
  if (c.id().index > UringTag::kMaxIndex) return Status::invalid("too many connections for tag");
  ConnOps& ops = ops_for(c.id().index);
  ops = ConnOps{};  // a reused slot starts clean (free_slot runs only when it was idle)
  ops.generation = c.id().generation;
  install_fixed(c);
  arm_recv(c, ops);
  return Status::ok();
}

// IORING_OP_CONNECT on the non-blocking socket: the kernel waits for the handshake and
// completes with 0 or -errno; the address lives in the Conn slot, which outlives the op.
int UringPoller::start_connect(Conn& c) {
  if (c.id().index > UringTag::kMaxIndex) return EMFILE;
  ConnOps& ops = ops_for(c.id().index);
  ops = ConnOps{};
  ops.generation = c.id().generation;
  install_fixed(c);
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_connect(sqe, c.fd(), c.remote_.raw(), c.remote_.length());
  target(sqe, c);
  prep_tagged(sqe, UringTag::for_conn(UringOp::kConnect, c.id()));
  ops.connect_inflight = true;
  return 0;
}

void UringPoller::on_connect(UringTag tag, int res) {
  ConnOps& ops = ops_[tag.index];
  ops.connect_inflight = false;
  Conn* c = loop_.lookup(ConnId{tag.index, tag.generation});
  if (c == nullptr || ops.detached || ops.generation != tag.generation) {
    release_if_idle(tag.index);  // closed meanwhile (timed out, cancelled)
    return;
  }
  if (res < 0) return loop_.on_connect_result(*c, -res);
  arm_recv(*c, ops);  // before on_open, as for an accepted connection
  loop_.on_connect_result(*c, 0);
}

void UringPoller::arm_recv(Conn& c, ConnOps& ops) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv_multishot(sqe, c.fd(), nullptr, 0, 0);
  target(sqe, c);
  if (bundle_) sqe->ioprio |= kRecvBundle;
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = buffers_.group();
  prep_tagged(sqe, UringTag::for_conn(UringOp::kRecv, c.id()));
  ops.recv_armed = true;
}

void UringPoller::cancel(UringTag tag) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, tag.pack(), 0);
  prep_tagged(sqe, {UringOp::kCancel, 0, 0});
}

// ---------------------------------------------------------------- send

int UringPoller::send(Conn& c) {
  ConnOps& ops = ops_for(c.id().index);
  if (ops.detached || ops.send_inflight || c.out_.empty()) return 0;  // completion carries on
  submit_send(c, ops);
  return 0;  // errors arrive with the completion
}

UringPoller::SendState* UringPoller::borrow_send_state() {
  if (free_send_states_.empty()) {
    send_states_.push_back(std::make_unique<SendState>());
    return send_states_.back().get();
  }
  SendState* st = free_send_states_.back();
  free_send_states_.pop_back();
  return st;
}

void UringPoller::return_send_state(ConnOps& ops) {
  if (ops.send == nullptr) return;
  free_send_states_.push_back(ops.send);
  ops.send = nullptr;
}

// One queued block (the common case) goes as a plain send, which needs no state kept;
// more go as one sendmsg whose iovecs live in a borrowed SendState.
void UringPoller::submit_send(Conn& c, ConnOps& ops) {
  iovec iov[kSendIov];
  size_t count = c.out_.gather(iov, kSendIov);
  io_uring_sqe* sqe = get_sqe();
  if (count == 1) {
    io_uring_prep_send(sqe, c.fd(), iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
  } else {
    if (ops.send == nullptr) ops.send = borrow_send_state();
    std::copy(iov, iov + count, ops.send->iov);
    ops.send->msg = msghdr{};
    ops.send->msg.msg_iov = ops.send->iov;
    ops.send->msg.msg_iovlen = count;
    io_uring_prep_sendmsg(sqe, c.fd(), &ops.send->msg, MSG_NOSIGNAL);
  }
  target(sqe, c);
  prep_tagged(sqe, UringTag::for_conn(UringOp::kSend, c.id()));
  ops.send_inflight = true;
}

// No send in flight means nothing races us for the socket: write directly.
void UringPoller::send_final(Conn& c) {
  ConnOps& ops = ops_for(c.id().index);
  if (ops.send_inflight) return;
  iovec iov[kSendIov];
  while (!c.out_.empty()) {
    size_t count = c.out_.gather(iov, kSendIov);
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n = ::sendmsg(c.fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) return;
    c.out_.consume(static_cast<size_t>(n));
  }
}

// ---------------------------------------------------------------- close

// Emptying the fixed slot first is safe: operations in flight keep their own reference
// to the table entry's file until they complete. A slot was filled iff the connection has
// a socket (a dial that failed before its socket, or a name still being looked up, has none).
bool UringPoller::detach(Conn& c) {
  if (fixed(c) && c.fd() >= 0) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_close_direct(sqe, c.id().index);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    prep_tagged(sqe, UringTag::for_conn(UringOp::kFiles, c.id()));
  }
  ConnOps& ops = ops_for(c.id().index);
  if (!ops.recv_armed && !ops.send_inflight && !ops.connect_inflight) return true;
  ops.detached = true;
  if (ops.connect_inflight) cancel(UringTag::for_conn(UringOp::kConnect, c.id()));
  if (ops.recv_armed) cancel(UringTag::for_conn(UringOp::kRecv, c.id()));
  if (ops.send_inflight) cancel(UringTag::for_conn(UringOp::kSend, c.id()));
  return false;  // release_if_idle frees the slot (and closes the fd) after the last CQE
}

void UringPoller::release_if_idle(uint32_t index) {
  ConnOps& ops = ops_[index];
  if (!ops.detached || ops.recv_armed || ops.send_inflight || ops.connect_inflight) return;
  ops.detached = false;
  if (Conn* c = loop_.lookup_slot(index)) loop_.free_slot(*c);
}

bool UringPoller::ops_outstanding() const {
  for (const ConnOps& ops : ops_) {
    if (ops.recv_armed || ops.send_inflight || ops.connect_inflight) return true;
  }
  for (bool armed : accept_armed_) {
    if (armed) return true;
  }
  return false;
}

// Submits the cancellations queued by the last closes and reaps completions until nothing
// refers to a socket any more (bounded: a wedged operation must not hang shutdown).
void UringPoller::drain_before_exit() {
  // Fixed slots emptied by the last closes go now, so their sockets close on this thread
  // rather than in the kernel's teardown of the ring.
  io_uring_submit(&ring_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (ops_outstanding() && std::chrono::steady_clock::now() < deadline) {
    if (Status s = poll(50); !s) break;
  }
}

// ---------------------------------------------------------------- completions

Status UringPoller::poll(int timeout_ms) {
  grew_this_poll_ = false;
  int rc;
  if (timeout_ms == 0) {
    rc = io_uring_submit_and_get_events(&ring_);
  } else if (timeout_ms < 0) {
    rc = io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts{};
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
    io_uring_cqe* unused = nullptr;
    rc = io_uring_submit_and_wait_timeout(&ring_, &unused, 1, &ts, nullptr);
  }
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
    return Status::from_errno(-rc, "io_uring_submit_and_wait");
  }
  loop_.begin_batch(io_uring_cq_ready(&ring_));
  // Each completion is copied out and marked seen before it is handled, so handlers that
  // queue more work never hold CQ slots.
  io_uring_cqe* cqe = nullptr;
  for (unsigned n = 0; n < 4 * 4096 && io_uring_peek_cqe(&ring_, &cqe) == 0; ++n) {
    uint64_t user_data = cqe->user_data;
    int res = cqe->res;
    uint32_t flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    handle(user_data, res, flags);
  }
  check_overflow();
  return Status::ok();
}

void UringPoller::check_overflow() {
  if (!io_uring_cq_has_overflow(&ring_)) return;
  bump(loop_.counters_mut().cq_overflows);
  if (!overflow_logged_) {
    overflow_logged_ = true;
    log(LogLevel::kWarn, "loop {}: io_uring CQ overflowed; completions are kept by the kernel "
                         "but the CQ ({} entries) is too small for this load",
        loop_.index(), ring_.cq.ring_entries);
  }
}

void UringPoller::handle(uint64_t user_data, int res, uint32_t flags) {
  UringTag tag = UringTag::unpack(user_data);
  switch (tag.op) {
    case UringOp::kWake:
      loop_.on_wakeup();
      arm_wake();
      return;
    case UringOp::kAccept: return on_accept(tag, res, flags);
    case UringOp::kRecv: return on_recv(tag, res, flags);
    case UringOp::kSend: return on_send(tag, res);
    case UringOp::kConnect: return on_connect(tag, res);
    case UringOp::kFiles: return on_files(tag, res);
    case UringOp::kCancel: return;  // its target's own completion settles the state
  }
}

void UringPoller::on_accept(UringTag tag, int res, uint32_t flags) {
  Listener* l = loop_.listener(tag.index);
  const bool poll = tag.generation == kAcceptPollGen;
  bool more = !poll && (flags & IORING_CQE_F_MORE) != 0;
  if (!more && tag.index < accept_armed_.size()) {
    accept_armed_[tag.index] = false;
    accept_polling_[tag.index] = false;
  }
  if (l == nullptr || l->fd < 0) {
    if (res >= 0 && !poll) ::close(res);  // the listener was closed while this was in flight
    return;
  }
  if (poll) {
    if (accept_armed_[tag.index]) return;
    // A connection is waiting: accept. A poll that failed (or was cancelled while the
    // listener stays) must neither spin nor leave the listener dead: the retry timer.
    if (res >= 0) arm_accept(*l);
    else loop_.arm_accept_retry(*l);
    return;
  }
  if (res >= 0) {
    loop_.on_accepted(*l, res);
  } else if (res == -ECANCELED || res == -EAGAIN) {
    // cancelled by remove_listener, or nothing to take: re-armed below if still listening
  } else if (!loop_.on_accept_error(*l, -res)) {
    return;  // backing off; the retry timer calls resume_accept
  }
  if (!accept_armed_[tag.index] && l->fd >= 0) arm_accept(*l);
}

void UringPoller::on_recv(UringTag tag, int res, uint32_t flags) {
  ConnOps& ops = ops_[tag.index];
  bool more = (flags & IORING_CQE_F_MORE) != 0;
  bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
  uint16_t bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  if (!more) ops.recv_armed = false;
  Conn* c = loop_.lookup(ConnId{tag.index, tag.generation});
  if (c == nullptr || ops.detached || ops.generation != tag.generation) {
    if (has_buffer) consume_buffers(nullptr, bid, res, flags);
    release_if_idle(tag.index);
    return;
  }
  if (res > 0 && has_buffer) {
    consume_buffers(c, bid, res, flags);
  } else if (res == 0) {
    if (has_buffer) consume_buffers(nullptr, bid, 0, flags);
    loop_.on_peer_eof(*c);
    return;  // EOF ends the multishot: nothing more to read
  } else if (res == -ENOBUFS) {
    bump(loop_.counters_mut().buffer_ring_empty);
    // Every receive in flight ends with its own ENOBUFS when the ring runs dry: one
    // doubling per poll, so the ring grows to the bursts it sees, not to its maximum.
    if (!grew_this_poll_ && buffers_.grow()) {
      grew_this_poll_ = true;
      loop_.counters_mut().uring_buffers_offered.store(buffers_.offered(),
                                                       std::memory_order_relaxed);
    }
  } else if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
    return loop_.close_on_error(*c, -res);
  }
  // Multishot ended (ring ran dry, cancelled, or the kernel chose to): re-arm while the
  // loop still wants input.
  c = loop_.lookup(ConnId{tag.index, tag.generation});
  if (c != nullptr && !ops.recv_armed && !ops.detached && EventLoop::wants_input(*c)) {
    arm_recv(*c, ops);
  }
}

void UringPoller::pause_reading(Conn& c) {
  ConnOps& ops = ops_for(c.id().index);
  if (ops.recv_armed) cancel(UringTag::for_conn(UringOp::kRecv, c.id()));
}

// A cancel still on its way leaves recv_armed set: its final completion re-arms.
void UringPoller::resume_reading(Conn& c) {
  ConnOps& ops = ops_for(c.id().index);
  if (!ops.recv_armed && !ops.detached && EventLoop::wants_input(c)) arm_recv(c, ops);
}

// One buffer, or with bundles several consecutive ones in ring order, each filled to the
// end but the last. With incremental consumption the first goes on where the kernel's
// previous write into it stopped, and the last stays with the kernel while it has room
// (IORING_CQE_F_BUF_MORE). Every other buffer goes back to the ring right after its bytes
// were handed to `c` (if any); an empty completion gives back (or keeps) the one it names.
void UringPoller::consume_buffers(Conn* c, uint16_t bid, int res, uint32_t flags) {
  size_t left = res > 0 ? static_cast<size_t>(res) : 0;
  if (c == nullptr && res > 0) {  // arrived for a connection closed meanwhile: refused
    bump(loop_.counters_mut().bytes_in, static_cast<uint64_t>(res));
    bump(loop_.counters_mut().inbound_dropped, static_cast<uint64_t>(res));
  }
  for (bool first = true;; first = false) {
    const size_t at = buffers_.used(bid);
    const size_t n = std::min(left, buffers_.buffer_size() - at);
    const uint16_t next = buffers_.next_in_ring(bid);
    if (c != nullptr && n > 0) on_recv_bytes(*c, buffers_.buffer(bid) + at, n);
    left -= n;
    if (left == 0 && (flags & kCqeBufMore) != 0 && buffers_.incremental() &&
        at + n < buffers_.buffer_size()) {
      buffers_.keep(bid, n);
      return;
    }
    buffers_.recycle(bid);
    if (left == 0) return;
    if (first) bump(loop_.counters_mut().recv_bundles);  // the bytes go on in the next buffer
    bid = next;
  }
}

void UringPoller::on_recv_bytes(Conn& c, const char* data, size_t n) {
  bump(loop_.counters_mut().read_calls);
  loop_.on_input(c, std::string_view(data, n));  // zero-copy when c holds no unread bytes
}

void UringPoller::on_send(UringTag tag, int res) {
  ConnOps& ops = ops_[tag.index];
  ops.send_inflight = false;
  return_send_state(ops);  // a continuation borrows again if it needs one
  Conn* c = loop_.lookup(ConnId{tag.index, tag.generation});
  if (c == nullptr || ops.detached || ops.generation != tag.generation) {
    release_if_idle(tag.index);
    return;
  }
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return submit_send(*c, ops);
    return loop_.close_on_error(*c, -res);
  }
  bump(loop_.counters_mut().write_calls);
  bump(loop_.counters_mut().bytes_out, static_cast<uint64_t>(res));
  loop_.note_flush(static_cast<uint64_t>(res));
  c->out_.consume(static_cast<size_t>(res));
  if (!c->out_.empty()) return submit_send(*c, ops);
  loop_.after_send(*c);
}


}  // namespace ringnet
