// SPDX-License-Identifier: MIT
#include "net/socket_ops.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include "ringnet/log.h"

namespace ringnet::sockets {
namespace {

void set_int_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    log(LogLevel::kDebug, "setsockopt({}) on fd {} failed: errno {}", what, fd, errno);
  }
}

}  // namespace

Status open_listener(const SockAddr& addr, const Options& opts, bool reuse_port, int* fd) {
  int s = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return Status::from_errno(errno, "socket");
  if (addr.is_ip()) {
    if (opts.reuse_addr) set_int_option(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (reuse_port) set_int_option(s, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    if (addr.family() == AF_INET6) set_int_option(s, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
  } else if (addr.family() == AF_UNIX) {
    remove_stale_unix_path(addr);
  }
  if (::bind(s, addr.raw(), addr.length()) != 0) {
    int err = errno;
    ::close(s);
    return Status::from_errno(err, "bind " + addr.to_string());
  }
  if (::listen(s, opts.backlog) != 0) {
    int err = errno;
    ::close(s);
    return Status::from_errno(err, "listen " + addr.to_string());
  }
  *fd = s;
  return Status::ok();
}

void tune_accepted(int fd, int family, const Options& opts) {
  bool tcp = family == AF_INET || family == AF_INET6;
  if (tcp && opts.tcp_nodelay) set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  if (tcp && opts.tcp_keepalive.count() > 0) {
    int secs = static_cast<int>(opts.tcp_keepalive.count());
    set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
    set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, secs, "TCP_KEEPIDLE");
    set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, secs, "TCP_KEEPINTVL");
  }
  if (opts.recv_buffer > 0) set_int_option(fd, SOL_SOCKET, SO_RCVBUF, opts.recv_buffer, "SO_RCVBUF");
  if (opts.send_buffer > 0) set_int_option(fd, SOL_SOCKET, SO_SNDBUF, opts.send_buffer, "SO_SNDBUF");
}

SockAddr local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return SockAddr();
  return SockAddr(reinterpret_cast<sockaddr*>(&ss), len);
}

void remove_stale_unix_path(const SockAddr& addr) {
  const auto* sun = reinterpret_cast<const sockaddr_un*>(addr.raw());
  if (sun->sun_path[0] == '\0') return;  // abstract namespace: nothing on disk
  struct stat st{};
  if (::stat(sun->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  // Only remove it if nobody answers there. Non-blocking: a live server with a full
  // backlog answers EAGAIN, which also means "in use", instead of stalling listen().
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return;
  bool live = ::connect(probe, addr.raw(), addr.length()) == 0 || errno == EAGAIN;
  ::close(probe);
  if (!live) ::unlink(sun->sun_path);
}

size_t unread_bytes(int fd) {
  int n = 0;
  if (fd < 0 || ::ioctl(fd, FIONREAD, &n) != 0 || n < 0) return 0;
  return static_cast<size_t>(n);
}

}  // namespace ringnet::sockets
