// SPDX-License-Identifier: MIT
// The load-generator thread: connect in bounded batches, then keep `pipeline` messages in
// flight per connection and verify every echoed byte. The shared Worker base and the
// edge-triggered epoll client; the io_uring client is in loadgen_uring_worker.cc.
// See loadgen_worker.h.
#include "loadgen_worker.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "echo_payload.h"

namespace bench {
namespace {

// Connects started but not finished per worker. The server's accept queue (and the SYN
// queue) is finite; overrunning it makes the kernel drop SYNs and retry after a full second.
constexpr size_t kConnectWindow = 128;
constexpr int64_t kConnectTimeoutNs = 30'000'000'000;
constexpr size_t kReadBufferBytes = 256 * 1024;
// Reads per connection per wake-up. Without a cap one connection streaming big messages
// (each echo completion sends the next) keeps the loop to itself and the others starve.
constexpr int kReadsPerWakeup = 4;
constexpr size_t kMaxWriteBytes = 256 * 1024;  // per sendmsg; bounds time spent on one conn
constexpr int kMaxEvents = 256;

// Error lines are printed for the first few only: one broken server may fail thousands of
// connections and the counters already say how many.
std::atomic<int> g_error_lines{0};
constexpr int kMaxErrorLines = 5;

}  // namespace

void report_error(const std::string& line) {
  if (g_error_lines.fetch_add(1, std::memory_order_relaxed) < kMaxErrorLines) {
    std::fprintf(stderr, "loadgen: %s\n", line.c_str());
  }
}

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool resolve_target(const LoadgenOptions& opts, Target* out, std::string* error) {
  if (!opts.unix_path.empty()) {
    auto* un = reinterpret_cast<sockaddr_un*>(&out->addr);
    if (opts.unix_path.size() >= sizeof un->sun_path) {
      *error = "unix socket path too long";
      return false;
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, opts.unix_path.c_str(), opts.unix_path.size() + 1);
    out->len = sizeof(sockaddr_un);
    out->tcp = false;
    return true;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(opts.port);
  int rc = getaddrinfo(opts.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    *error = "cannot resolve " + opts.host + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  out->tcp = true;
  freeaddrinfo(res);
  return true;
}

Worker::Worker(const LoadgenOptions& opts, const Target& target, std::vector<uint64_t> ids,
               RunControl* control)
    : opts_(opts), control_(control), target_(target) {
  conns_.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) conns_[i].id = ids[i];
  if (!opts.idle) sent_at_.assign(ids.size() * opts.pipeline, 0);
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
}

Worker::~Worker() {
  for (Conn& c : conns_) {
    if (c.fd >= 0) close(c.fd);
  }
  if (epfd_ >= 0) close(epfd_);
}

void Worker::run() {
  bool ok = epfd_ >= 0 && init() && connect_all() && echo_once();
  if (!ok) control_->stop.store(true);
  control_->ready.fetch_add(1);
  control_->ready.notify_all();
  wait_for_go();
  if (!ok || control_->stop.load()) return;
  if (opts_.idle) {
    hold_loop();
  } else {
    traffic_loop();
  }
}

void Worker::wait_for_go() {
  while (!control_->go.load()) control_->go.wait(false);
}

// Returns 1 when connected at once, 0 when in progress, -1 on error, -2 to retry later.
int Worker::start_connect(Conn& c) {
  int family = target_.addr.ss_family;
  c.fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(c, std::string("socket: ") + std::strerror(errno));
    return -1;
  }
  if (target_.tcp) {
    int one = 1;  // small messages must not wait for Nagle; latency is what we measure
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  // Registered once, for good, like the servers do: every edge is handled by state.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = index_of(c);
  epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
  int rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&target_.addr), target_.len);
  if (rc == 0) {
    c.state = State::kOpen;
    return 1;
  }
  if (errno == EINPROGRESS) {
    c.state = State::kConnecting;
    return 0;
  }
  if (errno == EAGAIN && !target_.tcp) {  // AF_UNIX backlog full: try again shortly
    close(c.fd);
    c.fd = -1;
    return -2;
  }
  fail(c, std::string("connect: ") + std::strerror(errno));
  return -1;
}

void Worker::finish_connect(Conn& c, uint32_t events, size_t* in_flight) {
  if (c.state != State::kConnecting) return;  // already open: a later edge, ignore
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    --*in_flight;
    fail(c, std::string("connect: ") + std::strerror(err));
  } else if (events & (EPOLLOUT | EPOLLIN)) {
    --*in_flight;
    c.state = State::kOpen;
    ++stats_.connected;
  }
}

// Idle mode with --idle-echo: every connection sends one message of idle_echo bytes and
// reads the verified echo back before the hold, one connection at a time (blocking poll),
// so the server is measured holding connections that have carried traffic.
bool Worker::echo_once() {
  const size_t n = opts_.idle_echo;
  if (n == 0) return true;
  const EchoPayload& payload = EchoPayload::instance();
  std::vector<char> got(n);
  auto give_up = [this](Conn& c, const char* why) {
    fail(c, why);
    return false;
  };
  for (Conn& c : conns_) {
    std::string_view msg = payload.slice(c.id, 0, 0, n);
    size_t sent = 0, recvd = 0;
    int64_t deadline = monotonic_ns() + kConnectTimeoutNs;
    while (recvd < n) {
      if (monotonic_ns() > deadline) return give_up(c, "idle echo timed out");
      pollfd p{c.fd, static_cast<short>(POLLIN | (sent < n ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, 100) < 0 && errno != EINTR) return give_up(c, "poll failed");
      if (sent < n && (p.revents & POLLOUT)) {
        ssize_t k = ::send(c.fd, msg.data() + sent, n - sent, MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN) return give_up(c, "idle echo send failed");
        if (k > 0) sent += static_cast<size_t>(k);
      }
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t k = ::recv(c.fd, got.data() + recvd, n - recvd, 0);
        if (k == 0 || (k < 0 && errno != EAGAIN)) return give_up(c, "closed during idle echo");
        if (k > 0) recvd += static_cast<size_t>(k);
      }
    }
    if (!payload.matches(c.id, 0, 0, got.data(), n)) return give_up(c, "idle echo differs");
  }
  return true;
}

bool Worker::connect_all() {
  size_t next = 0, in_flight = 0;
  int64_t deadline = monotonic_ns() + kConnectTimeoutNs;
  std::array<epoll_event, kMaxEvents> events;
  while (stats_.connected + stats_.conn_errors < conns_.size()) {
    if (stats_.conn_errors > 0 || control_->stop.load()) return false;
    bool retry = false;
    while (in_flight < kConnectWindow && next < conns_.size()) {
      int rc = start_connect(conns_[next]);
      if (rc == -1) return false;
      if (rc == -2) {
        retry = true;
        break;
      }
      ++next;
      if (rc == 1) {
        ++stats_.connected;
      } else {
        ++in_flight;
      }
    }
    int n = epoll_wait(epfd_, events.data(), kMaxEvents, retry ? 1 : 100);
    for (int i = 0; i < n; ++i) {
      finish_connect(conns_[events[i].data.u64], events[i].events, &in_flight);
    }
    if (monotonic_ns() > deadline) {
      report_error("timed out connecting (" + std::to_string(stats_.connected) + " of " +
                   std::to_string(conns_.size()) + " connected)");
      ++stats_.conn_errors;
      return false;
    }
  }
  return stats_.conn_errors == 0;
}

void Worker::begin_traffic() {
  window_start_ = control_->window_start_ns.load();
  int64_t now = monotonic_ns();
  for (Conn& c : conns_) {
    for (size_t k = 0; k < opts_.pipeline; ++k) *sent_at(c, k) = now;
    flush(c);
  }
}

bool Worker::window_over() const {
  return monotonic_ns() >= control_->window_end_ns.load(std::memory_order_relaxed) ||
         control_->stop.load(std::memory_order_relaxed);
}

void Worker::absorb(Conn& c, const char* data, size_t n, int64_t now) {
  if (opts_.idle) return fail(c, "server sent data on an idle connection");
  const EchoPayload& payload = EchoPayload::instance();
  const size_t size = opts_.size;
  // A send in flight may already have reached the server: its bytes count as sent.
  if (c.rx_seq * size + c.rx_off + n > c.tx_seq * size + c.tx_off + c.tx_pending) {
    return fail(c, "server echoed more bytes than were sent");
  }
  uint64_t completed = 0;
  while (n > 0) {
    size_t k = std::min(n, size - c.rx_off);
    if (!c.rx_bad && !payload.matches(c.id, c.rx_seq, c.rx_off, data, k)) c.rx_bad = true;
    c.rx_off += k;
    data += k;
    n -= k;
    if (c.rx_off == size) {
      complete_message(c, now);
      ++completed;
    }
  }
  if (completed > 0) flush(c);
}

void Worker::complete_message(Conn& c, int64_t now) {
  int64_t* slot = sent_at(c, c.rx_seq);
  int64_t end = control_->window_end_ns.load(std::memory_order_relaxed);
  if (now >= window_start_ && now < end) {
    ++stats_.messages;
    stats_.latency.record(static_cast<uint64_t>(now - *slot));
  }
  if (c.rx_bad) {
    ++stats_.verify_errors;
    report_error("verification failed: conn " + std::to_string(c.id) + " message " +
                 std::to_string(c.rx_seq));
    c.rx_bad = false;
  }
  ++c.rx_seq;
  c.rx_off = 0;
  // Message rx_seq + pipeline - 1 is now allowed out; it takes the slot just freed.
  *slot = now;
}

size_t Worker::next_send(const Conn& c, size_t max_bytes, iovec* iov, size_t* bytes) const {
  const EchoPayload& payload = EchoPayload::instance();
  const size_t size = opts_.size;
  const uint64_t limit = c.rx_seq + opts_.pipeline;  // messages allowed in flight
  size_t cnt = 0;
  *bytes = 0;
  uint64_t seq = c.tx_seq;
  size_t off = c.tx_off;
  while (cnt < kMaxIov && *bytes < max_bytes && seq < limit) {
    size_t want = std::min(size - off, max_bytes - *bytes);
    std::string_view s = payload.slice(c.id, seq, off, want);
    iov[cnt++] = {const_cast<char*>(s.data()), s.size()};
    *bytes += s.size();
    off += s.size();
    if (off == size) ++seq, off = 0;
  }
  return cnt;
}

void Worker::advance_sent(Conn& c, size_t n) {
  uint64_t pos = c.tx_off + static_cast<uint64_t>(n);
  c.tx_seq += pos / opts_.size;
  c.tx_off = pos % opts_.size;
}

void Worker::fail(Conn& c, const std::string& why) {
  ++stats_.conn_errors;
  report_error("conn " + std::to_string(c.id) + ": " + why);
  close_conn(c);
}

void Worker::close_conn(Conn& c) {
  if (c.fd >= 0) close(c.fd);  // closing also removes it from the epoll set
  c.fd = -1;
  c.state = State::kClosed;
}

namespace {

// The edge-triggered epoll client. Sockets stay registered (from the connect phase) for
// good, like the servers do: every edge is handled by state.
class EpollWorker final : public Worker {
 public:
  EpollWorker(const LoadgenOptions& opts, const Target& target, std::vector<uint64_t> ids,
              RunControl* control)
      : Worker(opts, target, std::move(ids), control), rbuf_(kReadBufferBytes) {}

 private:
  void traffic_loop() override;
  void hold_loop() override;
  void flush(Conn& c) override;
  void on_traffic_event(Conn& c, uint32_t events);
  void read_echoes(Conn& c);
  void serve_still_readable();
  int epoll_wait_until(int64_t deadline_ns);

  std::vector<char> rbuf_;
  std::vector<uint32_t> still_readable_;  // hit the per-wakeup read cap; data may remain
  std::vector<uint32_t> serving_;
};

}  // namespace

std::unique_ptr<Worker> make_epoll_worker(const LoadgenOptions& opts, const Target& target,
                                          std::vector<uint64_t> ids, RunControl* control) {
  return std::make_unique<EpollWorker>(opts, target, std::move(ids), control);
}

int EpollWorker::epoll_wait_until(int64_t deadline_ns) {
  std::array<epoll_event, kMaxEvents> events;
  int64_t left_ms = (deadline_ns - monotonic_ns()) / 1'000'000 + 1;
  int timeout = static_cast<int>(std::clamp<int64_t>(left_ms, 0, 100));
  if (!still_readable_.empty()) timeout = 0;  // they have data now: do not block
  int n = epoll_wait(epfd_, events.data(), kMaxEvents, timeout);
  for (int i = 0; i < n; ++i) {
    Conn& c = conns_[events[i].data.u64];
    if (opts_.idle) {
      // Nothing was sent, so any event but a writable edge means the server acted.
      if (c.state == State::kOpen && (events[i].events & ~uint32_t{EPOLLOUT})) read_echoes(c);
    } else {
      on_traffic_event(c, events[i].events);
    }
  }
  serve_still_readable();
  return n;
}

void EpollWorker::hold_loop() {
  while (!control_->stop.load(std::memory_order_relaxed)) {
    epoll_wait_until(monotonic_ns() + 100'000'000);
  }
}

void EpollWorker::traffic_loop() {
  begin_traffic();
  while (!window_over()) epoll_wait_until(control_->window_end_ns.load());
}

void EpollWorker::on_traffic_event(Conn& c, uint32_t events) {
  if (c.state != State::kOpen) return;
  // Read first: completed echoes release pipeline slots, and the flush that follows them
  // then also covers whatever an EPOLLOUT edge in the same event would have sent.
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_echoes(c);
  if (c.state == State::kOpen && (events & EPOLLOUT)) flush(c);
}

// Connections that hit the read cap last round, served after this round's events (fresh
// events for them may have read them already; then read() just says EAGAIN).
void EpollWorker::serve_still_readable() {
  if (still_readable_.empty()) return;
  serving_.swap(still_readable_);
  for (uint32_t index : serving_) {
    Conn& c = conns_[index];
    if (c.state == State::kOpen) read_echoes(c);
  }
  serving_.clear();
}

void EpollWorker::read_echoes(Conn& c) {
  for (int reads = 0;; ++reads) {
    if (reads == kReadsPerWakeup) {
      still_readable_.push_back(static_cast<uint32_t>(index_of(c)));
      return;
    }
    ssize_t r = read(c.fd, rbuf_.data(), rbuf_.size());
    if (r > 0) {
      absorb(c, rbuf_.data(), static_cast<size_t>(r), monotonic_ns());
      // A short read emptied the socket: later data raises a new edge, so skip the
      // extra read() that would only return EAGAIN.
      if (c.state != State::kOpen || static_cast<size_t>(r) < rbuf_.size()) return;
    } else if (r == 0) {
      return fail(c, "server closed the connection");
    } else if (errno == EAGAIN) {
      return;
    } else if (errno != EINTR) {
      return fail(c, std::string("read: ") + std::strerror(errno));
    }
  }
}

void EpollWorker::flush(Conn& c) {
  for (;;) {
    std::array<iovec, kMaxIov> iov;
    size_t bytes = 0;
    size_t cnt = next_send(c, kMaxWriteBytes, iov.data(), &bytes);
    if (cnt == 0) return;
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = cnt;
    ssize_t w = sendmsg(c.fd, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) fail(c, std::string("send: ") + std::strerror(errno));
      return;  // EAGAIN: the next EPOLLOUT edge resumes here
    }
    advance_sent(c, static_cast<size_t>(w));
    if (static_cast<size_t>(w) < bytes) return;  // socket buffer full
  }
}

}  // namespace bench
