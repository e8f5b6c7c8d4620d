// SPDX-License-Identifier: MIT
#include "ringnet/address.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <charconv>
#include <cstddef>
#include <cstring>

namespace ringnet {

SockAddr::SockAddr(const sockaddr* sa, socklen_t len) {
  if (len > sizeof(storage_)) len = sizeof(storage_);
  std::memcpy(&storage_, sa, len);
  len_ = len;
}

namespace {

Status parse_port(std::string_view text, uint16_t& port) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return Status::invalid("bad port in address");
  }
  port = static_cast<uint16_t>(value);
  return Status::ok();
}

Status parse_unix(std::string_view path, SockAddr& out) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sun.sun_path)) {
    return Status::invalid("unix socket path empty or too long");
  }
  std::memcpy(sun.sun_path, path.data(), path.size());
  out = SockAddr(reinterpret_cast<sockaddr*>(&sun),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1));
  return Status::ok();
}

Status parse_ip(std::string_view text, SockAddr& out) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return Status::invalid("address needs host:port");
  std::string_view host = text.substr(0, colon);
  uint16_t port = 0;
  if (Status s = parse_port(text.substr(colon + 1), port); !s) return s;
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  std::string h(host.empty() ? "0.0.0.0" : host);
  sockaddr_in sin{};
  if (!bracketed && inet_pton(AF_INET, h.c_str(), &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    out = SockAddr(reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    return Status::ok();
  }
  sockaddr_in6 sin6{};
  if (inet_pton(AF_INET6, h.c_str(), &sin6.sin6_addr) == 1) {
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    out = SockAddr(reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6));
    return Status::ok();
  }
  return Status::invalid("not a numeric IPv4/IPv6 address: " + h);
}

}  // namespace

Status SockAddr::parse(std::string_view text, SockAddr& out) {
  constexpr std::string_view kUnixUrl = "unix://";
  constexpr std::string_view kUnix = "unix:";
  for (std::string_view prefix : {"tcp://", "tcp4://", "tcp6://"}) {
    if (text.starts_with(prefix)) return parse_ip(text.substr(prefix.size()), out);
  }
  if (text.starts_with(kUnixUrl)) return parse_unix(text.substr(kUnixUrl.size()), out);
  if (text.starts_with(kUnix)) return parse_unix(text.substr(kUnix.size()), out);
  return parse_ip(text, out);
}

uint16_t SockAddr::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

uint64_t SockAddr::ip_hash() const {
  // FNV-1a over the address bytes; stable across runs and processes.
  const unsigned char* p = nullptr;
  size_t n = 0;
  if (family() == AF_INET) {
    p = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr);
    n = 4;
  } else if (family() == AF_INET6) {
    p = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
    n = 16;
  }
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::string SockAddr::ip_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof(buf));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

std::string SockAddr::to_string() const {
  if (family() == AF_INET) return fmt::format("{}:{}", ip_string(), port());
  if (family() == AF_INET6) return fmt::format("[{}]:{}", ip_string(), port());
  if (family() == AF_UNIX) {
    const auto* sun = reinterpret_cast<const sockaddr_un*>(&storage_);
    size_t max = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
    return fmt::format("unix:{}", std::string_view(sun->sun_path, strnlen(sun->sun_path, max)));
  }
  return "unspecified";
}

}  // namespace ringnet
