// SPDX-License-Identifier: MIT
#include "test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace ringnet {

void PrintTo(CloseReason reason, std::ostream* os) {
  *os << close_reason_name(reason) << "(" << static_cast<int>(reason) << ")";
}

void PrintTo(Backend backend, std::ostream* os) { *os << backend_name(backend); }

}  // namespace ringnet

namespace ringnet::test {
namespace {

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1000000));
}

// Polls one fd for `events` until deadline. Returns revents, or 0 on timeout.
short poll_one(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return p.revents;
    if (rc == 0) return 0;
    if (errno != EINTR) return POLLERR;
  }
}

std::string errno_text(int err) { return std::string(std::strerror(err)); }

}  // namespace

// ---- backends -------------------------------------------------------------------------

std::vector<Backend> test_backends() {
  std::vector<Backend> out{Backend::kEpoll};
  if (io_uring_usable()) out.push_back(Backend::kIoUring);
  return out;
}

bool io_uring_usable() {
  io_uring_params params{};
  long fd = ::syscall(__NR_io_uring_setup, 4, &params);
  if (fd < 0) return false;
  ::close(static_cast<int>(fd));
  return true;
}

std::string backend_label(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kEpoll: return "epoll";
    case Backend::kIoUring: return "io_uring";
  }
  return "unknown";
}

std::string backend_param_name(const testing::TestParamInfo<Backend>& info) {
  return backend_label(info.param);
}

Options test_options(Backend backend, int loops) {
  Options o;
  o.backend = backend;
  o.loops = loops;
  return o;
}

// ---- misc -----------------------------------------------------------------------------

bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis step) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
  }
}

int raw_listener(int backlog, uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

uint16_t unused_port() {
  uint16_t port = 0;
  int fd = raw_listener(1, &port);
  if (fd >= 0) ::close(fd);
  return port;
}

bool ensure_fd_limit(size_t needed) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= needed) return true;
  if (rl.rlim_cur == RLIM_INFINITY) return true;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < needed) return false;
  rl.rlim_cur = needed;
  return ::setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

std::string make_payload(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  size_t i = 0;
  while (i < size) {
    // splitmix64
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (int b = 0; b < 8 && i < size; ++b, ++i) out[i] = static_cast<char>(z >> (8 * b));
  }
  return out;
}

uint64_t checksum(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

testing::AssertionResult same_bytes(std::string_view expected, std::string_view actual) {
  if (expected == actual) return testing::AssertionSuccess();
  size_t i = 0;
  size_t n = std::min(expected.size(), actual.size());
  while (i < n && expected[i] == actual[i]) ++i;
  return testing::AssertionFailure()
         << "bytes differ: expected " << expected.size() << " bytes (checksum "
         << checksum(expected) << "), got " << actual.size() << " bytes (checksum "
         << checksum(actual) << "); first difference at offset " << i;
}

Watchdog::Watchdog(Millis limit, std::string what) {
  thread_ = std::thread([this, limit, what = std::move(what)] {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, limit, [&] { return done_; })) {
      std::fprintf(stderr, "WATCHDOG: %s did not finish within %lld ms; aborting the test binary\n",
                   what.c_str(), static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::_Exit(3);
    }
  });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

LoopBlocker::LoopBlocker(Millis limit) : limit_(limit) {}

LoopBlocker::~LoopBlocker() { release(); }

testing::AssertionResult LoopBlocker::block(const ConnHandle& h, Millis timeout) {
  h.dispatch([st = state_, limit = limit_](Conn*) {
    std::unique_lock lock(st->mu);
    st->entered = true;
    st->cv.notify_all();
    st->cv.wait_for(lock, limit, [&] { return st->released; });
  });
  std::unique_lock lock(state_->mu);
  if (!state_->cv.wait_for(lock, timeout, [&] { return state_->entered; })) {
    return testing::AssertionFailure() << "the blocking task did not start on the loop";
  }
  return testing::AssertionSuccess();
}

void LoopBlocker::release() {
  {
    std::lock_guard lock(state_->mu);
    state_->released = true;
  }
  state_->cv.notify_all();
}

size_t EndRecorder::add() {
  std::lock_guard lock(mu_);
  ends_.push_back(0);
  codes_.push_back(0);
  return ends_.size() - 1;
}

void EndRecorder::end(size_t i, int code) {
  {
    std::lock_guard lock(mu_);
    ++running_;
    ++ends_.at(i);
    codes_.at(i) = code;
    if (destroyed_) ++late_;
  }
  if (dwell_.count() > 0) std::this_thread::sleep_for(dwell_);
  std::lock_guard lock(mu_);
  --running_;
}

void EndRecorder::mark_destroyed() {
  std::lock_guard lock(mu_);
  destroyed_ = true;
  late_ += running_;  // still inside a callback although the destructor returned
}

size_t EndRecorder::ends() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (int e : ends_) n += static_cast<size_t>(e);
  return n;
}

int EndRecorder::late() const {
  std::lock_guard lock(mu_);
  return late_;
}

size_t EndRecorder::count(int code) const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (size_t i = 0; i < ends_.size(); ++i) n += ends_[i] > 0 && codes_[i] == code;
  return n;
}

testing::AssertionResult EndRecorder::each_once(std::initializer_list<int> codes) const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < ends_.size(); ++i) {
    if (ends_[i] != 1) {
      return testing::AssertionFailure() << "callback " << i << " of " << ends_.size()
                                         << " ended " << ends_[i] << " times";
    }
    if (std::find(codes.begin(), codes.end(), codes_[i]) == codes.end()) {
      return testing::AssertionFailure() << "callback " << i << " of " << ends_.size()
                                         << " ended with code " << codes_[i] << " ("
                                         << std::strerror(codes_[i] > 0 ? codes_[i] : 0) << ")";
    }
  }
  return testing::AssertionSuccess();
}

std::string describe(const EngineStats& st) {
  std::ostringstream os;
  os << "accepted=" << st.accepted << " open=" << st.open << " closed=" << st.closed
     << " (peer=" << st.closed_by_reason[int(CloseReason::kPeerClosed)]
     << " reset=" << st.closed_by_reason[int(CloseReason::kReset)]
     << " error=" << st.closed_by_reason[int(CloseReason::kError)]
     << " local=" << st.closed_by_reason[int(CloseReason::kLocalClose)]
     << " shutdown=" << st.closed_by_reason[int(CloseReason::kShutdown)]
     << " idle_timeout=" << st.closed_by_reason[int(CloseReason::kIdleTimeout)]
     << " read_timeout=" << st.closed_by_reason[int(CloseReason::kReadTimeout)]
     << " write_timeout=" << st.closed_by_reason[int(CloseReason::kWriteTimeout)] << ")"
     << " bytes_in=" << st.bytes_in << " bytes_out=" << st.bytes_out
     << " read_calls=" << st.read_calls << " write_calls=" << st.write_calls
     << " budget_yields=" << st.budget_yields << " tasks_run=" << st.tasks_run
     << " fd_exhausted=" << st.fd_exhausted << " outbound_dropped=" << st.outbound_dropped
     << " inbound_dropped=" << st.inbound_dropped << " read_pauses=" << st.read_pauses
     << " writes_refused=" << st.writes_refused << " inbound_held=" << st.inbound_held
     << " inbound_budget_closed=" << st.inbound_budget_closed
     << " drain_deadline_closed=" << st.drain_deadline_closed;
  return os.str();
}

// ---- server ---------------------------------------------------------------------------

TestServer::TestServer(EventHandler& handler, Options options) : engine_(handler, options) {}

TestServer::~TestServer() { stop(); }

testing::AssertionResult TestServer::start(const std::vector<std::string>& addresses) {
  for (const auto& a : addresses) {
    Status s = engine_.listen(a);
    if (!s.is_ok()) {
      return testing::AssertionFailure() << "listen(" << a << ") failed: " << s.message()
                                         << " (code " << s.code() << ")";
    }
  }
  Status s = engine_.start();
  if (!s.is_ok()) {
    return testing::AssertionFailure() << "start() failed: " << s.message() << " (code "
                                       << s.code() << ")";
  }
  started_ = true;
  addrs_ = engine_.listen_addrs();
  if (addrs_.size() != addresses.size()) {
    return testing::AssertionFailure() << "listen_addrs() has " << addrs_.size()
                                       << " entries, expected " << addresses.size();
  }
  for (size_t i = 0; i < addrs_.size(); ++i) {
    if (addrs_[i].is_ip() && addrs_[i].port() == 0) {
      return testing::AssertionFailure() << "listen_addrs()[" << i << "] has port 0";
    }
  }
  return testing::AssertionSuccess();
}

void TestServer::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  Watchdog watchdog(Millis(20000), "Engine::stop()+wait()");
  engine_.stop();
  engine_.wait();
}

// ---- client ---------------------------------------------------------------------------

const char* end_name(End end) {
  switch (end) {
    case End::kEof: return "EOF";
    case End::kReset: return "reset";
    case End::kData: return "data";
    case End::kTimeout: return "timeout";
    case End::kError: return "error";
  }
  return "?";
}

void PrintTo(End end, std::ostream* os) { *os << end_name(end); }

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

testing::AssertionResult Client::connect(const SockAddr& addr, Millis timeout,
                                         const char* bind_ip) {
  close();
  auto deadline = Clock::now() + timeout;
  fd_ = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return testing::AssertionFailure() << "socket: " << errno_text(errno);
  if (bind_ip != nullptr) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = 0;
    if (::inet_pton(AF_INET, bind_ip, &sin.sin_addr) != 1 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
      int err = errno;
      close();
      return testing::AssertionFailure() << "bind(" << bind_ip << "): " << errno_text(err);
    }
  }
  for (;;) {
    if (::connect(fd_, addr.raw(), addr.length()) == 0) return testing::AssertionSuccess();
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && addr.family() == AF_UNIX && Clock::now() < deadline) {
      // Unix listener backlog full: try again shortly.
      std::this_thread::sleep_for(Millis(2));
      continue;
    }
    if (err != EINPROGRESS) {
      close();
      return testing::AssertionFailure() << "connect(" << addr.to_string()
                                         << "): " << errno_text(err);
    }
    break;
  }
  short rev = poll_one(fd_, POLLOUT, deadline);
  if (rev == 0) {
    close();
    return testing::AssertionFailure() << "connect(" << addr.to_string() << ") timed out";
  }
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len);
  if (soerr != 0) {
    close();
    return testing::AssertionFailure() << "connect(" << addr.to_string()
                                       << "): " << errno_text(soerr);
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult Client::connect_tcp(uint16_t port, const char* ip, Millis timeout) {
  SockAddr addr;
  std::string text = std::string(ip) + ":" + std::to_string(port);
  if (std::strchr(ip, ':') != nullptr) text = "[" + std::string(ip) + "]:" + std::to_string(port);
  Status s = SockAddr::parse(text, addr);
  if (!s.is_ok()) return testing::AssertionFailure() << "parse " << text << ": " << s.message();
  return connect(addr, timeout);
}

testing::AssertionResult Client::send_all(std::string_view bytes, Millis timeout) {
  if (fd_ < 0) return testing::AssertionFailure() << "send_all on closed client";
  auto deadline = Clock::now() + timeout;
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      short rev = poll_one(fd_, POLLOUT, deadline);
      if (rev == 0) {
        return testing::AssertionFailure() << "send_all timed out after " << off << " of "
                                           << bytes.size() << " bytes";
      }
      continue;
    }
    return testing::AssertionFailure() << "send failed after " << off << " bytes: "
                                       << errno_text(errno);
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult Client::recv_exact(size_t n, std::string* out, Millis timeout) {
  if (fd_ < 0) return testing::AssertionFailure() << "recv_exact on closed client";
  auto deadline = Clock::now() + timeout;
  size_t got = 0;
  std::string buf(64 * 1024, '\0');
  while (got < n) {
    ssize_t r = ::recv(fd_, buf.data(), std::min(buf.size(), n - got), 0);
    if (r > 0) {
      out->append(buf.data(), static_cast<size_t>(r));
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) {
      return testing::AssertionFailure() << "EOF after " << got << " of " << n << " bytes";
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (poll_one(fd_, POLLIN, deadline) == 0) {
        return testing::AssertionFailure() << "recv timed out after " << got << " of " << n
                                           << " bytes";
      }
      continue;
    }
    return testing::AssertionFailure() << "recv failed after " << got << " of " << n
                                       << " bytes: " << errno_text(errno);
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult Client::recv_until_eof(std::string* out, Millis timeout) {
  if (fd_ < 0) return testing::AssertionFailure() << "recv_until_eof on closed client";
  auto deadline = Clock::now() + timeout;
  size_t got = 0;
  std::string buf(256 * 1024, '\0');
  for (;;) {
    ssize_t r = ::recv(fd_, buf.data(), buf.size(), 0);
    if (r > 0) {
      out->append(buf.data(), static_cast<size_t>(r));
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return testing::AssertionSuccess();
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (poll_one(fd_, POLLIN, deadline) == 0) {
        return testing::AssertionFailure() << "no EOF within timeout (" << got
                                           << " bytes read)";
      }
      continue;
    }
    return testing::AssertionFailure() << "recv failed after " << got
                                       << " bytes (expected EOF): " << errno_text(errno);
  }
}

testing::AssertionResult Client::exchange(std::string_view bytes, size_t expect,
                                          std::string* out, Millis timeout) {
  if (fd_ < 0) return testing::AssertionFailure() << "exchange on closed client";
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  size_t got = 0;
  std::string buf(256 * 1024, '\0');
  while (sent < bytes.size() || got < expect) {
    short events = 0;
    if (got < expect) events |= POLLIN;
    if (sent < bytes.size()) events |= POLLOUT;
    short rev = poll_one(fd_, events, deadline);
    if (rev == 0 || Clock::now() > deadline) {
      return testing::AssertionFailure() << "exchange timed out: sent " << sent << "/"
                                         << bytes.size() << ", received " << got << "/"
                                         << expect;
    }
    if ((rev & (POLLIN | POLLHUP | POLLERR)) && got < expect) {
      ssize_t r = ::recv(fd_, buf.data(), std::min(buf.size(), expect - got), 0);
      if (r > 0) {
        out->append(buf.data(), static_cast<size_t>(r));
        got += static_cast<size_t>(r);
      } else if (r == 0) {
        return testing::AssertionFailure() << "EOF during exchange: sent " << sent << "/"
                                           << bytes.size() << ", received " << got << "/"
                                           << expect;
      } else if (errno != EAGAIN && errno != EINTR) {
        return testing::AssertionFailure() << "recv failed during exchange ("
                                           << errno_text(errno) << "): received " << got
                                           << "/" << expect;
      }
    }
    if ((rev & POLLOUT) && sent < bytes.size()) {
      size_t chunk = std::min<size_t>(bytes.size() - sent, 256 * 1024);
      ssize_t n = ::send(fd_, bytes.data() + sent, chunk, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return testing::AssertionFailure() << "send failed during exchange ("
                                           << errno_text(errno) << "): sent " << sent;
      }
    } else if ((rev & (POLLERR)) && !(rev & POLLIN)) {
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len);
      return testing::AssertionFailure() << "socket error during exchange: "
                                         << errno_text(soerr);
    }
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult Client::echo(std::string_view bytes, Millis timeout) {
  std::string got;
  auto r = exchange(bytes, bytes.size(), &got, timeout);
  if (!r) return r;
  return same_bytes(bytes, got);
}

End Client::wait_end(Millis timeout, std::string* data) {
  if (fd_ < 0) return End::kError;
  auto deadline = Clock::now() + timeout;
  char buf[64 * 1024];
  bool any = false;
  for (;;) {
    ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
    if (r > 0) {
      any = true;
      if (data != nullptr) data->append(buf, static_cast<size_t>(r));
      continue;
    }
    if (r == 0) return End::kEof;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET || errno == EPIPE) return End::kReset;
    if (errno != EAGAIN) return End::kError;
    if (poll_one(fd_, POLLIN, deadline) == 0) return any ? End::kData : End::kTimeout;
  }
}

bool Client::readable_within(Millis timeout) const {
  if (fd_ < 0) return false;
  return poll_one(fd_, POLLIN, Clock::now() + timeout) != 0;
}

bool Client::shutdown_write() { return fd_ >= 0 && ::shutdown(fd_, SHUT_WR) == 0; }

void Client::reset() {
  if (fd_ < 0) return;
  linger lg{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close();
}

void Client::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void Client::set_nodelay() {
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

uint16_t Client::local_port() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return SockAddr(reinterpret_cast<sockaddr*>(&ss), len).port();
}

std::vector<Client> fill_accept_queue(uint16_t port) {
  std::vector<Client> fillers(2);  // backlog 0 holds one; the second makes sure
  for (Client& c : fillers) (void)c.connect_tcp(port, "127.0.0.1", Millis(300));
  return fillers;
}

testing::AssertionResult connect_many(uint16_t port, size_t n, std::vector<Client>* out,
                                      Millis timeout) {
  for (size_t i = 0; i < n; ++i) {
    Client c;
    auto r = c.connect_tcp(port, "127.0.0.1", timeout);
    if (!r) return testing::AssertionFailure() << "connection " << i << ": " << r.message();
    out->push_back(std::move(c));
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult echo_all(std::vector<Client>& clients,
                                  const std::vector<std::string>& payloads, Millis timeout) {
  if (clients.size() != payloads.size()) {
    return testing::AssertionFailure() << "echo_all: " << clients.size() << " clients but "
                                       << payloads.size() << " payloads";
  }
  struct State {
    size_t sent = 0;
    std::string got;
    bool done = false;
  };
  auto deadline = Clock::now() + timeout;
  std::vector<State> st(clients.size());
  size_t remaining = 0;
  for (size_t i = 0; i < clients.size(); ++i) {
    if (payloads[i].empty()) {
      st[i].done = true;
    } else {
      ++remaining;
    }
  }
  std::vector<pollfd> pfds;
  std::vector<size_t> idx;
  char buf[64 * 1024];
  while (remaining > 0) {
    pfds.clear();
    idx.clear();
    for (size_t i = 0; i < clients.size(); ++i) {
      if (st[i].done) continue;
      short ev = POLLIN;
      if (st[i].sent < payloads[i].size()) ev |= POLLOUT;
      pfds.push_back(pollfd{clients[i].fd(), ev, 0});
      idx.push_back(i);
    }
    int rc = ::poll(pfds.data(), pfds.size(), remaining_ms(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0 || Clock::now() > deadline) {
      size_t first = idx.empty() ? 0 : idx[0];
      return testing::AssertionFailure()
             << "echo_all timed out with " << remaining << " of " << clients.size()
             << " clients unfinished; e.g. client " << first << " sent "
             << st[first].sent << "/" << payloads[first].size() << ", received "
             << st[first].got.size();
    }
    for (size_t k = 0; k < pfds.size(); ++k) {
      size_t i = idx[k];
      State& s = st[i];
      const std::string& want = payloads[i];
      if (pfds[k].revents & POLLOUT) {
        ssize_t n = ::send(pfds[k].fd, want.data() + s.sent,
                           std::min<size_t>(want.size() - s.sent, 64 * 1024), MSG_NOSIGNAL);
        if (n > 0) {
          s.sent += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return testing::AssertionFailure() << "client " << i << ": send failed: "
                                             << errno_text(errno);
        }
      }
      if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
        size_t want_more = want.size() - s.got.size();
        ssize_t r = ::recv(pfds[k].fd, buf, std::min(sizeof(buf), want_more), 0);
        if (r > 0) {
          s.got.append(buf, static_cast<size_t>(r));
        } else if (r == 0) {
          return testing::AssertionFailure() << "client " << i << ": EOF after "
                                             << s.got.size() << "/" << want.size()
                                             << " bytes";
        } else if (errno != EAGAIN && errno != EINTR) {
          return testing::AssertionFailure() << "client " << i << ": recv failed: "
                                             << errno_text(errno) << " after "
                                             << s.got.size() << " bytes";
        }
      }
      if (s.got.size() == want.size()) {
        auto same = same_bytes(want, s.got);
        if (!same) return testing::AssertionFailure() << "client " << i << ": " << same.message();
        s.done = true;
        --remaining;
      }
    }
  }
  return testing::AssertionSuccess();
}

// ---- handler --------------------------------------------------------------------------

Action EchoHandler::on_open(Conn& c) {
  record_open(c);
  return Action::kNone;
}

Action EchoHandler::on_traffic(Conn& c) {
  echo(c);
  return Action::kNone;
}

void EchoHandler::on_close(Conn& c, CloseInfo info) { record_close(c, info); }

void EchoHandler::on_shutdown(Engine&) { shutdowns_.fetch_add(1); }

void EchoHandler::echo(Conn& c) {
  std::string_view v = c.peek();
  if (v.empty()) return;
  c.write(v).ignore();
  c.discard(v.size());
}

void EchoHandler::record_open(Conn& c) {
  OpenRecord r;
  r.handle = c.handle();
  r.loop = c.loop_index();
  r.remote_port = c.remote_addr().port();
  r.remote_ip = c.remote_addr().ip_string();
  r.thread = std::this_thread::get_id();
  std::lock_guard<std::mutex> lock(mu_);
  opens_.push_back(std::move(r));
  cv_.notify_all();
}

void EchoHandler::record_close(Conn& c, CloseInfo info) {
  CloseRecord r;
  r.reason = info.reason;
  r.error = info.error;
  r.loop = c.loop_index();
  r.remote_port = c.remote_addr().port();
  r.thread = std::this_thread::get_id();
  std::lock_guard<std::mutex> lock(mu_);
  closes_.push_back(r);
  cv_.notify_all();
}

size_t EchoHandler::opens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return opens_.size();
}

size_t EchoHandler::closes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closes_.size();
}

size_t EchoHandler::closes_with(CloseReason reason) const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(std::count_if(closes_.begin(), closes_.end(),
                                           [&](const CloseRecord& r) { return r.reason == reason; }));
}

std::vector<OpenRecord> EchoHandler::open_records() const {
  std::lock_guard<std::mutex> lock(mu_);
  return opens_;
}

std::vector<CloseRecord> EchoHandler::close_records() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closes_;
}

std::optional<OpenRecord> EchoHandler::open_for_port(uint16_t remote_port) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& r : opens_) {
    if (r.remote_port == remote_port) return r;
  }
  return std::nullopt;
}

std::optional<CloseRecord> EchoHandler::close_for_port(uint16_t remote_port) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& r : closes_) {
    if (r.remote_port == remote_port) return r;
  }
  return std::nullopt;
}

bool EchoHandler::wait_opens(size_t n, Millis timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return opens_.size() >= n; });
}

bool EchoHandler::wait_closes(size_t n, Millis timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return closes_.size() >= n; });
}

testing::AssertionResult EchoHandler::wait_open_for_port(uint16_t remote_port, OpenRecord* out,
                                                         Millis timeout) const {
  return wait_open_for("", remote_port, out, timeout);
}

testing::AssertionResult EchoHandler::wait_open_for(const std::string& remote_ip,
                                                    uint16_t remote_port, OpenRecord* out,
                                                    Millis timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  const OpenRecord* found = nullptr;
  cv_.wait_for(lock, timeout, [&] {
    for (const auto& r : opens_) {
      if (r.remote_port == remote_port && (remote_ip.empty() || r.remote_ip == remote_ip)) {
        found = &r;
        return true;
      }
    }
    return false;
  });
  if (found == nullptr) {
    return testing::AssertionFailure() << "no on_open for client " << remote_ip << " port "
                                       << remote_port
                                       << " within " << timeout.count() << " ms ("
                                       << opens_.size() << " opens recorded)";
  }
  if (out != nullptr) *out = *found;
  return testing::AssertionSuccess();
}

testing::AssertionResult EchoHandler::wait_close_for_port(uint16_t remote_port,
                                                          CloseRecord* out,
                                                          Millis timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  const CloseRecord* found = nullptr;
  cv_.wait_for(lock, timeout, [&] {
    for (const auto& r : closes_) {
      if (r.remote_port == remote_port) {
        found = &r;
        return true;
      }
    }
    return false;
  });
  if (found == nullptr) {
    return testing::AssertionFailure() << "no on_close for client port " << remote_port
                                       << " within " << timeout.count() << " ms ("
                                       << closes_.size() << " closes recorded)";
  }
  if (out != nullptr) *out = *found;
  return testing::AssertionSuccess();
}

// ---- PoolLineHandler ----------------------------------------------------------------------

Action PoolLineHandler::on_traffic(Conn& c) {
  size_t nl;
  while ((nl = c.peek().find('\n')) != std::string_view::npos) {
    std::string id(c.next(nl + 1).substr(0, nl));
    Status s = pool_.submit(
        c,
        [id, work = work_] {
          std::this_thread::sleep_for(work);
          return "done " + id + "\n";
        },
        [](Conn& conn, std::string&& answer) { conn.write(answer).ignore(); });
    if (!s) return Action::kClose;
  }
  return Action::kNone;
}

}  // namespace ringnet::test
