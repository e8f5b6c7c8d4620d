// SPDX-License-Identifier: MIT
// soak_driver: the soak test's client (bench/soak starts the server and judges; see
// bench/README.md). It does not use the engine.
//
//   soak_driver --port 9000 --conns 10000 --duration 600 --server-pid PID --csv run.csv
//
// Runs `--conns` connection slots in the mix of roles described in soak_driver.h for
// `--duration` seconds, then drains: every request in flight completes, every connection
// reads all its bytes back and closes (at most `--drain-timeout` seconds). Every second
// it writes a CSV row: time, phase, the server's RSS, open fds and CPU % (from /proc,
// with --server-pid), connections open, messages and verified bytes per second, new
// connections per second, errors, lost and corrupted bytes. At the end it prints one
// JSON object with the totals (or writes it to --json).
//
// Exit status: 0 when nothing was lost or corrupted and no error of any kind happened;
// 1 otherwise; 2 bad usage.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include "proc_stat.h"
#include "soak_driver.h"

namespace {

constexpr const char* kUsage = R"(usage: soak_driver --port N [options]
Soak client: a mix of echo, pipelined, slow-reader, churn and reset connections against
an echo server, every byte checked.

  --host H            server address (default 127.0.0.1)
  --port N            TCP port (required)
  --conns N           connection slots (default 10000)
  --mix LIST          percent per role (default echo=60,pipeline=20,slow=1,churn=15,reset=4)
  --duration S        seconds of load before the drain (default 60)
  --drain-timeout S   at most this long for every connection to finish (default 60)
  --churn-rate N      at most this many churn + reset connects per second
                      (default 3000)
  --depth N           pipeline depth (default 16)
  --slow-window B     bytes a slow reader keeps outstanding (default 8388608)
  --seed N            random seed (default 1)
  --id-base N         first connection id: payloads differ between rounds (default 0)
  --server-pid PID    sample the server's VmRSS and open fds every second
  --csv FILE          per-second rows
  --json FILE         the totals, instead of stdout
  --quiet             no progress lines on stderr
Exit status: 0 ok, 1 lost/corrupted bytes or any error, 2 bad usage.
)";

struct Options {
  soak::DriverOptions driver;
  double duration_s = 60;
  double drain_timeout_s = 60;
  int server_pid = 0;
  std::string csv_path, json_path;
  bool quiet = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "soak_driver: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

double parse_number(std::string_view name, const char* s) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || v < 0) {
    usage_error("bad number for " + std::string(name));
  }
  return v;
}

void parse_mix(const char* s, unsigned* mix) {
  for (int r = 0; r < soak::kRoleCount; ++r) mix[r] = 0;
  std::string list = s;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string item = list.substr(pos, comma == std::string::npos ? comma : comma - pos);
    size_t eq = item.find('=');
    int role = -1;
    for (int r = 0; r < soak::kRoleCount; ++r) {
      if (eq != std::string::npos && item.substr(0, eq) == soak::role_name(soak::Role(r))) role = r;
    }
    if (role < 0) usage_error("bad --mix item '" + item + "'");
    mix[role] = static_cast<unsigned>(parse_number("--mix", item.c_str() + eq + 1));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  unsigned sum = 0;
  for (int r = 0; r < soak::kRoleCount; ++r) sum += mix[r];
  if (sum == 0) usage_error("--mix adds up to 0");
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--quiet") {
      o.quiet = true;
      continue;
    }
    if (i + 1 >= argc) usage_error("missing value for " + std::string(a));
    const char* v = argv[++i];
    auto integer = [&] { return static_cast<uint64_t>(parse_number(a, v)); };
    if (a == "--host") o.driver.host = v;
    else if (a == "--port") o.driver.port = static_cast<int>(integer());
    else if (a == "--conns") o.driver.conns = integer();
    else if (a == "--mix") parse_mix(v, o.driver.mix);
    else if (a == "--duration") o.duration_s = parse_number(a, v);
    else if (a == "--drain-timeout") o.drain_timeout_s = parse_number(a, v);
    else if (a == "--churn-rate") o.driver.churn_rate = parse_number(a, v);
    else if (a == "--depth") o.driver.pipeline_depth = integer();
    else if (a == "--slow-window") o.driver.slow_window = integer();
    else if (a == "--seed") o.driver.seed = integer();
    else if (a == "--id-base") o.driver.id_base = integer();
    else if (a == "--server-pid") o.server_pid = static_cast<int>(integer());
    else if (a == "--csv") o.csv_path = v;
    else if (a == "--json") o.json_path = v;
    else usage_error("unknown argument " + std::string(a));
  }
  if (o.driver.port <= 0 || o.driver.port > 65535) usage_error("--port is required");
  if (o.driver.conns == 0 || o.driver.pipeline_depth == 0) usage_error("zero --conns/--depth");
  return o;
}

// Each slot needs one fd; keep headroom for epoll, stdio and /proc reads.
bool raise_fd_limit(size_t conns) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  if (conns + 64 > rl.rlim_cur) {
    std::fprintf(stderr, "soak_driver: %zu connections need more than the fd limit %llu\n",
                 conns, static_cast<unsigned long long>(rl.rlim_cur));
    return false;
  }
  return true;
}

// VmRSS of pid in KiB, or -1.
long server_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// Entries in /proc/PID/fd, or -1.
long server_fds(int pid) {
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return -1;
  long n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

// One CSV row per second; `last` is the previous row's totals, for the rates.
class Sampler {
 public:
  Sampler(const Options& o, int64_t start_ns) : o_(o), start_ns_(start_ns) {
    if (o.csv_path.empty()) return;
    csv_ = std::fopen(o.csv_path.c_str(), "w");
    if (csv_ == nullptr) {
      std::fprintf(stderr, "soak_driver: cannot write %s\n", o.csv_path.c_str());
      std::exit(2);
    }
    std::fputs("t_s,phase,server_rss_kib,server_fds,server_cpu_pct,client_open,msgs,"
               "msgs_per_s,mib_per_s,new_conns_per_s,errors,lost_bytes,corrupted_bytes\n",
               csv_);
  }
  ~Sampler() {
    if (csv_ != nullptr) std::fclose(csv_);
  }

  void row(const char* phase, const soak::Totals& t) {
    int64_t now = soak::monotonic_ns();
    double dt = (now - last_ns_) / 1e9;
    double elapsed = (now - start_ns_) / 1e9;
    long rss = o_.server_pid ? server_rss_kib(o_.server_pid) : -1;
    long fds = o_.server_pid ? server_fds(o_.server_pid) : -1;
    double cpu = o_.server_pid ? bench::process_cpu_seconds(o_.server_pid) : -1;
    double cpu_pct = cpu >= 0 && last_cpu_ >= 0 && dt > 0 ? 100 * (cpu - last_cpu_) / dt : 0;
    last_cpu_ = cpu;
    double msgs_s = dt > 0 ? (t.msgs - last_msgs_) / dt : 0;
    double mib_s = dt > 0 ? (t.bytes_verified - last_bytes_) / dt / (1 << 20) : 0;
    double conns_s = dt > 0 ? (t.opened - last_opened_) / dt : 0;
    if (csv_ != nullptr) {
      std::fprintf(csv_, "%.1f,%s,%ld,%ld,%.0f,%llu,%llu,%.0f,%.2f,%.0f,%llu,%llu,%llu\n",
                   elapsed, phase, rss, fds, cpu_pct, ull(t.open_now), ull(t.msgs), msgs_s, mib_s, conns_s,
                   ull(t.error_count()), ull(t.lost_bytes), ull(t.corrupted_bytes));
      std::fflush(csv_);
    }
    if (!o_.quiet && (++rows_ % 10 == 0 || std::string_view(phase) != "load")) {
      std::fprintf(stderr,
                   "soak: %5.0f s %-5s open %5llu  %7.0f msgs/s  %6.1f MiB/s  %5.0f conns/s  "
                   "server rss %ld KiB fds %ld cpu %.0f%%  errors %llu\n",
                   elapsed, phase, ull(t.open_now), msgs_s, mib_s, conns_s, rss, fds, cpu_pct,
                   ull(t.error_count()));
    }
    last_ns_ = now;
    last_msgs_ = t.msgs;
    last_bytes_ = t.bytes_verified;
    last_opened_ = t.opened;
  }

 private:
  static unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

  const Options& o_;
  int64_t start_ns_;
  int64_t last_ns_ = start_ns_;
  uint64_t last_msgs_ = 0, last_bytes_ = 0, last_opened_ = 0;
  uint64_t rows_ = 0;
  double last_cpu_ = -1;
  std::FILE* csv_ = nullptr;
};

std::string summary_json(const Options& o, const soak::Totals& t, double load_s, double drain_s) {
  auto u = [](uint64_t v) { return std::to_string(v); };
  std::string j = "{\"conns\":" + u(o.driver.conns) + ",\"load_s\":" + std::to_string(load_s) +
                  ",\"drain_s\":" + std::to_string(drain_s) + ",\"connects\":" + u(t.connects) +
                  ",\"opened\":" + u(t.opened) + ",\"peak_open\":" + u(t.peak_open) +
                  ",\"resets_sent\":" + u(t.resets_sent) + ",\"bytes_sent\":" + u(t.bytes_sent) +
                  ",\"bytes_sent_reset\":" + u(t.bytes_sent_reset) +
                  ",\"bytes_received\":" + u(t.bytes_received) +
                  ",\"bytes_verified\":" + u(t.bytes_verified) +
                  ",\"corrupted_bytes\":" + u(t.corrupted_bytes) +
                  ",\"lost_bytes\":" + u(t.lost_bytes) + ",\"msgs\":" + u(t.msgs) +
                  ",\"msgs_per_s\":" + std::to_string(load_s > 0 ? t.msgs / load_s : 0) +
                  ",\"errors\":{";
  bool first = true;
  for (const auto& [kind, n] : t.errors) {
    j += (first ? "\"" : ",\"") + kind + "\":" + u(n);  // kinds are fixed strings + strerror
    first = false;
  }
  j += "},\"roles\":{";
  for (int r = 0; r < soak::kRoleCount; ++r) {
    const soak::RoleStats& s = t.roles[r];
    j += std::string(r ? "," : "") + "\"" + soak::role_name(soak::Role(r)) + "\":{\"slots\":" +
         u(s.slots) + ",\"opened\":" + u(s.opened) + ",\"completed\":" + u(s.completed) +
         ",\"msgs\":" + u(s.msgs) + ",\"bytes_sent\":" + u(s.bytes_sent) +
         ",\"bytes_verified\":" + u(s.bytes_verified) + "}";
  }
  bool ok = t.lost_bytes == 0 && t.corrupted_bytes == 0 && t.error_count() == 0;
  return j + "},\"ok\":" + (ok ? "true" : "false") + "}\n";
}

int run(const Options& o) {
  soak::Driver driver(o.driver);
  std::string error;
  if (!driver.init(&error)) {
    std::fprintf(stderr, "soak_driver: %s\n", error.c_str());
    return 2;
  }
  const int64_t start = soak::monotonic_ns();
  const int64_t load_end = start + static_cast<int64_t>(o.duration_s * 1e9);
  int64_t drain_start = 0, drain_deadline = 0, next_row = start + 1'000'000'000;
  Sampler sampler(o, start);
  for (;;) {
    int64_t now = soak::monotonic_ns();
    if (drain_start == 0 && (now >= load_end || g_signal != 0)) {
      drain_start = now;
      drain_deadline = now + static_cast<int64_t>(o.drain_timeout_s * 1e9);
      driver.begin_drain();
    }
    if (drain_start != 0 && driver.drained()) break;
    if (drain_start != 0 && now >= drain_deadline) {
      driver.abandon();
      break;
    }
    if (now >= next_row) {
      sampler.row(drain_start ? "drain" : "load", driver.totals());
      next_row += 1'000'000'000;
    }
    driver.poll(static_cast<int>(std::max<int64_t>(1, (next_row - now) / 1'000'000)));
  }
  const int64_t end = soak::monotonic_ns();
  sampler.row("end", driver.totals());
  std::string json = summary_json(o, driver.totals(), (drain_start - start) / 1e9,
                                  (end - drain_start) / 1e9);
  if (o.json_path.empty()) {
    std::fputs(json.c_str(), stdout);
  } else if (std::FILE* f = std::fopen(o.json_path.c_str(), "w")) {
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  const soak::Totals& t = driver.totals();
  return t.lost_bytes == 0 && t.corrupted_bytes == 0 && t.error_count() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  if (!raise_fd_limit(o.driver.conns)) return 2;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return run(o);
}
