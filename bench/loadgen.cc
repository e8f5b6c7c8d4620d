// SPDX-License-Identifier: MIT
// loadgen: echo load generator for ringnet and its baselines. It does not use the engine.
//
// --threads raw event loops share --conns connections: edge-triggered epoll
// (loadgen_worker.cc) or, with --backend io_uring, liburing (loadgen_uring_worker.cc).
// Each connection
// keeps --pipeline messages of --size bytes in flight; a message's bytes are derived from
// (connection id, sequence number) (echo_payload.h) and every echoed byte is checked.
// After --warmup seconds of traffic, a window of --duration seconds is measured:
// throughput, latency percentiles from a log-bucketed histogram, and, with --server-pid,
// the server's CPU time over exactly that window, per message.
//
//   ./loadgen --port 19000 --conns 50 --size 64 --pipeline 16 --server-pid $(pidof srv)
//   ./loadgen --port 19000 --conns 10000 --idle < fifo     # RSS per idle connection
//
// Exit status: 0 ok; 1 connection errors, verification failures or no traffic; 2 usage.
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "echo_payload.h"
#include "latency_histogram.h"
#include "loadgen_options.h"
#include "loadgen_worker.h"
#include "proc_stat.h"

namespace bench {
namespace {

struct Totals {
  WorkerStats stats;
  double window_s = 0;
  double server_cpu_s = -1;  // < 0: not measured
  double client_cpu_s = 0;
};

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// Each connection needs one fd; keep headroom for epoll, stdio and the signalfd.
bool raise_fd_limit(size_t conns) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  if (conns + 64 > rl.rlim_cur) {
    std::fprintf(stderr, "loadgen: %zu connections need more than the fd limit %llu\n", conns,
                 static_cast<unsigned long long>(rl.rlim_cur));
    return false;
  }
  return true;
}

// Sleeps until the CLOCK_MONOTONIC deadline; false if SIGINT/SIGTERM came first.
bool sleep_until(int64_t deadline_ns, const sigset_t& signals) {
  for (;;) {
    int64_t left = deadline_ns - monotonic_ns();
    if (left <= 0) return true;
    timespec ts{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig > 0) return false;
  }
}

// Idle mode: hold until stdin reaches EOF (or is closed) or a signal arrives.
void hold_until_released(const sigset_t& signals) {
  int sfd = signalfd(-1, &signals, SFD_CLOEXEC);
  pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sfd, POLLIN, 0}};
  char buf[512];
  for (;;) {
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) break;
    if (fds[0].revents & POLLNVAL) break;
    if (fds[0].revents && read(STDIN_FILENO, buf, sizeof buf) <= 0) break;
  }
  close(sfd);
}

// Runs warmup and the measured window on the main thread while workers generate load.
void measure_window(const LoadgenOptions& opts, RunControl* control, const sigset_t& sigs,
                    Totals* totals) {
  int64_t start = monotonic_ns() + static_cast<int64_t>(opts.warmup_s * 1e9);
  control->window_start_ns.store(start);
  control->window_end_ns.store(start + static_cast<int64_t>(opts.duration_s * 1e9));
  control->go.store(true);
  control->go.notify_all();
  bool interrupted = !sleep_until(start, sigs);
  if (interrupted) {  // during warm-up: nothing measured, leave now
    control->window_end_ns.store(start);
    control->stop.store(true);
  }
  double server0 = opts.server_pid ? process_cpu_seconds(opts.server_pid) : -1;
  double client0 = self_cpu_seconds();
  if (!interrupted && !sleep_until(control->window_end_ns.load(), sigs)) {
    control->window_end_ns.store(monotonic_ns());  // end early, report what was measured
  }
  double server1 = opts.server_pid ? process_cpu_seconds(opts.server_pid) : -1;
  totals->client_cpu_s = self_cpu_seconds() - client0;
  int64_t end = control->window_end_ns.load();
  totals->window_s = end > start ? (end - start) / 1e9 : 0;
  if (server0 >= 0 && server1 >= 0) totals->server_cpu_s = server1 - server0;
}

double us(uint64_t ns) { return ns / 1e3; }

void print_table(const LoadgenOptions& o, const Totals& t) {
  const WorkerStats& s = t.stats;
  double rate = t.window_s > 0 ? s.messages / t.window_s : 0;
  std::printf("loadgen  %s  conns %zu  size %zu B  pipeline %zu  threads %zu  client %s\n",
              o.target().c_str(), o.conns, o.size, o.pipeline, o.threads,
              backend_name(o.backend));
  std::printf("  %-14s %.2f s\n", "window", t.window_s);
  std::printf("  %-14s %llu\n", "messages", static_cast<unsigned long long>(s.messages));
  std::printf("  %-14s %.0f msgs/s\n", "throughput", rate);
  std::printf("  %-14s %.2f MiB/s (one direction)\n", "bandwidth",
              rate * o.size / (1024.0 * 1024.0));
  std::printf("  %-14s p50 %.1f us  p99 %.1f us  p999 %.1f us  max %.1f us\n", "latency",
              us(s.latency.quantile(0.50)), us(s.latency.quantile(0.99)),
              us(s.latency.quantile(0.999)), us(s.latency.max()));
  std::printf("  %-14s verify %llu  connection %llu\n", "errors",
              static_cast<unsigned long long>(s.verify_errors),
              static_cast<unsigned long long>(s.conn_errors));
  if (t.server_cpu_s >= 0) {
    std::printf("  %-14s %.2f s (%.1f%% of a core)  %.3f us/msg\n", "server cpu",
                t.server_cpu_s, t.window_s > 0 ? 100 * t.server_cpu_s / t.window_s : 0.0,
                s.messages ? t.server_cpu_s * 1e6 / s.messages : 0.0);
  }
  std::printf("  %-14s %.2f s  %.3f us/msg\n", "loadgen cpu", t.client_cpu_s,
              s.messages ? t.client_cpu_s * 1e6 / s.messages : 0.0);
}

void print_machine(const LoadgenOptions& o, const Totals& t) {
  const WorkerStats& s = t.stats;
  double rate = t.window_s > 0 ? s.messages / t.window_s : 0;
  double msgs = static_cast<double>(s.messages ? s.messages : 1);
  std::string srv = "", srv_per = "";
  if (t.server_cpu_s >= 0) {
    srv = std::to_string(t.server_cpu_s);
    srv_per = std::to_string(s.messages ? t.server_cpu_s * 1e6 / msgs : 0.0);
  }
  bool json = o.format == OutputFormat::kJson;
  const char* fmt = json
      ? "{\"target\":\"%s\",\"conns\":%zu,\"size\":%zu,\"pipeline\":%zu,\"threads\":%zu,"
        "\"window_s\":%.3f,\"messages\":%llu,\"msgs_per_s\":%.1f,\"mib_per_s\":%.3f,"
        "\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
        "\"verify_errors\":%llu,\"conn_errors\":%llu,\"server_cpu_s\":%s,"
        "\"server_cpu_us_per_msg\":%s,\"client_cpu_us_per_msg\":%.4f,"
        "\"client_backend\":\"%s\"}\n"
      : "%s,%zu,%zu,%zu,%zu,%.3f,%llu,%.1f,%.3f,%.2f,%.2f,%.2f,%.2f,%llu,%llu,%s,%s,%.4f,%s\n";
  if (json && srv.empty()) srv = srv_per = "null";
  std::printf(fmt, o.target().c_str(), o.conns, o.size, o.pipeline, o.threads, t.window_s,
              static_cast<unsigned long long>(s.messages), rate,
              rate * o.size / (1024.0 * 1024.0), us(s.latency.quantile(0.50)),
              us(s.latency.quantile(0.99)), us(s.latency.quantile(0.999)),
              us(s.latency.max()), static_cast<unsigned long long>(s.verify_errors),
              static_cast<unsigned long long>(s.conn_errors), srv.c_str(), srv_per.c_str(),
              s.messages ? t.client_cpu_s * 1e6 / msgs : 0.0, backend_name(o.backend));
}

std::vector<std::unique_ptr<Worker>> make_workers(const LoadgenOptions& opts,
                                                  const Target& target, RunControl* control) {
  std::vector<std::unique_ptr<Worker>> workers;
  for (size_t t = 0; t < opts.threads; ++t) {
    std::vector<uint64_t> ids;
    for (size_t id = t; id < opts.conns; id += opts.threads) ids.push_back(id);
    workers.push_back(opts.backend == ClientBackend::kUring
                          ? make_uring_worker(opts, target, std::move(ids), control)
                          : make_epoll_worker(opts, target, std::move(ids), control));
  }
  return workers;
}

// Settles --backend auto; false (with a message) when io_uring was asked for but the
// kernel refuses it.
bool resolve_backend(LoadgenOptions* opts) {
  if (opts->backend == ClientBackend::kEpoll) return true;
  std::string why;
  bool uring_ok = uring_available(&why);
  if (opts->backend == ClientBackend::kAuto) {
    opts->backend = uring_ok ? ClientBackend::kUring : ClientBackend::kEpoll;
    std::fprintf(stderr, "loadgen: --backend auto: client uses %s%s\n",
                 backend_name(opts->backend), uring_ok ? "" : (" (" + why + ")").c_str());
    return true;
  }
  if (!uring_ok) std::fprintf(stderr, "loadgen: --backend io_uring: %s\n", why.c_str());
  return uring_ok;
}

void add_stats(const WorkerStats& from, WorkerStats* to) {
  to->messages += from.messages;
  to->connected += from.connected;
  to->verify_errors += from.verify_errors;
  to->conn_errors += from.conn_errors;
  to->latency.merge(from.latency);
}

int run(const LoadgenOptions& opts, const Target& target, const sigset_t& sigs) {
  RunControl control;
  auto workers = make_workers(opts, target, &control);
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (int n; (n = control.ready.load()) < static_cast<int>(workers.size());) {
    control.ready.wait(n);
  }
  Totals totals;
  bool connected = !control.stop.load();
  if (!connected) {
    control.go.store(true);
    control.go.notify_all();
  } else if (opts.idle) {
    control.go.store(true);
    control.go.notify_all();
    std::printf("IDLE READY %zu\n", opts.conns);
    std::fflush(stdout);
    hold_until_released(sigs);
    control.stop.store(true);
  } else {
    measure_window(opts, &control, sigs, &totals);
  }
  for (auto& t : threads) t.join();
  for (auto& w : workers) add_stats(w->stats(), &totals.stats);
  const WorkerStats& s = totals.stats;
  if (!connected || opts.idle) {
    std::fprintf(stderr, "loadgen: %llu of %zu connected, %llu connection errors\n",
                 static_cast<unsigned long long>(s.connected), opts.conns,
                 static_cast<unsigned long long>(s.conn_errors));
    return connected && s.conn_errors == 0 ? 0 : 1;
  }
  if (opts.format == OutputFormat::kTable) {
    print_table(opts, totals);
  } else {
    print_machine(opts, totals);
  }
  if (s.messages == 0) std::fprintf(stderr, "loadgen: no message completed in the window\n");
  return s.verify_errors == 0 && s.conn_errors == 0 && s.messages > 0 ? 0 : 1;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  bench::LoadgenOptions opts = bench::parse_loadgen_options(argc, argv);
  bench::Target target;
  std::string error;
  if (!bench::resolve_target(opts, &target, &error)) {
    std::fprintf(stderr, "loadgen: %s\n", error.c_str());
    return 2;
  }
  if (opts.server_pid && bench::process_cpu_seconds(opts.server_pid) < 0) {
    std::fprintf(stderr, "loadgen: cannot read /proc/%d/stat\n", opts.server_pid);
    return 2;
  }
  if (!bench::raise_fd_limit(opts.conns)) return 2;
  if (!bench::resolve_backend(&opts)) return 2;
  // Signals are taken synchronously by the main thread (sigtimedwait / signalfd); workers
  // inherit the blocked mask. Writes to a reset socket must fail with EPIPE, not kill us.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  bench::EchoPayload::instance();  // build the table before any timing starts
  return bench::run(opts, target, sigs);
}
