// SPDX-License-Identifier: MIT
#include "net/resolver.h"

#include <netdb.h>
#include <pthread.h>
#include <sched.h>

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
  // A name: letters, digits, '-', '.', '_' (no brackets, no colons: those are IPv6), at
  // most 253 characters, whose last label is not all digits or 0x-hex (no top-level
  // domain is): "999.1.1.1" or "010.0.0.1" is a bad address, not a name for getaddrinfo
  // to read the inet_aton way or to ask DNS about.
  if (host.size() > 253 || host.front() == '.' || host.front() == '-') return false;
  for (char ch : host) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
    if (!ok) return false;
  }
  const size_t dot = host.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  const bool hex = (last.starts_with("0x") || last.starts_with("0X")) && last.size() > 2 &&
                   last.find_first_not_of("0123456789abcdefABCDEF", 2) == std::string_view::npos;
  if (last.empty() || hex || last.find_first_not_of("0123456789") == std::string_view::npos) {
    return false;
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
  // AI_ADDRCONFIG counts no loopback address: with a family asked for, it would refuse
  // "localhost" on a box whose only address of that family is loopback.
  hints.ai_flags = name.family == AF_UNSPEC ? AI_ADDRCONFIG : 0;
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

void Resolver::resolve(NamedAddress name, std::chrono::steady_clock::time_point deadline,
                       Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    jobs_.push_back(Job{std::move(name), deadline, std::move(done)});
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  cv_.notify_one();
}

void Resolver::run() {
  // Started from a loop thread: not pinned to its core, and named for what it does.
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &all);
  ::pthread_setaffinity_np(::pthread_self(), sizeof(all), &all);
  ::pthread_setname_np(::pthread_self(), "ringnet-resolve");
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    // A dial whose deadline passed while it queued (behind a slow lookup) has already
    // ended: its name is not looked up.
    if (std::chrono::steady_clock::now() < job.deadline) {
      SockAddr addr;
      const int rc = resolve_now(job.name, addr);
      job.done(addr, rc);
    }
    lock.lock();
  }
}

}  // namespace ringnet
