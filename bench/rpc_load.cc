// SPDX-License-Identifier: MIT
// rpc_load: closed-loop unary RPC load against ringnet's binary RPC frame or gRPC, for
// bench/rpc_compare.sh.
//
//   rpc_load --target ringnet|grpc --port N [--host 127.0.0.1] [--conns 50] [--size 64]
//            [--duration 5] [--warmup 1] [--method 1] [--channels 0] [--server-pid PID]
//
// --conns callers each keep exactly one call in flight: the next call starts when the
// previous one completes (closed loop), so 50 callers = 50 concurrent calls. Every answer
// is checked: ringnet, that it is a response frame with the request's request_id and
// method and the very body sent; gRPC, status OK and the very body sent. Each body carries
// its call's number in its first 8 bytes (when it has 8), so an answer to another call
// cannot pass. Any failure counts as an error; a run with errors, or without one completed
// call in the window, exits 1.
//
// ringnet: one thread, raw non-blocking sockets and level-triggered epoll, one TCP
// connection per caller, frames headed with encode_rpc_header (ringnet/proto/rpc_frame.h)
// and sent with one send() (header and body in one buffer per connection).
// gRPC: one thread driving the completion-queue async client API (rpc_load_grpc.cc).
//
// After --warmup seconds, calls completed in a --duration window are counted; latency is
// send to verified answer, in an HDR-style histogram. With --server-pid the server's
// utime+stime over exactly that window gives its CPU per call. This process's own CPU time
// over the window is reported too: the client runs on one core, and when it is busy near
// 100% the client, not the server, capped calls/s.
//
// Output, one line of key=value fields (scripts read them by name):
//   rpc_load target=ringnet size=64 conns=50 channels=0 calls=N seconds=S calls_per_s=R
//            p50_us=A p99_us=B p999_us=C errors=E server_cpu_s=X server_cpu_us_per_call=Y
//            server_busy_pct=Z client_cpu_s=U client_cpu_us_per_call=V client_busy_pct=W
// (server_* are "nan" without --server-pid). Exit status: 0 ok, 1 errors or no calls,
// 2 usage.
#include "rpc_load.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "proc_stat.h"

namespace bench {

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

namespace {

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

}  // namespace

MeasureWindow::MeasureWindow(const RpcLoadOptions& o)
    : server_pid_(o.server_pid),
      warmup_ns_(static_cast<int64_t>(o.warmup_s * 1e9)),
      duration_ns_(static_cast<int64_t>(o.duration_s * 1e9)) {}

void MeasureWindow::begin(int64_t now_ns) {
  open_at_ns_ = now_ns + warmup_ns_;
  close_at_ns_ = open_at_ns_ + duration_ns_;
}

bool MeasureWindow::tick(int64_t now_ns) {
  if (closed_) return false;
  if (!measuring_ && now_ns >= open_at_ns_) {
    // The window is [this tick, the tick past opened + duration]: a late tick (a long
    // turn of the loop) moves the window, it does not shorten it.
    measuring_ = true;
    opened_ns_ = now_ns;
    close_at_ns_ = now_ns + duration_ns_;
    if (server_pid_ > 0) server_cpu0_ = process_cpu_seconds(server_pid_);
    client_cpu0_ = self_cpu_seconds();
    return true;
  }
  if (measuring_ && now_ns >= close_at_ns_) {
    measuring_ = false;
    closed_ = true;
    closed_ns_ = now_ns;
    client_cpu_s_ = self_cpu_seconds() - client_cpu0_;
    if (server_pid_ > 0 && server_cpu0_ >= 0) {
      const double cpu1 = process_cpu_seconds(server_pid_);
      if (cpu1 >= 0) server_cpu_s_ = cpu1 - server_cpu0_;
    }
    return false;
  }
  return true;
}

int64_t MeasureWindow::ns_to_boundary(int64_t now_ns) const {
  const int64_t next = measuring_ ? close_at_ns_ : open_at_ns_;
  return next > now_ns ? next - now_ns : 0;
}

double MeasureWindow::seconds() const {
  return closed_ns_ > opened_ns_ ? static_cast<double>(closed_ns_ - opened_ns_) / 1e9 : 0;
}

namespace {

constexpr const char* kUsage =
    R"(usage: rpc_load --target ringnet|grpc --port N [options]
Closed-loop unary RPC load: --conns callers, one call in flight each; every answer checked.

  --target T        ringnet (binary RPC frame) or grpc (echo.proto Echo.Call)
  --host H          server address (default 127.0.0.1)
  --port N          TCP port
  --conns N         callers = calls in flight (default 50); ringnet: one connection each
  --channels N      gRPC: channels the callers share (default 0 = one per caller, each its
                    own TCP connection, like ringnet's; 1 = all calls multiplexed on one)
  --size BYTES      request (and answer) body size (default 64; suffix k = KiB)
  --duration S      measured window in seconds (default 5)
  --warmup S        seconds of calls before the window (default 1)
  --method ID       ringnet: the echo method's id (default 1)
  --server-pid PID  the server's utime+stime over the window -> CPU per call
Prints one line of key=value fields. Exit status: 0 ok, 1 errors or no calls, 2 usage.
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "rpc_load: %s\n(see rpc_load --help)\n", message.c_str());
  std::exit(2);
}

uint64_t parse_uint(std::string_view name, const char* s, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *s == '-') usage_error("bad number for " + std::string(name));
  if (*end == 'k' || *end == 'K') v *= 1024, ++end;
  if (*end != '\0' || v > max) usage_error("bad number for " + std::string(name));
  return v;
}

double parse_seconds(std::string_view name, const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= 0) || v > 86400) {
    usage_error("bad seconds for " + std::string(name));
  }
  return v;
}

RpcLoadOptions parse_options(int argc, char** argv) {
  RpcLoadOptions o;
  bool have_target = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    std::string_view flag = a;
    const char* value = nullptr;
    if (size_t eq = a.find('='); eq != std::string_view::npos) {
      flag = a.substr(0, eq);
      value = argv[i] + eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage_error(std::string(a) + " needs a value");
    }
    if (flag == "--target") {
      std::string_view t = value;
      if (t == "ringnet") o.target = RpcTarget::kRingnet;
      else if (t == "grpc") o.target = RpcTarget::kGrpc;
      else usage_error("--target must be ringnet or grpc");
      have_target = true;
    } else if (flag == "--host") {
      o.host = value;
    } else if (flag == "--port") {
      o.port = static_cast<int>(parse_uint(flag, value, 65535));
    } else if (flag == "--conns") {
      o.conns = parse_uint(flag, value, 10000);
    } else if (flag == "--channels") {
      o.channels = parse_uint(flag, value, 10000);
    } else if (flag == "--size") {
      o.size = parse_uint(flag, value, 1 << 20);
    } else if (flag == "--duration") {
      o.duration_s = parse_seconds(flag, value);
    } else if (flag == "--warmup") {
      o.warmup_s = parse_seconds(flag, value);
    } else if (flag == "--method") {
      o.method = static_cast<uint16_t>(parse_uint(flag, value, 65535));
    } else if (flag == "--server-pid") {
      o.server_pid = static_cast<int>(parse_uint(flag, value, 1u << 30));
    } else {
      usage_error("unknown flag " + std::string(flag));
    }
  }
  if (!have_target) usage_error("--target is required");
  if (o.port == 0) usage_error("--port is required");
  if (o.conns == 0) usage_error("--conns must be > 0");
  if (o.duration_s <= 0) usage_error("--duration must be > 0");
  if (o.channels > o.conns) o.channels = o.conns;
  return o;
}

void print_result(const RpcLoadOptions& o, const MeasureWindow& w) {
  const double secs = w.seconds();
  const double calls = static_cast<double>(w.calls());
  const double rate = secs > 0 ? calls / secs : 0;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  const LatencyHistogram& h = w.latency();
  std::string server = "server_cpu_s=nan server_cpu_us_per_call=nan server_busy_pct=nan";
  if (w.server_cpu_s() >= 0) {
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  "server_cpu_s=%.3f server_cpu_us_per_call=%.3f server_busy_pct=%.1f",
                  w.server_cpu_s(), calls > 0 ? w.server_cpu_s() * 1e6 / calls : 0.0,
                  secs > 0 ? 100 * w.server_cpu_s() / secs : 0.0);
    server = buf;
  }
  std::printf("rpc_load target=%s size=%zu conns=%zu channels=%zu calls=%llu seconds=%.3f "
              "calls_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f errors=%llu %s "
              "client_cpu_s=%.3f client_cpu_us_per_call=%.3f client_busy_pct=%.1f\n",
              o.target == RpcTarget::kGrpc ? "grpc" : "ringnet", o.size, o.conns,
              o.target == RpcTarget::kGrpc ? (o.channels ? o.channels : o.conns) : 0,
              static_cast<unsigned long long>(w.calls()), secs, rate, us(h.quantile(0.5)),
              us(h.quantile(0.99)), us(h.quantile(0.999)),
              static_cast<unsigned long long>(w.errors()), server.c_str(), w.client_cpu_s(),
              calls > 0 ? w.client_cpu_s() * 1e6 / calls : 0.0,
              secs > 0 ? 100 * w.client_cpu_s() / secs : 0.0);
  std::fflush(stdout);
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  const RpcLoadOptions o = parse_options(argc, argv);
  if (o.server_pid > 0 && process_cpu_seconds(o.server_pid) < 0) {
    std::fprintf(stderr, "rpc_load: cannot read /proc/%d/stat\n", o.server_pid);
    return 2;
  }
  MeasureWindow window(o);
  if (o.target == RpcTarget::kGrpc) {
#if RPC_LOAD_GRPC
    run_grpc_load(o, window);
#else
    std::fprintf(stderr, "rpc_load: built without gRPC (libgrpc++-dev, protobuf-compiler-grpc "
                         "were missing at meson setup)\n");
    return 2;
#endif
  } else {
    run_ringnet_load(o, window);
  }
  print_result(o, window);
  if (window.errors() > 0) {
    std::fprintf(stderr, "rpc_load: %llu errors\n",
                 static_cast<unsigned long long>(window.errors()));
    return 1;
  }
  if (window.calls() == 0) {
    std::fprintf(stderr, "rpc_load: no call completed in the window\n");
    return 1;
  }
  return 0;
}
