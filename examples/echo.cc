// SPDX-License-Identifier: MIT
// The README's embedding example (## Embedding) as a program: an echo server on ringnet's
// public headers only, plus an address argument, a "listening on" line once it accepts,
// and a graceful exit on SIGTERM/SIGINT. Each directory beside this file builds it one way
// (meson subproject, CMake find_package, pkg-config); scripts/consumer_test builds all
// three against an installed ringnet and talks to each over loopback.
//
//   echo [address]        default tcp://0.0.0.0:9000; tcp://127.0.0.1:0 picks a free port
#include <ringnet/engine.h>
#include <ringnet/log.h>
#include <ringnet/signals.h>

#include <chrono>
#include <cstdio>
#include <string_view>

struct Echo : ringnet::EventHandler {
  ringnet::Action on_traffic(ringnet::Conn& c) override {
    std::string_view bytes = c.next();          // view of the inbound bytes, no copy
    if (!c.write(bytes)) return ringnet::Action::kClose;  // queued; flushed once per iteration
    return ringnet::Action::kNone;
  }
  void on_close(ringnet::Conn& c, ringnet::CloseInfo info) override {
    ringnet::log(ringnet::LogLevel::kDebug, "{} closed: {}", c.remote_addr().to_string(),
                 ringnet::close_reason_name(info.reason));
  }
};

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "tcp://0.0.0.0:9000";
  Echo handler;
  ringnet::Options opts;                     // loops = online cores, round-robin
  ringnet::Engine engine(handler, opts);
  if (auto s = engine.listen(address); !s) {
    std::fprintf(stderr, "echo: listen %s: %s\n", address, s.message().c_str());
    return 1;
  }
  // Before any thread exists (the engine starts its loops in start()).
  ringnet::ShutdownOnSignals signals(engine, std::chrono::seconds(1));
  if (auto s = engine.start(); !s) {
    std::fprintf(stderr, "echo: start: %s\n", s.message().c_str());
    return 1;
  }
  for (const ringnet::SockAddr& a : engine.listen_addrs()) {
    std::printf("listening on %s\n", a.to_string().c_str());
  }
  std::fflush(stdout);
  engine.wait();                             // until SIGTERM/SIGINT or Action::kShutdown
  return 0;
}
