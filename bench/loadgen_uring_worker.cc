// SPDX-License-Identifier: MIT
// The io_uring client: the same job as the epoll client (loadgen_worker.cc), written
// against liburing directly so it shares nothing with the engine under test.
//
// One ring per worker thread. After the shared connect phase every connection gets one
// multishot recv that picks buffers from a provided-buffer ring, and at most one send in
// flight (sendmsg over up to kMaxIov payload slices, or send for a single slice). CQE
// handlers only queue SQEs; each loop iteration submits them and waits in one
// io_uring_enter (io_uring_submit_and_wait_timeout). Received bytes are verified in place
// and the buffer goes straight back to the ring.
#include <fcntl.h>
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>

#include "loadgen_worker.h"

namespace bench {
namespace {

constexpr unsigned kBufGroup = 0;
constexpr size_t kMinBufBytes = 4096;
constexpr size_t kMaxBufBytes = 64 * 1024;  // loopback TCP delivers up to ~64 KiB at once
constexpr size_t kMinBufs = 256;
constexpr size_t kMaxBufs = 32768;          // kernel limit on buffer ring entries
constexpr size_t kMaxBufMemory = 64 << 20;  // per worker; pages are touched only when used
// Bytes offered per send. The epoll client caps a sendmsg at 256 KiB to bound a synchronous
// loop; here the kernel takes what fits and returns, and with one send in flight a small
// cap would cost a loop iteration per 256 KiB (measured: 10 x 1 MiB ran ~15% slower).
constexpr size_t kMaxSendBytes = 4 << 20;
constexpr unsigned kMaxSqEntries = 4096;
constexpr unsigned kMaxCqEntries = 65536;
constexpr int64_t kMaxWaitNs = 100'000'000;  // wake up to notice stop even when idle

// user_data: connection index << 1 | operation.
constexpr uint64_t kOpRecv = 0;
constexpr uint64_t kOpSend = 1;

std::string errno_text(int negative_errno) { return std::strerror(-negative_errno); }

// Maps anonymous memory; nullptr on failure.
void* map_anonymous(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// A provided-buffer ring: `count` buffers of `size` bytes in group kBufGroup. liburing 2.3
// has no io_uring_setup_buf_ring, so the ring memory is mapped and registered here.
class BufferRing {
 public:
  ~BufferRing() {
    if (ring_) munmap(ring_, count_ * sizeof(io_uring_buf));
    if (data_) munmap(data_, count_ * size_);
  }

  // Returns 0 or a negative errno.
  int setup(io_uring* uring, size_t count, size_t size) {
    count_ = count;
    size_ = size;
    ring_ = static_cast<io_uring_buf_ring*>(map_anonymous(count * sizeof(io_uring_buf)));
    data_ = static_cast<char*>(map_anonymous(count * size));
    if (!ring_ || !data_) return -ENOMEM;
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(ring_);
    reg.ring_entries = static_cast<uint32_t>(count);
    reg.bgid = kBufGroup;
    int rc = io_uring_register_buf_ring(uring, &reg, 0);
    if (rc < 0) return rc;
    io_uring_buf_ring_init(ring_);
    for (size_t bid = 0; bid < count; ++bid) give_back(static_cast<unsigned>(bid));
    publish();
    return 0;
  }

  const char* data(unsigned bid) const { return data_ + size_t{bid} * size_; }

  // Queues buffer bid for reuse; the kernel sees it after publish().
  void give_back(unsigned bid) {
    io_uring_buf_ring_add(ring_, data_ + size_t{bid} * size_, static_cast<unsigned>(size_),
                          static_cast<unsigned short>(bid), io_uring_buf_ring_mask(count_),
                          static_cast<int>(unpublished_++));
  }

  void publish() {
    if (unpublished_ == 0) return;
    io_uring_buf_ring_advance(ring_, static_cast<int>(unpublished_));
    unpublished_ = 0;
  }

 private:
  io_uring_buf_ring* ring_ = nullptr;
  char* data_ = nullptr;
  size_t count_ = 0;
  size_t size_ = 0;
  unsigned unpublished_ = 0;
};

// One ring per thread, so the cheaper single-issuer, deferred-task-run mode is tried first
// (task work then runs only inside our io_uring_enter); older kernels refuse those flags.
int init_ring(io_uring* ring, unsigned sq_entries, unsigned cq_entries) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = cq_entries;
  int rc = io_uring_queue_init_params(sq_entries, ring, &p);
  if (rc == -EINVAL) {
    p = {};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    rc = io_uring_queue_init_params(sq_entries, ring, &p);
  }
  return rc;
}

class UringWorker final : public Worker {
 public:
  UringWorker(const LoadgenOptions& opts, const Target& target, std::vector<uint64_t> ids,
              RunControl* control)
      : Worker(opts, target, std::move(ids), control) {}

  ~UringWorker() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);  // cancels what is still in flight
  }

 private:
  // Where a connection's sendmsg describes its slices; stable until the send completes.
  struct SendSlot {
    msghdr msg{};
    std::array<iovec, kMaxIov> iov;
  };

  bool init() override;
  void traffic_loop() override;
  void hold_loop() override;
  void flush(Conn& c) override;
  void close_conn(Conn& c) override;

  void start_receiving();
  io_uring_sqe* next_sqe();
  void arm_recv(Conn& c);
  bool submit_and_handle(int64_t deadline_ns);
  void on_recv(Conn& c, int res, unsigned flags);
  void on_send(Conn& c, int res);
  void worker_error(const std::string& why);

  io_uring ring_{};
  bool ring_ok_ = false;
  BufferRing buffers_;
  std::vector<SendSlot> send_slots_;  // one per connection; empty in idle mode
};

bool UringWorker::init() {
  size_t n = std::max<size_t>(conns_.size(), 1);
  // Room for a send and a recv re-arm per connection per iteration; next_sqe() submits
  // early if that is not enough.
  unsigned sq = static_cast<unsigned>(std::min<size_t>(std::bit_ceil(2 * n), kMaxSqEntries));
  size_t buf_bytes = std::bit_ceil(
      std::clamp(opts_.size * opts_.pipeline, kMinBufBytes, kMaxBufBytes));
  // Every connection may complete a recv between two reaps: about two buffers each.
  size_t buf_count = std::bit_ceil(std::clamp(2 * n, kMinBufs, kMaxBufs));
  while (buf_count > kMinBufs && buf_count * buf_bytes > kMaxBufMemory) buf_count /= 2;
  unsigned cq = static_cast<unsigned>(
      std::min<size_t>(std::max<size_t>(4 * sq, 2 * buf_count), kMaxCqEntries));

  int rc = init_ring(&ring_, sq, cq);
  if (rc < 0) {
    worker_error("io_uring_queue_init: " + errno_text(rc));
    return false;
  }
  ring_ok_ = true;
  rc = buffers_.setup(&ring_, buf_count, buf_bytes);
  if (rc < 0) {
    worker_error("io_uring buffer ring: " + errno_text(rc));
    return false;
  }
  if (!opts_.idle) send_slots_.resize(conns_.size());
  return true;
}

void UringWorker::worker_error(const std::string& why) {
  ++stats_.conn_errors;
  report_error(why);
}

// The connect phase used epoll; drop that set (it would still be woken by every packet)
// and put one multishot recv on each connection.
void UringWorker::start_receiving() {
  close(epfd_);
  epfd_ = -1;
  for (Conn& c : conns_) {
    if (c.state != State::kOpen) continue;
    // Blocking sockets: io_uring then waits for readiness itself instead of ever handing
    // -EAGAIN back to us.
    int flags = fcntl(c.fd, F_GETFL);
    if (flags >= 0) fcntl(c.fd, F_SETFL, flags & ~O_NONBLOCK);
    arm_recv(c);
  }
}

void UringWorker::traffic_loop() {
  start_receiving();
  begin_traffic();
  while (!window_over()) {
    if (!submit_and_handle(control_->window_end_ns.load())) return;
  }
}

void UringWorker::hold_loop() {
  start_receiving();
  while (!control_->stop.load(std::memory_order_relaxed)) {
    if (!submit_and_handle(monotonic_ns() + kMaxWaitNs)) return;
  }
}

io_uring_sqe* UringWorker::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {  // queue full: submit what is there and take a fresh entry
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void UringWorker::arm_recv(Conn& c) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return fail(c, "io_uring submission queue stuck");
  io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufGroup;
  io_uring_sqe_set_data64(sqe, index_of(c) << 1 | kOpRecv);
}

void UringWorker::flush(Conn& c) {
  if (c.state != State::kOpen || c.tx_pending > 0) return;  // one send at a time
  SendSlot& slot = send_slots_[index_of(c)];
  size_t bytes = 0;
  size_t cnt = next_send(c, kMaxSendBytes, slot.iov.data(), &bytes);
  if (cnt == 0) return;
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return fail(c, "io_uring submission queue stuck");
  if (cnt == 1) {  // plain send: the kernel need not copy a msghdr
    io_uring_prep_send(sqe, c.fd, slot.iov[0].iov_base, slot.iov[0].iov_len, MSG_NOSIGNAL);
  } else {
    slot.msg = {};
    slot.msg.msg_iov = slot.iov.data();
    slot.msg.msg_iovlen = cnt;
    io_uring_prep_sendmsg(sqe, c.fd, &slot.msg, MSG_NOSIGNAL);
  }
  io_uring_sqe_set_data64(sqe, index_of(c) << 1 | kOpSend);
  c.tx_pending = bytes;
}

// A recv or send may still be in flight and holds the socket open past close(); shutdown
// ends them now (their CQEs then find the connection closed and are dropped).
void UringWorker::close_conn(Conn& c) {
  if (c.fd >= 0) shutdown(c.fd, SHUT_RDWR);
  Worker::close_conn(c);
}

// Submits queued SQEs, waits for at least one CQE (or the deadline, at most kMaxWaitNs)
// and handles every CQE there is. False on a ring failure (counted and reported).
bool UringWorker::submit_and_handle(int64_t deadline_ns) {
  int64_t wait_ns = std::clamp<int64_t>(deadline_ns - monotonic_ns(), 1000, kMaxWaitNs);
  __kernel_timespec ts{wait_ns / 1'000'000'000, wait_ns % 1'000'000'000};
  io_uring_cqe* first = nullptr;
  int rc = io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
    worker_error("io_uring_enter: " + errno_text(rc));
    return false;
  }
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    if (cqe->user_data == LIBURING_UDATA_TIMEOUT) continue;  // liburing's own, old kernels
    Conn& c = conns_[cqe->user_data >> 1];
    if ((cqe->user_data & 1) == kOpSend) {
      on_send(c, cqe->res);
    } else {
      on_recv(c, cqe->res, cqe->flags);
    }
  }
  buffers_.publish();  // before the next enter, so multishot recvs keep finding buffers
  io_uring_cq_advance(&ring_, seen);
  return true;
}

void UringWorker::on_recv(Conn& c, int res, unsigned flags) {
  if (flags & IORING_CQE_F_BUFFER) {
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    if (res > 0 && c.state == State::kOpen) {
      absorb(c, buffers_.data(bid), static_cast<size_t>(res), monotonic_ns());
    }
    buffers_.give_back(bid);
  }
  if (c.state != State::kOpen) return;
  if (res == 0) return fail(c, "server closed the connection");
  // -ENOBUFS: the buffer ring ran dry between two reaps; it is refilled by now.
  if (res < 0 && res != -ENOBUFS) return fail(c, "recv: " + errno_text(res));
  if (!(flags & IORING_CQE_F_MORE)) arm_recv(c);  // the multishot recv ended: re-arm
}

void UringWorker::on_send(Conn& c, int res) {
  c.tx_pending = 0;
  if (c.state != State::kOpen) return;
  if (res < 0) return fail(c, "send: " + errno_text(res));
  if (res == 0) return fail(c, "send made no progress");
  advance_sent(c, static_cast<size_t>(res));
  flush(c);  // the rest of a short send, plus whatever completed echoes allowed meanwhile
}

}  // namespace

std::unique_ptr<Worker> make_uring_worker(const LoadgenOptions& opts, const Target& target,
                                          std::vector<uint64_t> ids, RunControl* control) {
  return std::make_unique<UringWorker>(opts, target, std::move(ids), control);
}

bool uring_available(std::string* why) {
  io_uring ring;
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    *why = "io_uring_queue_init: " + errno_text(rc);
    return false;
  }
  BufferRing probe;
  rc = probe.setup(&ring, 8, kMinBufBytes);
  io_uring_queue_exit(&ring);
  if (rc < 0) *why = "io_uring buffer ring: " + errno_text(rc);
  return rc == 0;
}

}  // namespace bench
