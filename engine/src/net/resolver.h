// SPDX-License-Identifier: MIT
// Host names for listen and dial. A name is looked up with getaddrinfo, which may block
// for the system resolver's timeouts, so dials never look one up on a loop: the loop
// hands the lookup to the engine's Resolver thread and goes on; the answer comes back
// as a task (EventLoop::dial_name / on_resolved).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "ringnet/address.h"

namespace ringnet {

// A TCP address whose host part is a name ("tcp://localhost:9000", "db.local:5432",
// "tcp6://example.org:443"); family is AF_INET for tcp4://, AF_INET6 for tcp6://, else
// AF_UNSPEC. False for a numeric address, a Unix path, or text that is no address at all.
struct NamedAddress {
  std::string host;
  uint16_t port = 0;
  int family = AF_UNSPEC;
};
bool parse_named_address(std::string_view text, NamedAddress& out);

// Blocking lookup: the first IPv4 address of the name if it has one (most servers listen
// on IPv4 when both exist), else its first IPv6 one. Returns 0, or getaddrinfo's EAI_*
// code (gai_strerror says what it means).
int resolve_now(const NamedAddress& name, SockAddr& out);

// One thread, started by the first lookup, that runs lookups in order and reports each to
// its `done` on that thread. The destructor drops lookups not begun and waits for the one
// under way.
class Resolver {
 public:
  using Done = std::function<void(const SockAddr& addr, int gai_error)>;
  Resolver() = default;
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Any thread. A lookup still queued at `deadline` is dropped without a call to `done`
  // (its dial has timed out meanwhile).
  void resolve(NamedAddress name, std::chrono::steady_clock::time_point deadline, Done done);

 private:
  struct Job {
    NamedAddress name;
    std::chrono::steady_clock::time_point deadline;
    Done done;
  };
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ringnet
