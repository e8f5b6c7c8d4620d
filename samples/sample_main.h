// What every sample server shares: the command line, listening, SIGINT/SIGTERM, the
// "listening on" line. Public headers only, like the samples themselves.
//
//   <sample> [--host H] [--port N] [--unix PATH] [--loops N] [--balancer rr|lc|hash]
//            [--reuseport] [--pin] [--backend auto|epoll|io_uring] [--no-uring-bundle]
//            [--no-uring-register-ring] [--no-uring-fixed-files] [--uring-buffer-inc]
//            [--uring-buffers-initial N]
//            [--drain-timeout MS] [--admin-port N] [--no-metrics]
//            [--idle-timeout MS] [--read-timeout MS] [--write-timeout MS] [sample-specific flags]
//
// Prints one "listening on <address> (N loops, backend)" line per listener once it
// accepts connections. --admin-port N serves /metrics (Prometheus text) and /healthz on
// host:N (0 picks a free port) and prints "admin on <address>"; it also shows glibc's
// heap (process_heap_in_use_bytes, process_heap_free_bytes), so a soak can tell memory in
// use from memory the allocator kept after a peak (RSS counts both). --no-metrics turns the
// loop histograms off (Options::metrics), to measure what they cost. SIGINT/SIGTERM drain it gracefully (Engine::shutdown): listeners
// close at once, requests already received are answered, and after --drain-timeout
// (default 5000 ms) whatever is still busy is closed; then it exits 0. The timeouts are
// Options::idle_timeout / read_timeout / write_timeout (0, the default, is off): a server
// facing untrusted clients sets --read-timeout so that a request trickled a byte at a time
// (slowloris) cannot hold a connection forever, and --idle-timeout for silent ones.
#pragma once

#include <ringnet/engine.h>
#include <ringnet/signals.h>

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace sample {

struct Flags {
  std::string host = "127.0.0.1";
  int port = 9000;
  std::string unix_path;
  std::chrono::milliseconds drain_timeout{5000};
  int admin_port = -1;  // -1: no admin listener
  ringnet::Options options;
};

// A sample's own flags: return true when `flag` was one of them (take its value with
// value()), false to have it reported as unknown.
using ExtraFlag = std::function<bool(std::string_view flag, const std::function<std::string_view()>& value)>;

[[noreturn]] inline void usage(const char* prog, const char* bad, const char* extra_usage) {
  std::fprintf(stderr,
               "%s: bad argument '%s'\n"
               "usage: %s [--host H] [--port N] [--unix PATH] [--loops N]\n"
               "          [--balancer rr|lc|hash] [--reuseport] [--pin]\n"
               "          [--backend auto|epoll|io_uring] [--no-uring-bundle]\n"
               "          [--no-uring-register-ring] [--no-uring-fixed-files] [--uring-buffer-inc]\n"
               "          [--uring-buffers-initial N]\n"
               "          [--drain-timeout MS] [--admin-port N] [--no-metrics]\n"
               "          [--idle-timeout MS] [--read-timeout MS] [--write-timeout MS] %s\n",
               prog, bad, prog, extra_usage);
  std::exit(2);
}

inline Flags parse_flags(int argc, char** argv, const ExtraFlag& extra = {},
                         const char* extra_usage = "") {
  Flags f;
  f.options.backend = ringnet::Backend::kEpoll;
  const char* prog = argv[0];
  if (const char* slash = std::strrchr(prog, '/')) prog = slash + 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* arg = argv[i];
    std::function<std::string_view()> value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage(prog, arg, extra_usage);
      return argv[++i];
    };
    auto number = [&]() {
      std::string v(value());
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 1'000'000) usage(prog, arg, extra_usage);
      return static_cast<int>(n);
    };
    if (a == "--host") {
      f.host = value();
    } else if (a == "--port") {
      f.port = number();
    } else if (a == "--unix") {
      f.unix_path = value();
    } else if (a == "--loops") {
      f.options.loops = number();
    } else if (a == "--balancer") {
      std::string_view b = value();
      if (b == "rr") f.options.balancer = ringnet::Balancer::kRoundRobin;
      else if (b == "lc") f.options.balancer = ringnet::Balancer::kLeastConnections;
      else if (b == "hash") f.options.balancer = ringnet::Balancer::kSourceHash;
      else usage(prog, arg, extra_usage);
    } else if (a == "--backend") {
      std::string_view b = value();
      if (b == "auto") f.options.backend = ringnet::Backend::kAuto;
      else if (b == "epoll") f.options.backend = ringnet::Backend::kEpoll;
      else if (b == "io_uring") f.options.backend = ringnet::Backend::kIoUring;
      else usage(prog, arg, extra_usage);
    } else if (a == "--reuseport") {
      f.options.reuse_port = true;
    } else if (a == "--pin") {
      f.options.pin_loops = true;
    } else if (a == "--drain-timeout") {
      f.drain_timeout = std::chrono::milliseconds(number());
    } else if (a == "--admin-port") {
      f.admin_port = number();
      if (f.admin_port > 65535) usage(prog, arg, extra_usage);
    } else if (a == "--idle-timeout") {
      f.options.idle_timeout = std::chrono::milliseconds(number());
    } else if (a == "--read-timeout") {
      f.options.read_timeout = std::chrono::milliseconds(number());
    } else if (a == "--write-timeout") {
      f.options.write_timeout = std::chrono::milliseconds(number());
    } else if (a == "--no-metrics") {
      f.options.metrics = false;
    } else if (a == "--no-uring-bundle") {
      f.options.uring_recv_bundle = false;
    } else if (a == "--no-uring-register-ring") {
      f.options.uring_register_ring = false;
    } else if (a == "--no-uring-fixed-files") {
      f.options.uring_fixed_files = false;
    } else if (a == "--uring-buffer-inc") {
      f.options.uring_buffer_incremental = true;
    } else if (a == "--uring-buffers-initial") {
      f.options.uring_buffer_initial = static_cast<unsigned>(number());
    } else if (!extra || !extra(a, value)) {
      usage(prog, arg, extra_usage);
    }
  }
  return f;
}

// A sample's own metric families, appended to /metrics (see Engine::add_metrics).
using Collector = std::function<void(ringnet::MetricsWriter&)>;

// glibc's view of the heap (mallinfo2 walks every arena under its lock: fine for a scrape).
inline void heap_metrics(ringnet::MetricsWriter& w) {
  struct mallinfo2 mi = mallinfo2();
  w.family("process_heap_in_use_bytes", ringnet::MetricType::kGauge,
           "Bytes malloc has handed out and not had back (mallinfo2 uordblks + hblkhd).");
  w.value("", static_cast<uint64_t>(mi.uordblks + mi.hblkhd));
  w.family("process_heap_free_bytes", ringnet::MetricType::kGauge,
           "Free bytes malloc keeps in its arenas for reuse (mallinfo2 fordblks); resident "
           "once touched unless trimmed.");
  w.value("", static_cast<uint64_t>(mi.fordblks));
}

// Listens, starts, prints the listening lines, waits for a signal. Returns the exit code.
inline int run(const char* name, ringnet::EventHandler& handler, const Flags& flags,
               Collector collector = {}) {
  ringnet::Engine engine(handler, flags.options);
  std::string host = flags.host.find(':') != std::string::npos ? "[" + flags.host + "]"
                                                                : flags.host;
  std::string addr = flags.unix_path.empty()
                         ? "tcp://" + host + ":" + std::to_string(flags.port)
                         : "unix:" + flags.unix_path;
  if (ringnet::Status s = engine.listen(addr); !s) {
    std::fprintf(stderr, "%s: listen %s: %s\n", name, addr.c_str(), s.message().c_str());
    return 1;
  }
  if (flags.admin_port >= 0) {
    std::string admin = "tcp://" + host + ":" + std::to_string(flags.admin_port);
    if (ringnet::Status s = engine.listen_admin(admin); !s) {
      std::fprintf(stderr, "%s: admin listener %s: %s\n", name, admin.c_str(),
                   s.message().c_str());
      return 1;
    }
    engine.add_metrics(heap_metrics);
    if (collector) engine.add_metrics(std::move(collector));
  }
  ringnet::ShutdownOnSignals signals(engine, flags.drain_timeout);
  if (ringnet::Status s = engine.start(); !s) {
    std::fprintf(stderr, "%s: start: %s\n", name, s.message().c_str());
    return 1;
  }
  for (const ringnet::SockAddr& a : engine.listen_addrs()) {
    std::printf("listening on %s (%d loops, %s)\n", a.to_string().c_str(), engine.loop_count(),
                ringnet::backend_name(engine.options().backend));
  }
  if (flags.admin_port >= 0) {
    std::printf("admin on %s (/metrics, /healthz)\n", engine.admin_addr().to_string().c_str());
  }
  std::fflush(stdout);
  engine.wait();
  if (signals.received() != 0) {
    ringnet::EngineStats st = engine.stats();
    std::fprintf(stderr, "%s: drained after signal %d (%llu connections closed at the deadline)\n",
                 name, signals.received(),
                 static_cast<unsigned long long>(st.drain_deadline_closed));
  }
  return 0;
}

}  // namespace sample
