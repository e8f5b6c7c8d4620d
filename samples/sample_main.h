// SPDX-License-Identifier: MIT
// What every sample shares: a table-driven command line (FlagTable), and for the servers
// their common flags, listening, SIGINT/SIGTERM and the "listening on" line. Public headers
// only, like the samples themselves.
//
// Every flag is one row of a FlagTable: name, value name, meaning, default, and a setter
// that checks the value and stores it. --help prints the rows; parsing looks them up; so
// the usage text and what is accepted cannot drift apart. A sample adds its own rows to
// the same table. `--flag value` and `--flag=value` both work; a bad value, an unknown
// flag or a missing value is reported with its reason and exit code 2.
//
// Servers print one "listening on <address> (N loops, backend)" line per listener once it
// accepts connections. --admin-port N serves /metrics (Prometheus text) and /healthz on
// host:N (0 picks a free port) and prints "admin on <address>"; it also shows glibc's
// heap (process_heap_in_use_bytes, process_heap_free_bytes), so a soak can tell memory in
// use from memory the allocator kept after a peak (RSS counts both). --no-metrics turns the
// loop histograms off (Options::metrics), to measure what they cost. SIGINT/SIGTERM drain
// gracefully (Engine::shutdown): listeners close at once, requests already received are
// answered, and after --drain-timeout whatever is still busy is closed; then it exits 0.
// The timeouts are Options::idle_timeout / read_timeout / write_timeout (0 is off): a
// server facing untrusted clients sets --read-timeout so that a request trickled a byte at
// a time (slowloris) cannot hold a connection forever, and --idle-timeout for silent ones.
#pragma once

#include <ringnet/engine.h>
#include <ringnet/signals.h>

#include "sample_tls.h"

#include <malloc.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace sample {

// The command line of one program, as a table of flags.
class FlagTable {
 public:
  // Checks a flag's value and stores it. Returns why the value is bad ("is not a port
  // (0-65535)"), or an empty string when it was taken.
  using Setter = std::function<std::string(std::string_view value)>;

  struct Flag {
    std::string name;          // "--port"
    std::string value_name;    // "N"; empty for a switch, which takes no value
    std::string meaning;
    std::string default_text;  // shown as "(default: ...)"
    Setter set;                // for a switch, called with an empty value
  };

  // `about`: what the program does, printed under the usage line. `notes`: printed after
  // the flags (output, exit codes).
  FlagTable(const char* argv0, std::string about, std::string notes = {})
      : about_(std::move(about)), notes_(std::move(notes)) {
    const char* slash = std::strrchr(argv0, '/');
    prog_ = slash != nullptr ? slash + 1 : argv0;
  }

  const std::string& prog() const { return prog_; }
  void set_notes(std::string notes) { notes_ = std::move(notes); }

  void add(Flag flag) { flags_.push_back(std::move(flag)); }

  // A flag without a value: sets *target to `when_given`.
  void add_switch(std::string name, std::string meaning, std::string default_text,
                  bool* target, bool when_given = true) {
    add({std::move(name), "", std::move(meaning), std::move(default_text),
         [target, when_given](std::string_view) {
           *target = when_given;
           return std::string();
         }});
  }

  void add_string(std::string name, std::string value_name, std::string meaning,
                  std::string default_text, std::string* target) {
    add({std::move(name), std::move(value_name), std::move(meaning), std::move(default_text),
         [target](std::string_view v) {
           *target = std::string(v);
           return std::string();
         }});
  }

  // A decimal integer in [lo, hi], stored in *target (any integer type). `noun` names what
  // it counts, for the reason a value is refused ("'0' is not a loop count (1-1024)");
  // `range_note` adds to the range ("0 picks a free port"). The default shown is *target's
  // value now, unless `default_text` says it in words.
  template <typename T>
  void add_number(std::string name, std::string value_name, std::string meaning, T* target,
                  uint64_t lo, uint64_t hi, std::string noun, std::string default_text = {},
                  std::string range_note = {}) {
    static_assert(std::is_integral_v<T>);
    if (default_text.empty()) default_text = std::to_string(*target);
    add({std::move(name), std::move(value_name), std::move(meaning), std::move(default_text),
         [=](std::string_view v) {
           uint64_t n = 0;
           if (!parse_decimal(v, lo, hi, &n)) return not_a(v, noun, lo, hi, range_note);
           *target = static_cast<T>(n);
           return std::string();
         }});
  }

  // Milliseconds in [lo, hi]; the default shown is *target's, in ms unless said in words.
  void add_millis(std::string name, std::string meaning, std::chrono::milliseconds* target,
                  uint64_t lo, uint64_t hi, std::string default_text = {}) {
    if (default_text.empty()) default_text = std::to_string(target->count()) + " ms";
    add({std::move(name), "MS", std::move(meaning), std::move(default_text),
         [=](std::string_view v) {
           uint64_t n = 0;
           if (!parse_decimal(v, lo, hi, &n)) return not_a(v, "duration in ms", lo, hi, {});
           *target = std::chrono::milliseconds(n);
           return std::string();
         }});
  }

  // One of a few words; `choices` pairs each word with what it does. The value name lists
  // the words ("rr|lc|hash").
  void add_choice(std::string name, std::string meaning, std::string default_text,
                  std::vector<std::pair<std::string, std::function<void()>>> choices) {
    std::string value_name;
    for (const auto& c : choices) value_name += (value_name.empty() ? "" : "|") + c.first;
    add({std::move(name), std::move(value_name), std::move(meaning), std::move(default_text),
         [choices = std::move(choices)](std::string_view v) {
           std::string words;
           for (const auto& [word, apply] : choices) {
             if (v == word) {
               apply();
               return std::string();
             }
             words += (words.empty() ? "" : ", ") + word;
           }
           return "'" + std::string(v) + "' is not one of " + words;
         }});
  }

  // Applies argv to the table, in order (a later flag wins over an earlier one). --help
  // (or -h) prints the usage on stdout and exits 0; anything wrong is reported on stderr
  // with its reason, and exits 2.
  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        print_usage(stdout);
        std::exit(0);
      }
      if (arg.substr(0, 2) != "--") {
        fail("unexpected argument '" + std::string(arg) + "' (flags start with --; see --help)");
      }
      const size_t eq = arg.find('=');
      std::string_view name = arg.substr(0, eq);
      const Flag* flag = find(name);
      if (flag == nullptr) fail("unknown flag '" + std::string(name) + "' (see --help)");
      std::string_view value;
      if (flag->value_name.empty()) {
        if (eq != std::string_view::npos) fail(flag->name + " takes no value (see --help)");
      } else if (eq != std::string_view::npos) {
        value = arg.substr(eq + 1);
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--") {
        value = argv[++i];
      } else {
        // The next word is a flag, or there is none: "--host --port 1" would otherwise
        // take "--port" as the host.
        fail(flag->name + " needs a value (" + flag->value_name + ")");
      }
      if (std::string why = flag->set(value); !why.empty()) fail(flag->name + ": " + why);
    }
  }

  void print_usage(FILE* out) const {
    std::fprintf(out, "usage: %s [--flag VALUE | --flag=VALUE]...\n", prog_.c_str());
    if (!about_.empty()) std::fprintf(out, "\n%s\n", wrap(about_, 0).c_str());
    std::fprintf(out, "\nflags:\n");
    for (const Flag& f : flags_) {
      std::string left = "  " + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
      std::string text = f.meaning + " (default: " + f.default_text + ")";
      print_row(out, left, text);
    }
    print_row(out, "  -h, --help", "print this help and exit");
    if (!notes_.empty()) std::fprintf(out, "\n%s\n", wrap(notes_, 0).c_str());
  }

  // Decimal digits only (no sign, no spaces), within [lo, hi].
  static bool parse_decimal(std::string_view text, uint64_t lo, uint64_t hi, uint64_t* out) {
    uint64_t n = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, n);
    if (text.empty() || text[0] == '+' || ec != std::errc() || ptr != end) return false;
    if (n < lo || n > hi) return false;
    *out = n;
    return true;
  }

 private:
  static constexpr size_t kMeaningColumn = 34;
  static constexpr size_t kWidth = 92;

  static std::string not_a(std::string_view v, const std::string& noun, uint64_t lo,
                           uint64_t hi, const std::string& note) {
    return "'" + std::string(v) + "' is not a " + noun + " (" + std::to_string(lo) + "-" +
           std::to_string(hi) + (note.empty() ? "" : "; " + note) + ")";
  }

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\n", prog_.c_str(), why.c_str());
    std::exit(2);
  }

  const Flag* find(std::string_view name) const {
    for (const Flag& f : flags_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  // Words of `text` filled to kWidth, continuation lines indented by `indent`.
  static std::string wrap(const std::string& text, size_t indent) {
    std::string out;
    size_t column = indent;
    size_t pos = 0;
    while (pos < text.size()) {
      if (text[pos] == '\n') {  // a line break of the text's own starts a new line
        out += '\n' + std::string(indent, ' ');
        column = indent;
        ++pos;
        continue;
      }
      size_t end = text.find_first_of(" \n", pos);
      if (end == std::string::npos) end = text.size();
      const size_t len = end - pos;
      if (column > indent && column + 1 + len > kWidth) {
        out += '\n' + std::string(indent, ' ');
        column = indent;
      } else if (column > indent) {
        out += ' ';
        ++column;
      }
      out.append(text, pos, len);
      column += len;
      pos = end < text.size() && text[end] == ' ' ? end + 1 : end;
    }
    return out;
  }

  static void print_row(FILE* out, const std::string& left, const std::string& text) {
    if (left.size() + 2 > kMeaningColumn) {
      std::fprintf(out, "%s\n%s", left.c_str(), std::string(kMeaningColumn, ' ').c_str());
    } else {
      std::fprintf(out, "%s%s", left.c_str(),
                   std::string(kMeaningColumn - left.size(), ' ').c_str());
    }
    std::fprintf(out, "%s\n", wrap(text, kMeaningColumn).c_str());
  }

  std::string prog_;
  std::string about_;
  std::string notes_;
  std::vector<Flag> flags_;
};

struct Flags {
  std::string host = "127.0.0.1";
  int port = 9000;
  std::string unix_path;
  std::chrono::milliseconds drain_timeout{5000};
  int admin_port = -1;  // -1: no admin listener
  ringnet::Options options;
  TlsFlags tls;
};

// The flags every sample server takes, as rows of `table`, stored into `f`.
inline void add_server_flags(FlagTable& table, Flags& f) {
  ringnet::Options& o = f.options;
  table.add_string("--host", "H", "IP address or host name to listen on (and the admin listener)",
                   f.host, &f.host);
  table.add_number("--port", "N", "TCP port to listen on; 0 picks a free one", &f.port, 0,
                   65535, "port", {}, "0 picks a free port");
  table.add_string("--unix", "PATH", "listen on this Unix-domain socket instead of TCP",
                   "none, TCP", &f.unix_path);
  table.add_number("--loops", "N", "event loops (threads)", &o.loops, 1, 1024, "loop count",
                   "one per online core", "leave --loops out for one per online core");
  table.add_choice("--balancer",
                   "how accepted connections are spread over the loops: round-robin, "
                   "least connections, hash of the source IP (ignored with --reuseport)",
                   "rr",
                   {{"rr", [&o] { o.balancer = ringnet::Balancer::kRoundRobin; }},
                    {"lc", [&o] { o.balancer = ringnet::Balancer::kLeastConnections; }},
                    {"hash", [&o] { o.balancer = ringnet::Balancer::kSourceHash; }}});
  table.add_switch("--reuseport",
                   "one SO_REUSEPORT listener per loop, the kernel spreads connections",
                   "off", &o.reuse_port);
  table.add_switch("--pin", "pin loop i to online core i % cores", "off", &o.pin_loops);
  table.add_choice("--backend",
                   "I/O backend; io_uring fails at start where the kernel refuses it, auto "
                   "falls back to epoll",
                   "epoll",
                   {{"auto", [&o] { o.backend = ringnet::Backend::kAuto; }},
                    {"epoll", [&o] { o.backend = ringnet::Backend::kEpoll; }},
                    {"io_uring", [&o] { o.backend = ringnet::Backend::kIoUring; }}});
  table.add_switch("--no-uring-bundle", "io_uring: no receive bundles",
                   "bundles where the kernel has them",
                   &o.uring_recv_bundle, false);
  table.add_switch("--no-uring-register-ring", "io_uring: do not register the ring's fd",
                   "registered where the kernel allows", &o.uring_register_ring, false);
  table.add_switch("--no-uring-fixed-files",
                   "io_uring: plain fds, no direct descriptors", "direct descriptors",
                   &o.uring_fixed_files, false);
  table.add_switch("--uring-buffer-inc",
                   "io_uring: consume provided buffers incrementally (kernel 6.12+)", "off",
                   &o.uring_buffer_incremental);
  table.add_number("--uring-buffers-initial", "N",
                   "io_uring: provided buffers offered per loop at first, grown on demand "
                   "(0: all of them at once)",
                   &o.uring_buffer_initial, 0, 1'000'000, "buffer count");
  table.add_millis("--drain-timeout",
                   "after SIGINT/SIGTERM, how long requests in progress may finish before "
                   "their connections are closed",
                   &f.drain_timeout, 0, 1'000'000);
  table.add_number("--admin-port", "N",
                   "serve /metrics and /healthz on host:N (0 picks a free port)",
                   &f.admin_port, 0, 65535, "port", "off", "0 picks a free port");
  table.add_switch("--no-metrics", "turn the loop histograms off, to measure their cost",
                   "histograms on", &o.metrics, false);
  table.add_millis("--idle-timeout", "close a connection with no bytes in or out for this long",
                   &o.idle_timeout, 0, 1'000'000, "0, off");
  table.add_millis("--read-timeout",
                   "close a connection whose unconsumed input (a partial request) waited "
                   "this long",
                   &o.read_timeout, 0, 1'000'000, "0, off");
  table.add_millis("--write-timeout", "close a connection whose queued output did not drain "
                   "in this long",
                   &o.write_timeout, 0, 1'000'000, "0, off");
  table.add_string("--tls-cert", "FILE",
                   "serve TLS with this PEM certificate chain (with --tls-key); SIGHUP "
                   "re-reads the files",
                   "off, plain TCP", &f.tls.cert);
  table.add_string("--tls-key", "FILE", "the PEM private key of --tls-cert", "none", &f.tls.key);
  table.add_string("--tls-ca", "FILE",
                   "require client certificates signed by a CA in this PEM file (mTLS)",
                   "none, no client certificates", &f.tls.ca);
  table.add_string("--tls-alpn", "LIST",
                   "ALPN protocols served, comma-separated, preferred first; a client that "
                   "offers only others is refused",
                   f.tls.alpn.empty() ? "none" : f.tls.alpn, &f.tls.alpn);
  table.add_choice("--tls-min", "oldest TLS version accepted", "1.2",
                   {{"1.2", [&f] { f.tls.min = "1.2"; }}, {"1.3", [&f] { f.tls.min = "1.3"; }}});
  table.add_millis("--tls-handshake-timeout",
                   "close a connection whose TLS handshake has not finished in this long",
                   &f.tls.handshake_timeout, 1, 1'000'000);
}

// What a server prints and how it stops, for the end of its --help.
inline std::string server_notes() {
  return "Prints \"listening on ADDRESS (N loops, BACKEND)\" once it accepts connections "
         "(and \"admin on ADDRESS\" with --admin-port). SIGINT/SIGTERM drain it and it exits "
         "0; exit 1 when it cannot listen or start, 2 on a bad command line.";
}

// A server's command line: the common flags, then the sample's own (added by `add_own`).
// Exits on --help (0) or a bad flag (2).
inline Flags parse_flags(int argc, char** argv, std::string about,
                         const std::function<void(FlagTable&)>& add_own = {},
                         std::string notes = server_notes(), std::string default_alpn = {}) {
  Flags f;
  f.tls.alpn = std::move(default_alpn);
  f.options.backend = ringnet::Backend::kEpoll;
  FlagTable table(argv[0], std::move(about), std::move(notes));
  add_server_flags(table, f);
  if (add_own) add_own(table);
  table.parse(argc, argv);
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
  std::shared_ptr<ringnet::proto::TlsContext> tls = make_server_tls(name, flags.tls);
  ReloadOnSighup reload(tls);  // first: SIGHUP is blocked before any thread exists
  ringnet::Engine engine(handler, flags.options);
  std::string host = flags.host.find(':') != std::string::npos ? "[" + flags.host + "]"
                                                                : flags.host;
  std::string addr = flags.unix_path.empty()
                         ? "tcp://" + host + ":" + std::to_string(flags.port)
                         : "unix:" + flags.unix_path;
  if (ringnet::Status s = engine.listen(addr, {.transport = tls}); !s) {
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
    if (tls != nullptr) engine.add_metrics([tls](ringnet::MetricsWriter& w) { tls->write_metrics(w); });
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
