// SPDX-License-Identifier: MIT
// job_worker: the worker of the job dispatcher sample. It executes runs that the
// dispatcher sends over RPC, at most once per run id while it lives, and keeps itself
// listed in redis (jobs::Coordinator's worker registry) so that dispatchers can find it.
//
//   job_worker --port N [--host 127.0.0.1] --redis HOST:PORT [--service worker]
//     [--capacity 4] [--ttl-ms 3000] [--delay-ms 100] --dedupe-log FILE
//     [--attempt-log FILE] [--advertise ADDR] [--admin-port N] [the usual server flags]
//
// RPC: service --service, method 1 "run", request body "<run_id>\n<payload>" (the payload
// is not used). By run id:
//   first time    executes: waits --delay-ms (a timer thread, no loop or pool thread is
//                 held), appends "<run_id> <address> <unix_ms_finished>\n" to --dedupe-log
//                 (O_APPEND, one write(2): lines stay whole with several workers on one
//                 file), replies "ok <run_id> <address>". With --capacity runs executing,
//                 a new one is refused: RESOURCE_EXHAUSTED "busy".
//   while pending the call is attached to the run and gets the same "ok ..." reply when it
//                 finishes (counted as waited); nothing runs twice.
//   finished      replies "dup <run_id> <address>" at once (counted as deduped); nothing
//                 is logged. Results are kept 10 minutes, at most 100,000 (oldest go first).
//   malformed     no newline, an empty run id, whitespace or control bytes in it, or over
//                 1024 bytes: INVALID_ARGUMENT.
// A dedupe log that cannot be written fails the run's calls with INTERNAL and forgets the
// run, so a retry executes it again. --attempt-log FILE: every well-formed request (first,
// repeat or refused) appends "<unix_ms_received> <run_id>\n" (one write(2)).
//
// <address> is the registered one: "tcp://" + the bound address (127.0.0.1:PORT), or
// --advertise. It prints "listening on 127.0.0.1:PORT (service NAME as ADDRESS, N loops,
// BACKEND)" once registered: before the line it registers (service, address, capacity,
// --ttl-ms), then refreshes every ttl/3 on a thread of its own with its own Coordinator (a
// failure is logged at most every 5 s and retried within 250 ms). On SIGINT/SIGTERM it
// deregisters first, then drains (requests received are answered, runs in progress finish
// within --drain-timeout), prints
//   job_worker: runs=N deduped=N waited=N refused=N
// on stderr and exits 0. Killed, it vanishes from the registry once its ttl lapses.
//
// Why dedupe per worker, in memory, is enough: the dispatcher routes every run of a job to
// the worker its consistent hash picks while that worker lives, so the repeats (a retry, a
// second dispatcher replica after a leader change) meet the first attempt's result here.
// A run is retried elsewhere only when its worker died before finishing, so it never
// logged the run. (Dying between the log line and the answer does repeat it elsewhere:
// at least once, not exactly once.) Metrics (--admin-port): jobs_worker_runs_total,
// _deduped_total, _waiting_total, _refused_total, and the jobs_worker_in_flight gauge.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <ringnet/proto/rpc_server.h>

#include "coordinator.h"
#include "run_table.h"
#include "sample_main.h"

namespace {

using namespace std::chrono_literals;
using ringnet::proto::RpcCallPtr;
using Clock = std::chrono::steady_clock;

// Keeps this worker in the registry: registers, refreshes every ttl/3, deregisters on
// stop(). Its Coordinator is used by start()'s caller, then by its own thread only.
// Threads: start() on the main thread; stop() from any, more than once.
class Registrar {
 public:
  Registrar(jobs::CoordinatorOptions o, std::string service, uint32_t capacity,
            std::chrono::milliseconds ttl)
      : coord_(std::move(o)), service_(std::move(service)), capacity_(capacity), ttl_(ttl) {}
  ~Registrar() { stop(); }

  // Registers now (a failure is reported and retried by the thread), then refreshes.
  // Nothing happens if stop() came first.
  void start(std::string address) {
    std::lock_guard life(life_mu_);
    if (stopped_) return;
    address_ = std::move(address);
    refresh();
    thread_ = std::thread([this] { refresh_loop(); });
  }

  // Stops refreshing and deregisters; returns when done.
  void stop() {
    std::lock_guard life(life_mu_);
    if (stopped_) return;
    stopped_ = true;
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  bool refresh() {
    const jobs::CoordResult r = coord_.register_worker(service_, address_, capacity_, ttl_);
    const auto now = Clock::now();
    if (r == jobs::CoordResult::kOk) {
      if (failures_ > 0) {
        std::fprintf(stderr, "job_worker: registered again after %llu failed attempts\n",
                     static_cast<unsigned long long>(failures_));
      }
      failures_ = 0;
      return true;
    }
    if (++failures_ == 1 || now - last_report_ >= 5s) {
      std::fprintf(stderr, "job_worker: registering %s in %s: %s (failure %llu; retrying)\n",
                   address_.c_str(), service_.c_str(), coord_.last_error().c_str(),
                   static_cast<unsigned long long>(failures_));
      last_report_ = now;
    }
    return false;
  }

  void refresh_loop() {
    const auto every = std::max<std::chrono::milliseconds>(ttl_ / 3, 1ms);
    auto next = Clock::now() + (failures_ == 0 ? every : std::min(every, 250ms));
    std::unique_lock lock(mu_);
    while (!cv_.wait_until(lock, next, [this] { return stop_; })) {
      lock.unlock();
      const bool ok = refresh();
      lock.lock();
      next = Clock::now() + (ok ? every : std::min<std::chrono::milliseconds>(every, 250ms));
    }
    lock.unlock();
    if (coord_.deregister_worker(service_, address_) != jobs::CoordResult::kOk) {
      std::fprintf(stderr, "job_worker: deregistering %s: %s (it expires after %lld ms)\n",
                   address_.c_str(), coord_.last_error().c_str(),
                   static_cast<long long>(ttl_.count()));
    }
  }

  jobs::Coordinator coord_;
  const std::string service_;
  const uint32_t capacity_;
  const std::chrono::milliseconds ttl_;
  std::string address_;
  uint64_t failures_ = 0;
  Clock::time_point last_report_{};
  std::mutex life_mu_;  // start() and stop() one at a time
  bool stopped_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

void write_metrics(ringnet::MetricsWriter& w, const jobs::WorkerCounters& c) {
  auto counter = [&w](const char* name, const char* help, const std::atomic<uint64_t>& v) {
    w.family(name, ringnet::MetricType::kCounter, help);
    w.value("", v.load(std::memory_order_relaxed));
  };
  counter("jobs_worker_runs_total", "Runs executed (logged to the dedupe log).", c.runs);
  counter("jobs_worker_deduped_total", "Repeats of a finished run, answered from its result.",
          c.deduped);
  counter("jobs_worker_waiting_total", "Repeats that waited for their pending run.", c.waited);
  counter("jobs_worker_refused_total", "New runs refused over --capacity.", c.refused);
  w.family("jobs_worker_in_flight", ringnet::MetricType::kGauge, "Runs executing now.");
  w.value("", c.in_flight.load(std::memory_order_relaxed));
}

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "job_worker: %s (see --help)\n", why.c_str());
  std::exit(2);
}

struct Config {
  sample::Flags server;
  jobs::CoordinatorOptions redis;
  std::string service = "worker", dedupe_log, attempt_log, advertise;
  uint32_t capacity = 4;
  std::chrono::milliseconds ttl{3000}, delay{100};
};

// The command line; exits 0 on --help and 2 on a bad or missing flag.
Config parse_config(int argc, char** argv) {
  Config c;
  std::string redis;
  c.server = sample::parse_flags(
      argc, argv,
      "The job dispatcher's worker: RPC method 1 \"run\" (body \"<run_id>\\n<payload>\") "
      "executes each run id once (waits --delay-ms, logs it to --dedupe-log), answers "
      "repeats from the result, and keeps the worker registered in redis.",
      [&](sample::FlagTable& t) {
        t.add_string("--redis", "HOST:PORT", "the coordinator's redis-server", "none, required",
                     &redis);
        t.add_string("--service", "NAME", "RPC service name, and the registry it joins",
                     c.service, &c.service);
        t.add_string("--prefix", "TEXT", "prefix of every redis key (the dispatchers' own)",
                     c.redis.prefix, &c.redis.prefix);
        t.add_number("--capacity", "N", "runs executing at once; more are refused (busy)",
                     &c.capacity, 1, 1'000'000, "run count");
        t.add_millis("--ttl-ms", "registration lifetime, refreshed every ttl/3", &c.ttl, 30,
                     86'400'000);
        t.add_millis("--delay-ms", "simulated work per run", &c.delay, 0, 3'600'000);
        t.add_string("--dedupe-log", "FILE", "append one line per executed run",
                     "none, required", &c.dedupe_log);
        t.add_string("--attempt-log", "FILE", "append one line per request received", "off",
                     &c.attempt_log);
        t.add_string("--advertise", "ADDR", "address to register instead of tcp://HOST:PORT",
                     "the bound address", &c.advertise);
      },
      sample::server_notes() + " On exit it prints \"job_worker: runs=N deduped=N waited=N "
                               "refused=N\" on stderr.");
  const size_t colon = redis.rfind(':');
  uint64_t port = 0;
  if (redis.empty()) usage_error("--redis is required");
  if (colon == std::string::npos || colon == 0 ||
      !sample::FlagTable::parse_decimal(std::string_view(redis).substr(colon + 1), 1, 65535,
                                        &port)) {
    usage_error("--redis: '" + redis + "' is not HOST:PORT");
  }
  c.redis.host = redis.substr(0, colon);
  if (c.redis.host.size() > 2 && c.redis.host.front() == '[') {
    c.redis.host = c.redis.host.substr(1, c.redis.host.size() - 2);
  }
  c.redis.port = static_cast<int>(port);
  if (c.dedupe_log.empty()) usage_error("--dedupe-log is required");
  if (c.service.empty()) usage_error("--service must not be empty");
  return c;
}

// The service with its one method, and the metrics. False (reported) on an error.
bool add_service(ringnet::proto::RpcServer& server, const Config& c, jobs::RunTable& runs,
                 std::shared_ptr<ringnet::proto::TlsContext> tls, const std::string& host) {
  const sample::Flags& f = c.server;
  ringnet::proto::RpcServiceOptions so;
  so.name = c.service;
  so.listen = {f.unix_path.empty() ? "tcp://" + host + ":" + std::to_string(f.port)
                                   : "unix:" + f.unix_path};
  so.timeout = c.delay + 30s;  // a caller's budget shortens it
  so.drain_limit = f.drain_timeout;
  so.transport = std::move(tls);
  // On the pool: the handler appends to the attempt log; it returns at once either way.
  ringnet::Status s = server.add_service(so).add_async(
      "run", 1, [&runs](RpcCallPtr call) { runs.handle(std::move(call)); },
      {.exec = ringnet::proto::RpcExec::kPool});
  if (!s) {
    std::fprintf(stderr, "job_worker: %s\n", s.message().c_str());
    return false;
  }
  if (f.admin_port >= 0) {
    server.engine().add_metrics(sample::heap_metrics);
    server.engine().add_metrics(
        [&runs](ringnet::MetricsWriter& w) { write_metrics(w, runs.counters()); });
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse_config(argc, argv);
  jobs::AppendFile dedupe, attempts;
  if (!dedupe.open(c.dedupe_log) || (!c.attempt_log.empty() && !attempts.open(c.attempt_log))) {
    std::fprintf(stderr, "job_worker: %s: %s\n",
                 (dedupe.is_open() ? c.attempt_log : c.dedupe_log).c_str(), std::strerror(errno));
    return 1;
  }
  const sample::Flags& f = c.server;
  const std::string host = f.host.find(':') != std::string::npos ? "[" + f.host + "]" : f.host;
  ringnet::proto::RpcServerOptions options;
  options.engine = f.options;
  if (f.admin_port >= 0) options.admin = "tcp://" + host + ":" + std::to_string(f.admin_port);
  jobs::RunTable runs(c.capacity, c.delay, dedupe, attempts.is_open() ? &attempts : nullptr);
  Registrar registrar(c.redis, c.service, c.capacity, c.ttl);
  std::shared_ptr<ringnet::proto::TlsContext> tls = sample::make_server_tls("job_worker", f.tls);
  sample::ReloadOnSighup reload(tls);  // before any thread: SIGHUP is blocked in all of them
  ringnet::proto::RpcServer server(options);
  if (!add_service(server, c, runs, tls, host)) return 1;

  // The signal thread must exist before every other thread (see ShutdownOnSignals).
  // Deregistered first, so that dispatchers stop choosing this worker while it drains.
  ringnet::ShutdownOnSignals signals([&](int) {
    registrar.stop();
    server.shutdown(f.drain_timeout);
  });
  runs.start();
  if (ringnet::Status s = server.start(); !s) {
    std::fprintf(stderr, "job_worker: start: %s\n", s.message().c_str());
    return 1;
  }
  const ringnet::SockAddr bound = server.service(c.service)->addrs().front();
  const std::string address = !c.advertise.empty() ? c.advertise
                              : bound.is_ip()      ? "tcp://" + bound.to_string()
                                                   : bound.to_string();
  runs.set_address(address);
  registrar.start(address);  // before the line: whoever read it finds the worker registered
  std::printf("listening on %s (service %s as %s, %d loops, %s)\n", bound.to_string().c_str(),
              c.service.c_str(), address.c_str(), server.engine().loop_count(),
              ringnet::backend_name(server.engine().options().backend));
  if (f.admin_port >= 0) {
    std::printf("admin on %s (/metrics, /healthz)\n",
                server.engine().admin_addr().to_string().c_str());
  }
  std::fflush(stdout);
  server.wait();
  registrar.stop();  // when the server stopped some other way
  runs.stop();
  const jobs::WorkerCounters& n = runs.counters();
  std::fprintf(stderr, "job_worker: runs=%llu deduped=%llu waited=%llu refused=%llu\n",
               static_cast<unsigned long long>(n.runs.load()),
               static_cast<unsigned long long>(n.deduped.load()),
               static_cast<unsigned long long>(n.waited.load()),
               static_cast<unsigned long long>(n.refused.load()));
  return 0;
}
