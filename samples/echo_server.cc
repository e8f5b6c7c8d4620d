// echo_server: sends every byte back. The smallest real ringnet server, and the one the
// benchmarks drive.
//
//   echo_server --port 9000 --loops 2 --balancer rr|lc|hash [--reuseport] [--unix PATH]
//               [--host 127.0.0.1] [--pin] [--backend auto|epoll|io_uring]
//               [--no-uring-bundle]
//
// Prints one "listening on <address>" line per listener once it accepts connections.
// SIGINT/SIGTERM stop it cleanly.
#include <ringnet/engine.h>
#include <ringnet/log.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

namespace {

class EchoHandler final : public ringnet::EventHandler {
 public:
  ringnet::Action on_traffic(ringnet::Conn& c) override {
    std::string_view bytes = c.next();
    if (ringnet::Status s = c.write(bytes); !s) return ringnet::Action::kClose;
    return ringnet::Action::kNone;
  }
};

struct Flags {
  std::string host = "127.0.0.1";
  int port = 9000;
  std::string unix_path;
  ringnet::Options options;
};

[[noreturn]] void usage(const char* bad) {
  std::fprintf(stderr,
               "echo_server: bad argument '%s'\n"
               "usage: echo_server [--host H] [--port N] [--unix PATH] [--loops N]\n"
               "                   [--balancer rr|lc|hash] [--reuseport] [--pin]\n"
               "                   [--backend auto|epoll|io_uring] [--no-uring-bundle]\n",
               bad);
  std::exit(2);
}

Flags parse_flags(int argc, char** argv) {
  Flags f;
  f.options.backend = ringnet::Backend::kEpoll;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage(argv[i]);
      return argv[++i];
    };
    if (a == "--host") {
      f.host = value();
    } else if (a == "--port") {
      f.port = std::atoi(std::string(value()).c_str());
    } else if (a == "--unix") {
      f.unix_path = value();
    } else if (a == "--loops") {
      f.options.loops = std::atoi(std::string(value()).c_str());
    } else if (a == "--balancer") {
      std::string_view b = value();
      if (b == "rr") f.options.balancer = ringnet::Balancer::kRoundRobin;
      else if (b == "lc") f.options.balancer = ringnet::Balancer::kLeastConnections;
      else if (b == "hash") f.options.balancer = ringnet::Balancer::kSourceHash;
      else usage(argv[i]);
    } else if (a == "--backend") {
      std::string_view b = value();
      if (b == "auto") f.options.backend = ringnet::Backend::kAuto;
      else if (b == "epoll") f.options.backend = ringnet::Backend::kEpoll;
      else if (b == "io_uring") f.options.backend = ringnet::Backend::kIoUring;
      else usage(argv[i]);
    } else if (a == "--reuseport") {
      f.options.reuse_port = true;
    } else if (a == "--pin") {
      f.options.pin_loops = true;
    } else if (a == "--no-uring-bundle") {
      f.options.uring_recv_bundle = false;
    } else {
      usage(argv[i]);
    }
  }
  return f;
}

// Blocks SIGINT/SIGTERM in every thread (loop threads inherit the mask) and waits for
// them on a helper thread, so stopping runs in normal thread context, not a handler.
void stop_on_signals(ringnet::Engine& engine) {
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([&engine] {
    int sig = 0;
    sigwait(&set, &sig);
    engine.stop();
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = parse_flags(argc, argv);
  EchoHandler handler;
  ringnet::Engine engine(handler, flags.options);
  std::string tcp = "tcp://" + (flags.host.find(':') != std::string::npos ? "[" + flags.host + "]"
                                                                           : flags.host) +
                    ":" + std::to_string(flags.port);
  std::string addr = flags.unix_path.empty() ? tcp : "unix:" + flags.unix_path;
  if (ringnet::Status s = engine.listen(addr); !s) {
    std::fprintf(stderr, "echo_server: listen %s: %s\n", addr.c_str(), s.message().c_str());
    return 1;
  }
  stop_on_signals(engine);
  if (ringnet::Status s = engine.start(); !s) {
    std::fprintf(stderr, "echo_server: start: %s\n", s.message().c_str());
    return 1;
  }
  for (const ringnet::SockAddr& a : engine.listen_addrs()) {
    std::printf("listening on %s (%d loops, %s)\n", a.to_string().c_str(), engine.loop_count(),
                ringnet::backend_name(engine.options().backend));
  }
  std::fflush(stdout);
  engine.wait();
  return 0;
}
