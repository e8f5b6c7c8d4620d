// SPDX-License-Identifier: MIT
#include "net/resolver.h"

#include <netdb.h>

#include <charconv>

namespace ringnet {

bool parse_named_address(std::string_view text, NamedAddress& out) {
  int family = AF_UNSPEC;
  if (text.starts_with("tcp4://")) {
    family = AF_INET;
    text.remove_prefix(7);
  } else if (text.starts_with("tcp6://")) {
    family = AF_INET6;
    text.remove_prefix(7);
  } else if (text.starts_with("tcp://")) {
    text.remove_prefix(6);
  } else if (text.starts_with("unix:")) {
    return false;
  }
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return false;
  }
  // A name: letters, digits, '-', '.', '_' (no brackets, no colons: those are IPv6).
  for (char ch : host) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
    if (!ok) return false;
  }
  SockAddr numeric;
  if (SockAddr::parse(text, numeric)) return false;  // a numeric address after all
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(value);
  out.family = family;
  return true;
}

int resolve_now(const NamedAddress& name, SockAddr& out) {
  addrinfo hints{};
  hints.ai_family = name.family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  if (int rc = ::getaddrinfo(name.host.c_str(), nullptr, &hints, &list); rc != 0) return rc;
  const addrinfo* pick = list;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  int rc = EAI_NONAME;
  if (pick != nullptr && (pick->ai_family == AF_INET || pick->ai_family == AF_INET6)) {
    SockAddr addr(pick->ai_addr, pick->ai_addrlen);
    // getaddrinfo was asked for no service: the port goes in here.
    const uint16_t port = htons(name.port);
    if (pick->ai_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(addr.raw_mut())->sin_port = port;
    } else {
      reinterpret_cast<sockaddr_in6*>(addr.raw_mut())->sin6_port = port;
    }
    out = addr;
    rc = 0;
  }
  ::freeaddrinfo(list);
  return rc;
}

Resolver::~Resolver() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Resolver::resolve(NamedAddress name, Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    jobs_.push_back(Job{std::move(name), std::move(done)});
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  cv_.notify_one();
}

void Resolver::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    SockAddr addr;
    const int rc = resolve_now(job.name, addr);
    job.done(addr, rc);
    lock.lock();
  }
}

}  // namespace ringnet
