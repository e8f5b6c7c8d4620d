// SPDX-License-Identifier: MIT
// The soak client's connections: connect pacing, the five roles, byte checking.
// See soak_driver.h.
#include "soak_driver.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "echo_payload.h"

namespace soak {
namespace {

// Connects started and not finished. The server's accept queue is finite; overrunning it
// makes the kernel drop SYNs and retry a second later.
constexpr size_t kConnectWindow = 256;
constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr int kReadsPerWakeup = 4;             // then the connection waits its turn
constexpr size_t kMaxWriteBytes = 256 * 1024;  // per sendmsg
constexpr size_t kMaxIov = 64;
constexpr int kMaxEvents = 512;
constexpr int kSlowReceiveBuffer = 16 * 1024;  // SO_RCVBUF of slow readers (kernel doubles it)
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kReopenDelayNs = 100 * kMs;  // a persistent slot after a failure
constexpr uint64_t kBlock = 64 * 1024;         // a stream is 64 KiB payload blocks
constexpr int kMaxErrorLines = 10;

// Bytes [pos, pos + len) of connection `id`'s stream, cut at the next block boundary.
std::string_view stream_slice(uint64_t id, uint64_t pos, uint64_t len) {
  uint64_t off = pos % kBlock;
  return bench::EchoPayload::instance().slice(id, pos / kBlock, off,
                                              std::min(len, kBlock - off));
}

// How many of data[0, n) differ from the stream at pos.
uint64_t mismatches(uint64_t id, uint64_t pos, const char* data, size_t n) {
  uint64_t bad = 0;
  while (n > 0) {
    std::string_view want = stream_slice(id, pos, n);
    if (std::memcmp(data, want.data(), want.size()) != 0) {
      for (size_t i = 0; i < want.size(); ++i) bad += data[i] != want[i];
    }
    data += want.size();
    pos += want.size();
    n -= want.size();
  }
  return bad;
}

uint64_t key(uint32_t index, uint32_t gen) { return uint64_t{gen} << 32 | index; }

}  // namespace

const char* role_name(Role r) {
  static constexpr const char* kNames[kRoleCount] = {"echo", "pipeline", "slow", "churn",
                                                     "reset"};
  return kNames[static_cast<int>(r)];
}

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint64_t Totals::error_count() const {
  uint64_t n = 0;
  for (const auto& [kind, count] : errors) n += count;
  return n;
}

Driver::Driver(const DriverOptions& opts)
    : opts_(opts), next_id_(opts.id_base), rng_(opts.seed), rbuf_(kReadBufferBytes) {}

Driver::~Driver() {
  for (Slot& s : slots_) {
    if (s.fd >= 0) close(s.fd);
  }
  if (epfd_ >= 0) close(epfd_);
}

bool Driver::init(std::string* error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(opts_.port);
  int rc = getaddrinfo(opts_.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    *error = "cannot resolve " + opts_.host + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  addr_len_ = res->ai_addrlen;
  freeaddrinfo(res);
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    *error = std::string("epoll_create1: ") + std::strerror(errno);
    return false;
  }
  bench::EchoPayload::instance();  // build the table before the clock matters
  assign_roles();
  tokens_at_ns_ = monotonic_ns();
  return true;
}

// Slot counts follow the mix (rounding leftovers go to echo); the order is shuffled so
// every role ramps up from the start.
void Driver::assign_roles() {
  unsigned sum = 0;
  for (unsigned p : opts_.mix) sum += p;
  std::vector<Role> roles;
  for (int r = 1; r < kRoleCount; ++r) {
    roles.insert(roles.end(), opts_.conns * opts_.mix[r] / sum, static_cast<Role>(r));
  }
  roles.insert(roles.end(), opts_.conns - roles.size(), Role::kEcho);
  std::shuffle(roles.begin(), roles.end(), rng_);
  slots_.resize(roles.size());
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    slots_[i].role = roles[i];
    ++stats(slots_[i]).slots;
    requeue(slots_[i]);
  }
}

void Driver::requeue(Slot& s) {
  s.state = State::kIdle;
  if (s.queued) return;
  s.queued = true;
  (persistent(s) ? persistent_queue_ : churn_queue_).push_back(index_of(s));
}

// Opens what the connect window allows: persistent slots first (the initial ramp and
// reconnects after a failure), then churn and reset slots as the rate allows.
void Driver::pump_connects() {
  if (draining_) return;
  int64_t now = monotonic_ns();
  double cap = std::max(1.0, opts_.churn_rate / 20);  // bursts of at most 50 ms worth
  tokens_ = std::min(cap, tokens_ + (now - tokens_at_ns_) * opts_.churn_rate / 1e9);
  tokens_at_ns_ = now;
  while (connecting_ < kConnectWindow && !persistent_queue_.empty()) {
    uint32_t index = persistent_queue_.front();
    persistent_queue_.pop_front();
    open_conn(index);
  }
  while (connecting_ < kConnectWindow && !churn_queue_.empty() && tokens_ >= 1) {
    tokens_ -= 1;
    uint32_t index = churn_queue_.front();
    churn_queue_.pop_front();
    open_conn(index);
  }
}

void Driver::open_conn(uint32_t index) {
  Slot& s = slots_[index];
  s.queued = false;
  ++s.gen;
  s.id = next_id_++;
  s.tx = s.rx = s.tx_limit = 0;
  s.wr_shut = s.await_eof = s.thinking = false;
  s.fd = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return fail(s, std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (s.role == Role::kSlow) {
    setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &kSlowReceiveBuffer, sizeof kSlowReceiveBuffer);
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = key(index, s.gen);
  epoll_ctl(epfd_, EPOLL_CTL_ADD, s.fd, &ev);
  ++totals_.connects;
  s.state = State::kConnecting;
  ++connecting_;
  if (connect(s.fd, reinterpret_cast<const sockaddr*>(&addr_), addr_len_) == 0) {
    --connecting_;
    return on_connected(s);
  }
  if (errno != EINPROGRESS) fail(s, std::string("connect: ") + std::strerror(errno));
}

void Driver::poll(int timeout_ms) {
  pump_connects();
  if (!still_readable_.empty()) {
    timeout_ms = 0;
  } else if (!timers_.empty()) {
    int64_t wait_ms = (timers_.top().when_ns - monotonic_ns() + kMs - 1) / kMs;
    timeout_ms = static_cast<int>(std::clamp<int64_t>(wait_ms, 0, timeout_ms));
  }
  std::array<epoll_event, kMaxEvents> events;
  int n = epoll_wait(epfd_, events.data(), kMaxEvents, timeout_ms);
  for (int i = 0; i < n; ++i) {
    auto index = static_cast<uint32_t>(events[i].data.u64);
    auto gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
    // A connection closed earlier in this batch may have left events behind.
    if (slots_[index].gen == gen) on_event(index, events[i].events);
  }
  run_timers();
  serve_still_readable();
  pump_connects();
}

void Driver::on_event(uint32_t index, uint32_t events) {
  Slot& s = slots_[index];
  if (s.state == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(s, std::string("connect: ") + std::strerror(err));
    if (!(events & EPOLLOUT)) return;
    --connecting_;
    return on_connected(s);
  }
  if (s.state != State::kOpen) return;
  const uint32_t gen = s.gen;
  if (s.role == Role::kReset) {
    // It reads nothing; the server ending it first is not part of the plan.
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) return fail(s, "reset role: server ended it first");
  } else if (s.role != Role::kSlow || draining_) {
    // Slow readers read on their timer until the drain.
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      read_some(s, rbuf_.size(), kReadsPerWakeup);
    }
  }
  if (s.gen == gen && s.state == State::kOpen && (events & EPOLLOUT)) flush(s);
}

void Driver::on_connected(Slot& s) {
  s.state = State::kOpen;
  totals_.peak_open = std::max(totals_.peak_open, ++totals_.open_now);
  ++totals_.opened;
  ++stats(s).opened;
  if (draining_) return s.role == Role::kReset ? reset(s) : release(s, true);
  switch (s.role) {
    case Role::kEcho:
      s.tx_limit = next_request_size();
      break;
    case Role::kPipeline:
      if (s.msg_size == 0) s.msg_size = static_cast<uint32_t>(rand(16, 1024));
      s.tx_limit = uint64_t{s.msg_size} * opts_.pipeline_depth;
      break;
    case Role::kSlow:
      s.tx_limit = opts_.slow_window;
      schedule(s, TimerKind::kSlowRead, static_cast<int64_t>(rand(5, 50)) * kMs);
      break;
    case Role::kChurn:
      s.exchanges_left = static_cast<uint32_t>(rand(1, 3));
      s.variant = static_cast<uint8_t>(rand(0, 1));
      s.thinking = true;
      return schedule(s, TimerKind::kThink, static_cast<int64_t>(rand(0, 1000)) * kMs);
    case Role::kReset:
      s.variant = static_cast<uint8_t>(rand(0, 2));
      if (s.variant == 0) return reset(s);
      s.thinking = true;
      return schedule(s, TimerKind::kThink, static_cast<int64_t>(rand(0, 2000)) * kMs);
  }
  flush(s);
}

// A churn or reset connection's pause is over: its next request (or, while draining,
// its end).
void Driver::after_think(Slot& s) {
  s.thinking = false;
  if (s.role == Role::kReset) {
    if (draining_) return reset(s);
    s.tx_limit = s.variant == 1 ? rand(1, 4096) : rand(256 * 1024, 2 * 1024 * 1024);
    schedule(s, TimerKind::kReset,
             static_cast<int64_t>(s.variant == 1 ? rand(0, 20) : rand(20, 200)) * kMs);
  } else {
    if (draining_) return finish(s);
    s.tx_limit += next_request_size();
  }
  flush(s);
}

// Reads until EAGAIN (or EOF, or an error), at most max_reads times of max_bytes; a
// connection cut short by max_reads == kReadsPerWakeup is served again before blocking.
void Driver::read_some(Slot& s, size_t max_bytes, int max_reads) {
  const uint32_t gen = s.gen;
  for (int reads = 0;; ++reads) {
    if (reads == max_reads) {
      if (max_reads == kReadsPerWakeup) still_readable_.push_back(key(index_of(s), gen));
      return;
    }
    ssize_t r = read(s.fd, rbuf_.data(), max_bytes);
    if (r > 0) {
      absorb(s, rbuf_.data(), static_cast<size_t>(r));
      if (s.gen != gen || s.state != State::kOpen) return;
    } else if (r == 0) {
      if (s.await_eof && s.rx == s.tx) return release(s, true);
      return fail(s, "server closed the connection early");
    } else if (errno == EAGAIN) {
      return;
    } else if (errno != EINTR) {
      return fail(s, std::string("read: ") + std::strerror(errno));
    }
  }
}

void Driver::absorb(Slot& s, const char* data, size_t n) {
  totals_.bytes_received += n;
  if (n > s.tx - s.rx) {
    totals_.corrupted_bytes += n - (s.tx - s.rx);
    return fail(s, "server sent more bytes than it was sent");
  }
  uint64_t bad = mismatches(s.id, s.rx, data, n);
  if (s.role == Role::kPipeline) {
    uint64_t done = (s.rx + n) / s.msg_size - s.rx / s.msg_size;
    stats(s).msgs += done;
    totals_.msgs += done;
  }
  s.rx += n;
  totals_.bytes_verified += n - bad;
  stats(s).bytes_verified += n - bad;
  if (bad > 0) {
    totals_.corrupted_bytes += bad;
    return fail(s, "echoed bytes differ from the bytes sent");
  }
  progress(s);
}

// After bytes came back (or the connection opened): complete messages, widen what may be
// sent, or end the connection as planned.
void Driver::progress(Slot& s) {
  switch (s.role) {
    case Role::kEcho:
      if (s.rx < s.tx_limit) break;
      ++stats(s).msgs;
      ++totals_.msgs;
      if (draining_) return finish(s);
      s.tx_limit += next_request_size();
      break;
    case Role::kChurn:
      if (s.rx < s.tx_limit || s.await_eof) break;
      ++stats(s).msgs;
      ++totals_.msgs;
      if (--s.exchanges_left == 0 || draining_) return finish(s);
      s.thinking = true;
      return schedule(s, TimerKind::kThink, static_cast<int64_t>(rand(0, 1000)) * kMs);
    case Role::kPipeline:
      if (!draining_) s.tx_limit = (s.rx / s.msg_size + opts_.pipeline_depth) * s.msg_size;
      else if (s.rx == s.tx_limit) return finish(s);
      break;
    case Role::kSlow:
      if (!draining_) s.tx_limit = s.rx + opts_.slow_window;
      else if (s.rx == s.tx_limit) return finish(s);
      break;
    case Role::kReset:
      break;
  }
  flush(s);
}

void Driver::flush(Slot& s) {
  while (s.state == State::kOpen && s.tx < s.tx_limit) {
    std::array<iovec, kMaxIov> iov;
    size_t cnt = 0, bytes = 0;
    for (uint64_t pos = s.tx; cnt < kMaxIov && bytes < kMaxWriteBytes && pos < s.tx_limit;) {
      std::string_view v = stream_slice(s.id, pos, std::min<uint64_t>(s.tx_limit - pos,
                                                                      kMaxWriteBytes - bytes));
      iov[cnt++] = {const_cast<char*>(v.data()), v.size()};
      bytes += v.size();
      pos += v.size();
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = cnt;
    ssize_t w = sendmsg(s.fd, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) fail(s, std::string("send: ") + std::strerror(errno));
      return;  // EAGAIN: the next EPOLLOUT edge resumes here
    }
    s.tx += static_cast<uint64_t>(w);
    totals_.bytes_sent += static_cast<uint64_t>(w);
    stats(s).bytes_sent += static_cast<uint64_t>(w);
    if (s.role == Role::kReset) totals_.bytes_sent_reset += static_cast<uint64_t>(w);
    if (static_cast<size_t>(w) < bytes) return;  // socket buffer full
  }
  // Half-closing churn: our FIN right behind the last request; the echo must still come.
  if (s.state == State::kOpen && s.role == Role::kChurn && s.variant == 1 &&
      s.exchanges_left == 1 && !s.thinking && !s.wr_shut && s.tx == s.tx_limit) {
    shutdown(s.fd, SHUT_WR);
    s.wr_shut = true;
  }
}

void Driver::finish(Slot& s) {
  if (s.wr_shut) {
    s.await_eof = true;  // read_some ends it at EOF
    return;
  }
  release(s, true);
}

void Driver::reset(Slot& s) {
  linger lg{1, 0};
  setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ++totals_.resets_sent;
  release(s, true);
}

void Driver::fail(Slot& s, const std::string& kind) {
  ++totals_.errors[kind];
  if (s.role != Role::kReset) totals_.lost_bytes += s.tx - s.rx;
  if (totals_.error_count() <= kMaxErrorLines) {
    std::fprintf(stderr, "soak: %s connection %llu: %s (sent %llu, echoed %llu)\n",
                 role_name(s.role), static_cast<unsigned long long>(s.id), kind.c_str(),
                 static_cast<unsigned long long>(s.tx), static_cast<unsigned long long>(s.rx));
  }
  release(s, false);
}

void Driver::release(Slot& s, bool planned) {
  if (s.state == State::kConnecting) --connecting_;
  if (s.state == State::kOpen) --totals_.open_now;
  if (s.fd >= 0) close(s.fd);  // also leaves the epoll set
  s.fd = -1;
  if (planned) ++stats(s).completed;
  after_close(s);
}

void Driver::after_close(Slot& s) {
  ++s.gen;  // timers and still-readable entries of this connection are now stale
  if (draining_) {
    s.state = State::kDone;
  } else if (persistent(s)) {
    s.state = State::kIdle;  // only a failure ends a persistent connection under load
    schedule(s, TimerKind::kReopen, kReopenDelayNs);
  } else {
    requeue(s);
  }
}

void Driver::schedule(const Slot& s, TimerKind kind, int64_t delay_ns) {
  timers_.push({monotonic_ns() + delay_ns, index_of(s), s.gen, kind});
}

void Driver::run_timers() {
  int64_t now = monotonic_ns();
  while (!timers_.empty() && timers_.top().when_ns <= now) {
    Timer t = timers_.top();
    timers_.pop();
    Slot& s = slots_[t.index];
    if (s.gen != t.gen) continue;
    if (t.kind == TimerKind::kReopen) {
      if (!draining_ && s.state == State::kIdle) requeue(s);
      continue;
    }
    if (s.state != State::kOpen) continue;
    if (t.kind == TimerKind::kReset) {
      reset(s);
    } else if (t.kind == TimerKind::kThink) {
      after_think(s);
    } else if (!draining_) {  // kSlowRead: one small piece, then a pause
      read_some(s, rand(512, 4096), 1);
      if (s.gen == t.gen && s.state == State::kOpen) {
        schedule(s, TimerKind::kSlowRead, static_cast<int64_t>(rand(5, 50)) * kMs);
      }
    }
  }
}

void Driver::serve_still_readable() {
  serving_.swap(still_readable_);
  for (uint64_t k : serving_) {
    Slot& s = slots_[static_cast<uint32_t>(k)];
    if (s.gen == static_cast<uint32_t>(k >> 32) && s.state == State::kOpen) {
      read_some(s, rbuf_.size(), kReadsPerWakeup);
    }
  }
  serving_.clear();
}

// Mostly small requests, a few large ones: 40% 1-64 B, 35% to 1 KiB, 20% to 16 KiB,
// 5% to 128 KiB.
uint64_t Driver::next_request_size() {
  uint64_t p = rand(0, 99);
  if (p < 40) return rand(1, 64);
  if (p < 75) return rand(65, 1024);
  if (p < 95) return rand(1025, 16 * 1024);
  return rand(16 * 1024 + 1, 128 * 1024);
}

// Nothing new from here on: requests in flight complete, pipelines finish their last
// message, slow readers read at full speed, and each connection closes once all its
// bytes are back. Slots waiting to (re)connect stay closed.
void Driver::begin_drain() {
  draining_ = true;
  for (Slot& s : slots_) {
    if (s.state == State::kIdle) s.state = State::kDone;
    if (s.state != State::kOpen) continue;
    if (s.role == Role::kPipeline) {
      s.tx_limit = (s.tx + s.msg_size - 1) / s.msg_size * s.msg_size;
    } else if (s.role == Role::kSlow) {
      s.tx_limit = s.tx;
    } else {
      continue;  // echo and churn finish their exchange; reset waits for its timer;
                 // a pause (think timer) ends in the drain's way
    }
    const uint32_t gen = s.gen;
    read_some(s, rbuf_.size(), kReadsPerWakeup);
    if (s.gen == gen && s.state == State::kOpen) progress(s);
  }
}

bool Driver::drained() const { return totals_.open_now == 0 && connecting_ == 0; }

void Driver::abandon() {
  draining_ = true;
  for (Slot& s : slots_) {
    if (s.state == State::kOpen || s.state == State::kConnecting) {
      fail(s, "still open at the drain deadline");
    }
  }
}

}  // namespace soak
