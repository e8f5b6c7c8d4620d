// SPDX-License-Identifier: MIT
// rpc_load's ringnet client: one thread, one non-blocking TCP connection per caller,
// level-triggered epoll. The engine is not used on purpose (like loadgen): the client
// must measure the server, not share its code; only the public frame header encoder.
//
// Per connection, one call at a time:
//
//   send(): [ header (20 B) | body (size B) ]   one buffer, one send() (EPOLLOUT only if
//                                               the socket buffer was full)
//   recv(): exactly the 20 + size bytes the answer must have, never more, so a byte
//           beyond it is never read as the start of something; the header is checked as
//           soon as it is in, the body when complete (memcmp against what was sent)
//
// A bad answer (wrong type, id, method or length; a changed body; the server closing)
// counts one error and closes that connection: after it the stream cannot be trusted.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ringnet/proto/rpc_frame.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "rpc_load.h"

namespace bench {
namespace {

using ringnet::proto::kRpcHeaderSize;
using ringnet::proto::RpcType;

uint64_t load_be(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

struct Caller {
  int fd = -1;
  std::vector<char> out;  // header + body; the body's first 8 bytes are the request_id
  size_t sent = 0;        // bytes of `out` sent
  std::vector<char> in;   // the answer being read, 20 + size bytes
  size_t got = 0;
  bool header_checked = false;
  bool want_out = false;  // EPOLLOUT armed
  uint64_t request_id = 0;
  int64_t sent_ns = 0;
};

class RingnetClient {
 public:
  RingnetClient(const RpcLoadOptions& o, MeasureWindow& window) : o_(o), window_(window) {}
  ~RingnetClient() {
    for (Caller& c : callers_) close_caller(c);
    if (epfd_ >= 0) close(epfd_);
  }

  bool connect_all() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return fail("epoll_create1");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(o_.port));
    if (inet_pton(AF_INET, o_.host.c_str(), &addr.sin_addr) != 1) {
      std::fprintf(stderr, "rpc_load: --host %s is not an IPv4 address\n", o_.host.c_str());
      return false;
    }
    callers_.resize(o_.conns);
    for (size_t i = 0; i < callers_.size(); ++i) {
      Caller& c = callers_[i];
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c.fd < 0) return fail("socket");
      ++open_;
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        return fail("connect");
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) != 0) return fail("fcntl");
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) return fail("epoll_ctl");
      c.out.resize(kRpcHeaderSize + o_.size);
      c.in.resize(kRpcHeaderSize + o_.size);
      // A body no other connection sends; request ids never repeat across connections.
      for (size_t b = 0; b < o_.size; ++b) {
        c.out[kRpcHeaderSize + b] = static_cast<char>((i * 131 + b * 7 + 1) & 0xff);
      }
      c.request_id = static_cast<uint64_t>(i) << 40;
    }
    return true;
  }

  void run() {
    window_.begin(monotonic_ns());
    for (size_t i = 0; i < callers_.size(); ++i) start_call(i, monotonic_ns());
    std::vector<epoll_event> events(callers_.size());
    while (true) {
      const int64_t now = monotonic_ns();
      if (!window_.tick(now)) break;
      if (open_ == 0) {
        std::fprintf(stderr, "rpc_load: every connection failed\n");
        break;
      }
      // Round up to whole ms so the boundary tick comes after the boundary, not before.
      const int timeout_ms = static_cast<int>((window_.ns_to_boundary(now) + 999'999) / 1'000'000);
      const int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), timeout_ms);
      if (n < 0 && errno != EINTR) {
        fail("epoll_wait");
        break;
      }
      for (int k = 0; k < n; ++k) {
        const size_t i = events[k].data.u64;
        if (callers_[i].fd < 0) continue;
        if (events[k].events & EPOLLOUT) on_writable(i);
        if (callers_[i].fd >= 0 && (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
          on_readable(i);
        }
      }
    }
  }

 private:
  bool fail(const char* what) {
    std::fprintf(stderr, "rpc_load: %s: %s\n", what, std::strerror(errno));
    window_.error();
    return false;
  }

  void close_caller(Caller& c) {
    if (c.fd < 0) return;
    close(c.fd);
    c.fd = -1;
    --open_;
  }

  void bad_answer(size_t i, const char* why) {
    window_.error();
    if (errors_logged_++ < 5) std::fprintf(stderr, "rpc_load: connection %zu: %s\n", i, why);
    close_caller(callers_[i]);
  }

  void start_call(size_t i, int64_t now) {
    Caller& c = callers_[i];
    ++c.request_id;
    const ringnet::proto::RpcHeaderBytes head = ringnet::proto::encode_rpc_header(
        RpcType::kRequest, 0, o_.method, c.request_id, static_cast<uint32_t>(o_.size));
    std::memcpy(c.out.data(), head.data(), head.size());
    if (o_.size >= sizeof(c.request_id)) {
      std::memcpy(c.out.data() + kRpcHeaderSize, &c.request_id, sizeof(c.request_id));
    }
    c.sent = 0;
    c.got = 0;
    c.header_checked = false;
    c.sent_ns = now;
    flush(i);
  }

  void flush(size_t i) {
    Caller& c = callers_[i];
    while (c.sent < c.out.size()) {
      const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!c.want_out) set_want_out(i, true);
        return;
      }
      bad_answer(i, "send failed");
      return;
    }
    if (c.want_out) set_want_out(i, false);
  }

  void set_want_out(size_t i, bool on) {
    Caller& c = callers_[i];
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.u64 = i;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = on;
  }

  void on_writable(size_t i) { flush(i); }

  void on_readable(size_t i) {
    Caller& c = callers_[i];
    const ssize_t n = recv(c.fd, c.in.data() + c.got, c.in.size() - c.got, 0);
    if (n == 0) return bad_answer(i, "server closed the connection");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return bad_answer(i, "recv failed");
    }
    c.got += static_cast<size_t>(n);
    if (!c.header_checked && c.got >= kRpcHeaderSize) {
      if (const char* why = check_header(c)) return bad_answer(i, why);
      c.header_checked = true;
    }
    if (c.got < c.in.size()) return;  // the rest of the answer comes later
    if (c.sent < c.out.size()) return bad_answer(i, "answer before the request was sent");
    if (std::memcmp(c.in.data() + kRpcHeaderSize, c.out.data() + kRpcHeaderSize, o_.size) != 0) {
      return bad_answer(i, "answer body differs from the request's");
    }
    const int64_t now = monotonic_ns();
    window_.completed(c.sent_ns, now);
    start_call(i, now);
  }

  const char* check_header(const Caller& c) const {
    const char* h = c.in.data();
    if (load_be(h, 2) != ringnet::proto::kRpcMagic) return "bad magic";
    if (static_cast<uint8_t>(h[2]) != ringnet::proto::kRpcVersion) return "bad version";
    if (static_cast<uint8_t>(h[3]) == static_cast<uint8_t>(RpcType::kError)) {
      return "error frame (unknown --method?)";
    }
    if (static_cast<uint8_t>(h[3]) != static_cast<uint8_t>(RpcType::kResponse)) {
      return "not a response frame";
    }
    if (load_be(h + 6, 2) != o_.method) return "answer for another method";
    if (load_be(h + 8, 8) != c.request_id) return "answer for another request_id";
    if (load_be(h + 16, 4) != o_.size) return "answer body_length differs from the request's";
    return nullptr;
  }

  const RpcLoadOptions& o_;
  MeasureWindow& window_;
  std::vector<Caller> callers_;
  int epfd_ = -1;
  size_t open_ = 0;
  unsigned errors_logged_ = 0;
};

}  // namespace

void run_ringnet_load(const RpcLoadOptions& o, MeasureWindow& window) {
  RingnetClient client(o, window);
  if (!client.connect_all()) return;
  client.run();
}

}  // namespace bench
