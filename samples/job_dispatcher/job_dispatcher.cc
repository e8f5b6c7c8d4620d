// SPDX-License-Identifier: MIT
// job_dispatcher: a replica of the distributed periodic job dispatcher. Replicas elect a
// leader through a lease with a fencing token in redis (coordinator.h); only the leader
// fires. It reads the live workers of each service from redis, routes each run by its
// routing key over them (HashRouter + RoutedRpcClient, so one job keeps its worker while
// that worker lives), and retries by the job's policy (scheduler.h).
//
//   job_dispatcher --config jobs.json --redis 127.0.0.1:6379 --id a --http-port 8081
//
// The control thread does everything that touches redis, in one loop: try to take the
// lease (a follower, every lease/10) or renew it (the leader, every lease/3), refresh the
// workers, and tick the scheduler. A leader that cannot renew for half its lease steps
// down on its own: by then another replica may hold the lease, and fencing refuses its
// writes anyway. SIGINT/SIGTERM: a leader releases the lease, so a follower takes over at
// its next try instead of at the lease's end.
//
// HTTP (--http-port): GET /healthz answers "leader <id> token N" or "follower <id>" (200),
// GET /metrics the jobs_* families, per-worker calls in flight and the leadership gauges.
#include <ringnet/engine.h>
#include <ringnet/log.h>
#include <ringnet/proto/hash_router.h>
#include <ringnet/proto/http_server.h>
#include <ringnet/proto/routed_rpc.h>
#include <ringnet/proto/rpc_client.h>
#include <ringnet/signals.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "../sample_main.h"
#include "coordinator.h"
#include "job_config.h"
#include "scheduler.h"

namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;
using ringnet::proto::HashRouter;
using ringnet::proto::RoutedRpcClient;

struct Settings {
  std::string config, redis = "127.0.0.1:6379", id, prefix = "ringnet:jobs:", host = "127.0.0.1";
  std::string redis_host;  // --redis, split
  int redis_port = 0;
  std::chrono::milliseconds lease{2000}, probe{1000};
  int http_port = -1;
  bool verbose = false;
};

// Leadership as the HTTP thread reads it.
struct Leadership {
  std::atomic<bool> leader{false};
  std::atomic<uint64_t> token{0}, changes{0};
};

// One service's workers: a router over them and the routed client.
struct Service {
  explicit Service(ringnet::proto::RpcClient& rpc, std::chrono::milliseconds probe)
      : router({.eject_after = 3, .readmit_after = 2}),
        routed(rpc, router, {.probe_interval = probe, .probe_timeout = 500ms}) {}
  HashRouter router;
  RoutedRpcClient routed;
};

class StatusHandler final : public ringnet::proto::HttpServerHandler {
 public:
  StatusHandler(const Settings& s, const Leadership& l, const jobs::Scheduler& sched,
                const std::map<std::string, std::unique_ptr<Service>>& services)
      : settings_(s), leadership_(l), scheduler_(sched), services_(services) {}

  ringnet::Action on_request(ringnet::Conn& c, const ringnet::proto::HttpRequest& req) override {
    std::string body;
    int status = 200;
    if (req.path == "/healthz") {
      body = leadership_.leader ? "leader " + settings_.id + " token " +
                                      std::to_string(leadership_.token.load()) + "\n"
                                : "follower " + settings_.id + "\n";
    } else if (req.path == "/metrics") {
      body = metrics();
    } else {
      status = 404;
      body = "not found\n";
    }
    return respond(c, req, status, "text/plain", body).is_ok() ? ringnet::Action::kNone
                                                               : ringnet::Action::kClose;
  }

 private:
  std::string metrics() const {
    ringnet::MetricsWriter w;
    scheduler_.write_metrics(w);
    w.family("jobs_leader", ringnet::MetricType::kGauge, "1 while this replica holds the lease.");
    w.value("", uint64_t{leadership_.leader ? 1u : 0u});
    w.family("jobs_fencing_token", ringnet::MetricType::kGauge, "The token of the lease held.");
    w.value("", leadership_.token.load());
    w.family("jobs_leader_changes_total", ringnet::MetricType::kCounter,
             "Times this replica took or lost the lease.");
    w.value("", leadership_.changes.load());
    w.family("jobs_worker_in_flight", ringnet::MetricType::kGauge,
             "Runs sent to a worker and not yet answered.");
    for (const auto& [name, svc] : services_)
      for (const auto& n : svc->router.nodes())
        w.value("service=\"" + w.escape_label(name) + "\",worker=\"" + w.escape_label(n.address) +
                    "\",ejected=\"" + (n.ejected ? "1" : "0") + "\"",
                n.in_flight);
    return w.take();
  }
  const Settings& settings_;
  const Leadership& leadership_;
  const jobs::Scheduler& scheduler_;
  const std::map<std::string, std::unique_ptr<Service>>& services_;
};

Settings parse(int argc, char** argv) {
  Settings s;
  sample::FlagTable t(argv[0], "A replica of the periodic job dispatcher: elects a leader in "
                               "redis, fires the jobs of --config on the live workers.");
  t.add_string("--config", "FILE", "the jobs (JSON, see samples/job_dispatcher/README.md)", "required", &s.config);
  t.add_string("--redis", "HOST:PORT", "the coordinator", s.redis, &s.redis);
  t.add_string("--id", "NAME", "this replica's name in the lease", "host-pid", &s.id);
  t.add_string("--prefix", "TEXT", "prefix of every redis key", s.prefix, &s.prefix);
  t.add_string("--host", "H", "address of the HTTP listener", s.host, &s.host);
  t.add_number("--http-port", "N", "serve /healthz and /metrics on host:N (0 picks one)",
               &s.http_port, 0, 65535, "port", "off");
  t.add_millis("--lease-ms", "the leader's lease (a follower takes over at most this long "
               "after the leader died, plus a tenth)", &s.lease, 300, 600000);
  t.add_millis("--probe-ms", "how often every worker is probed (rpc.list)", &s.probe, 50, 600000);
  t.add_switch("--verbose", "log every run fired", "off", &s.verbose);
  t.parse(argc, argv);
  auto usage_error = [&](const std::string& why) {
    std::fprintf(stderr, "%s: %s (--help)\n", t.prog().c_str(), why.c_str());
    std::exit(2);
  };
  if (s.config.empty()) usage_error("--config is required");
  size_t colon = s.redis.rfind(':');
  uint64_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !sample::FlagTable::parse_decimal(std::string_view(s.redis).substr(colon + 1), 1, 65535,
                                        &port))
    usage_error("--redis: '" + s.redis + "' is not HOST:PORT");
  s.redis_host = s.redis.substr(0, colon);
  s.redis_port = static_cast<int>(port);
  if (s.id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    s.id = std::string(host) + "-" + std::to_string(getpid());
  }
  return s;
}

}  // namespace

// What the signal thread wakes: the scheduler while it exists (main clears it first).
struct Waker {
  std::mutex mu;
  jobs::Scheduler* scheduler = nullptr;
  void set(jobs::Scheduler* s) {
    std::lock_guard lk(mu);
    scheduler = s;
  }
  void wake() {
    std::lock_guard lk(mu);
    if (scheduler != nullptr) scheduler->wake();
  }
};

int main(int argc, char** argv) {
  std::atomic<bool> stop{false};
  Waker waker;  // outlives the signal thread
  ringnet::ShutdownOnSignals signals([&](int) {
    stop = true;
    waker.wake();
  });  // first: before any thread exists
  Settings settings = parse(argc, argv);
  if (settings.verbose) ringnet::set_log_level(ringnet::LogLevel::kDebug);
  std::string error;
  std::optional<jobs::JobConfig> config = jobs::load_job_config(settings.config, &error);
  if (!config) {
    std::fprintf(stderr, "job_dispatcher: %s\n", error.c_str());
    return 2;
  }
  // Each round trip at most a sixth of the lease: a renew that hangs must not outlast it.
  jobs::Coordinator coord({.host = settings.redis_host,
                           .port = settings.redis_port,
                           .timeout = std::min<std::chrono::milliseconds>(500ms, settings.lease / 6),
                           .prefix = settings.prefix});

  // RPC to the workers: one loop is plenty for a dispatcher.
  ringnet::proto::RpcClientHandler rpc_handler;
  ringnet::Options rpc_options;
  rpc_options.loops = 1;
  ringnet::Engine rpc_engine(rpc_handler, rpc_options);
  ringnet::proto::PeerPool pool(rpc_engine, {.dial_timeout = 1000ms});
  ringnet::proto::RpcClient rpc(pool, {.max_attempts = 1});
  rpc_handler.attach(pool, rpc);

  std::map<std::string, std::unique_ptr<Service>> services;
  for (const jobs::JobSpec& job : config->jobs)
    if (!services.count(job.target.service))
      services.emplace(job.target.service, std::make_unique<Service>(rpc, settings.probe));
  size_t job_count = config->jobs.size();
  jobs::Scheduler scheduler(std::move(*config), [&](const std::string& name) -> RoutedRpcClient* {
    auto it = services.find(name);
    return it == services.end() ? nullptr : &it->second->routed;
  });
  waker.set(&scheduler);
  struct Unset {
    Waker& w;
    ~Unset() { w.set(nullptr); }  // on every return, before the scheduler goes
  } unset{waker};
  if (stop) return 0;

  Leadership leadership;
  StatusHandler status(settings, leadership, scheduler, services);
  ringnet::Options http_options;
  http_options.loops = 1;
  ringnet::Engine http_engine(status, http_options);
  if (settings.http_port >= 0) {
    std::string addr = "tcp://" + settings.host + ":" + std::to_string(settings.http_port);
    if (ringnet::Status s = http_engine.listen(addr); !s) {
      std::fprintf(stderr, "job_dispatcher: listen %s: %s\n", addr.c_str(), s.message().c_str());
      return 1;
    }
  }
  if (ringnet::Status s = rpc_engine.start(); !s) return 1;
  if (settings.http_port >= 0) {
    if (ringnet::Status s = http_engine.start(); !s) return 1;
    std::printf("http on %s (/healthz, /metrics)\n", http_engine.listen_addrs().at(0).to_string().c_str());
  }
  std::printf("dispatcher %s: %zu jobs, lease %lld ms, redis %s\n", settings.id.c_str(), job_count,
              static_cast<long long>(settings.lease.count()), settings.redis.c_str());
  std::fflush(stdout);

  // The control loop (see the file comment).
  auto set_leader = [&](bool on, uint64_t token) {
    if (leadership.leader == on) return;
    leadership.token = on ? token : 0;
    leadership.leader = on;
    ++leadership.changes;
    std::fprintf(stderr, "job_dispatcher %s: %s (token %llu)\n", settings.id.c_str(),
                 on ? "leader" : "follower", static_cast<unsigned long long>(token));
  };
  uint64_t token = 0;
  Steady::time_point next_lease = Steady::now(), last_renewed{};
  while (!stop) {
    Steady::time_point now = Steady::now();
    if (now >= next_lease) {
      if (leadership.leader) {
        jobs::CoordResult r = coord.renew(settings.id, token, settings.lease);
        if (r == jobs::CoordResult::kOk) last_renewed = now;
        if (r == jobs::CoordResult::kLost || now - last_renewed > settings.lease / 2) {
          scheduler.follow();
          set_leader(false, 0);
        }
      } else if (jobs::Acquire a = coord.try_acquire(settings.id, settings.lease);
                 a.result == jobs::CoordResult::kOk) {
        last_renewed = now;
        token = a.token;
        auto now_ms = std::chrono::time_point_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now());
        if (scheduler.lead(coord, settings.id, token, now_ms))
          set_leader(true, token);
        else
          (void)coord.release(settings.id, token);  // could not read the state: let another try
      }
      for (auto& [name, svc] : services) {
        jobs::Workers w = coord.list_workers(name);
        if (w.result != jobs::CoordResult::kOk) continue;
        // A worker's capacity is its weight: twice the capacity, twice the jobs.
        std::vector<std::pair<std::string, uint32_t>> nodes;
        for (const jobs::Worker& worker : w.workers)
          nodes.emplace_back(worker.address, std::max<uint32_t>(worker.capacity, 1));
        svc->router.set_nodes(nodes);
      }
      next_lease = now + (leadership.leader ? settings.lease / 3 : settings.lease / 10);
    }
    // Not renewed for half the lease: by now another replica may lead; stop firing.
    if (leadership.leader && Steady::now() - last_renewed > settings.lease / 2) {
      scheduler.follow();
      set_leader(false, 0);
    }
    auto wall = [] {
      return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
    };
    // Every pass, leader or not: it also drops the completions of a term that ended.
    if (scheduler.tick(coord, wall()) == jobs::CoordResult::kLost) {
      scheduler.follow();
      set_leader(false, 0);
    }
    Steady::time_point wake = next_lease;
    if (jobs::TimeMs due = scheduler.next_due(); due != jobs::Schedule::kNever)
      wake = std::min(wake, Steady::now() + std::max(due - wall(), std::chrono::milliseconds(0)));
    scheduler.wait(wake);
  }
  if (leadership.leader) (void)coord.release(settings.id, token);
  set_leader(false, 0);
  http_engine.stop();  // first: its handler reads `services`
  http_engine.wait();
  services.clear();  // cancels runs in flight: their completions need the scheduler
  rpc_engine.stop();
  rpc_engine.wait();
  std::fprintf(stderr, "job_dispatcher %s: stopped\n", settings.id.c_str());
  return 0;
}
