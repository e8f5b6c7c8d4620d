// SPDX-License-Identifier: MIT
/// @file
/// SockAddr: an IPv4, IPv6 or Unix-domain socket address, parsed from and printed as text.
///
/// Text forms (the same ones Engine::listen takes):
///   "tcp://127.0.0.1:9000"  "tcp://[::1]:9000"  "127.0.0.1:9000"  "[::1]:0"
///   "unix:///tmp/echo.sock"  "unix:/tmp/echo.sock"
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/status.h"

namespace ringnet {

/// A socket address (IPv4, IPv6 or Unix), by value.
/// Threads: a plain value; no shared state, so any thread may use its own copy.
class RINGNET_EXPORT SockAddr {
 public:
  SockAddr() = default;
  /// Copies `len` bytes of the address at `sa`.
  SockAddr(const sockaddr* sa, socklen_t len);

  /// Parses one of the text forms above into `out`.
  static Status parse(std::string_view text, SockAddr& out);

  int family() const { return storage_.ss_family; }  ///< AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC
  /// True for AF_INET and AF_INET6.
  bool is_ip() const { return family() == AF_INET || family() == AF_INET6; }
  uint16_t port() const;  ///< 0 for Unix sockets
  /// The address as a sockaddr, for syscalls.
  const sockaddr* raw() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  /// Writable storage (a sockaddr_storage) for a syscall to fill; then set_length().
  sockaddr* raw_mut() { return reinterpret_cast<sockaddr*>(&storage_); }
  /// Bytes of raw() in use; 0 for an empty address.
  socklen_t length() const { return len_; }
  /// Sets the length after a syscall filled raw_mut().
  void set_length(socklen_t len) { len_ = len; }

  /// Hash of the IP alone (not the port): stable for one source across its connections.
  uint64_t ip_hash() const;
  /// "127.0.0.1:9000", "[::1]:9000", "unix:/path" (or "unix:" for an unnamed peer).
  std::string to_string() const;
  std::string ip_string() const;  ///< "127.0.0.1" / "::1"; empty for Unix sockets

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

}  // namespace ringnet
