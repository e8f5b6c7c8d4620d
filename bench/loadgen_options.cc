// SPDX-License-Identifier: MIT
// Flag parsing for the load generator: "--name value" or "--name=value", strict numbers.
#include "loadgen_options.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace bench {
namespace {

constexpr const char* kUsage = R"(usage: loadgen [--host H] (--port N | --unix PATH) [options]
Echo load generator: keeps --pipeline messages in flight on each of --conns connections,
verifies every echoed byte and reports throughput, latency and (optionally) server CPU.

  --host H          server address (default 127.0.0.1)
  --port N          TCP port
  --unix PATH       AF_UNIX stream socket instead of TCP
  --conns N         connections (default 50), split across --threads
  --size BYTES      message size (default 64; suffixes k, m = KiB, MiB)
  --pipeline D      messages in flight per connection (default 1)
  --duration S      measured window in seconds (default 5)
  --warmup S        seconds of traffic before the window (default 1)
  --threads N       load-generator threads, one event loop each (default 1)
  --backend B       client event loop: epoll (default), io_uring, or auto (io_uring
                    when the kernel allows it, else epoll; the choice goes to stderr)
  --server-pid PID  sample the server's utime+stime over the window
  --idle            open --conns connections, send nothing, print "IDLE READY <n>",
                    hold them until stdin closes or SIGTERM/SIGINT
  --idle-echo N     with --idle: each connection first echoes N bytes (verified), so
                    the server holds connections that have carried traffic (default 0)
  --csv             one CSV line (columns: see --csv-header)
  --csv-header      print the CSV header line and exit
  --json            one JSON object on one line
Exit status: 0 ok, 1 connection or verification errors, 2 bad usage.
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "loadgen: %s\n(see loadgen --help)\n", message.c_str());
  std::exit(2);
}

uint64_t parse_uint(const char* name, const char* s) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *s == '-') usage_error(std::string("bad number for ") + name);
  uint64_t mult = 1;
  if (*end == 'k' || *end == 'K') mult = 1024, ++end;
  else if (*end == 'm' || *end == 'M') mult = 1024 * 1024, ++end;
  if (*end != '\0') usage_error(std::string("bad number for ") + name);
  return v * mult;
}

double parse_seconds(const char* name, const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || v < 0) usage_error(std::string("bad seconds for ") + name);
  return v;
}

// Returns the value of a flag that takes one, advancing i past it.
const char* take_value(int argc, char** argv, int* i, std::string_view flag) {
  std::string_view arg = argv[*i];
  if (arg.size() > flag.size() && arg[flag.size()] == '=') return argv[*i] + flag.size() + 1;
  if (*i + 1 >= argc) usage_error(std::string(argv[*i]) + " needs a value");
  return argv[++*i];
}

bool matches(std::string_view arg, std::string_view flag) {
  return arg == flag || (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
                         arg[flag.size()] == '=');
}

void check(const LoadgenOptions& o) {
  if (o.port == 0 && o.unix_path.empty()) usage_error("need --port or --unix");
  if (o.port < 0 || o.port > 65535) usage_error("--port out of range");
  if (o.conns == 0) usage_error("--conns must be > 0");
  if (!o.idle && (o.size == 0 || o.pipeline == 0)) usage_error("--size/--pipeline > 0");
  if (o.threads == 0 || o.threads > 256) usage_error("--threads in 1..256");
  if (!o.idle && o.duration_s <= 0) usage_error("--duration must be > 0");
  if (o.idle_echo > 0 && !o.idle) usage_error("--idle-echo needs --idle");
  if (o.idle_echo > (size_t{1} << 20)) usage_error("--idle-echo at most 1 MiB");  // one payload span
}

}  // namespace

std::string LoadgenOptions::target() const {
  if (!unix_path.empty()) return "unix " + unix_path;
  return "tcp " + host + ":" + std::to_string(port);
}

const char* backend_name(ClientBackend backend) {
  switch (backend) {
    case ClientBackend::kAuto: return "auto";
    case ClientBackend::kEpoll: return "epoll";
    case ClientBackend::kUring: return "io_uring";
  }
  return "?";
}

// New columns go at the end: scripts read the earlier ones by position.
const char* loadgen_csv_header() {
  return "target,conns,size,pipeline,threads,window_s,messages,msgs_per_s,mib_per_s,"
         "p50_us,p99_us,p999_us,max_us,verify_errors,conn_errors,server_cpu_s,"
         "server_cpu_us_per_msg,client_cpu_us_per_msg,client_backend";
}

LoadgenOptions parse_loadgen_options(int argc, char** argv) {
  LoadgenOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--csv-header") {
      std::puts(loadgen_csv_header());
      std::exit(0);
    } else if (a == "--idle") {
      o.idle = true;
    } else if (matches(a, "--idle-echo")) {
      o.idle_echo = parse_uint("--idle-echo", take_value(argc, argv, &i, "--idle-echo"));
    } else if (a == "--csv") {
      o.format = OutputFormat::kCsv;
    } else if (a == "--json") {
      o.format = OutputFormat::kJson;
    } else if (matches(a, "--host")) {
      o.host = take_value(argc, argv, &i, "--host");
    } else if (matches(a, "--port")) {
      o.port = static_cast<int>(parse_uint("--port", take_value(argc, argv, &i, "--port")));
    } else if (matches(a, "--unix")) {
      o.unix_path = take_value(argc, argv, &i, "--unix");
    } else if (matches(a, "--conns")) {
      o.conns = parse_uint("--conns", take_value(argc, argv, &i, "--conns"));
    } else if (matches(a, "--size")) {
      o.size = parse_uint("--size", take_value(argc, argv, &i, "--size"));
    } else if (matches(a, "--pipeline")) {
      o.pipeline = parse_uint("--pipeline", take_value(argc, argv, &i, "--pipeline"));
    } else if (matches(a, "--duration")) {
      o.duration_s = parse_seconds("--duration", take_value(argc, argv, &i, "--duration"));
    } else if (matches(a, "--warmup")) {
      o.warmup_s = parse_seconds("--warmup", take_value(argc, argv, &i, "--warmup"));
    } else if (matches(a, "--threads")) {
      o.threads = parse_uint("--threads", take_value(argc, argv, &i, "--threads"));
    } else if (matches(a, "--backend")) {
      std::string_view v = take_value(argc, argv, &i, "--backend");
      if (v == "auto") o.backend = ClientBackend::kAuto;
      else if (v == "epoll") o.backend = ClientBackend::kEpoll;
      else if (v == "io_uring") o.backend = ClientBackend::kUring;
      else usage_error("--backend must be auto, epoll or io_uring");
    } else if (matches(a, "--server-pid")) {
      const char* v = take_value(argc, argv, &i, "--server-pid");
      o.server_pid = static_cast<int>(parse_uint("--server-pid", v));
    } else {
      usage_error(std::string("unknown flag ") + argv[i]);
    }
  }
  check(o);
  return o;
}

}  // namespace bench
