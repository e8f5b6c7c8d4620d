// SPDX-License-Identifier: MIT
// rpc_client: drives rpc_echo (or any server of the RPC frame) with many calls in flight on
// one connection, checks every answer, and prints a latency summary. Built on the public
// client API: an Engine with one loop dials through a PeerPool, and an RpcClient matches
// the answers to their calls by request id.
//
//   rpc_client [--host 127.0.0.1] [--port 9000 | --unix PATH] [--calls 10000] [--window 16]
//              [--size 100] [--method 1|2] [--timeout 10000]          (--help lists them)
//
// Keeps `window` calls outstanding. The body of call n is a deterministic function of n, so
// its answer is checked without keeping a copy: the request body for method 1 (echo), the
// reversed body for method 2 (reverse). Answers may come in any order; the RpcClient holds
// each to its own call by id. On stdout, one line:
//   calls=N ok=N errors=N calls_per_sec=N p50_us=N p99_us=N
// and on stderr "rpc_client: max_us=N" (kept off stdout, whose one line tests match whole).
// Exit 0 only when every call was answered correctly; 1 when the server cannot be reached
// or any call failed (wrong body, error frame, closed connection, no answer within
// --timeout: no more calls are started after the first failure); 2 on a bad command line.
#include <ringnet/engine.h>
#include <ringnet/proto/peer_pool.h>
#include <ringnet/proto/rpc_client.h>
#include <ringnet/proto/rpc_frame.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sample_main.h"

namespace {

using ringnet::Status;
using ringnet::proto::RpcStatus;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string host = "127.0.0.1";
  uint16_t port = 9000;
  std::string unix_path;
  uint64_t calls = 10000;
  uint64_t window = 16;
  uint64_t size = 100;
  uint16_t method = 1;
  std::chrono::milliseconds timeout{10000};
  std::string tls_ca, tls_cert, tls_key, tls_name;
};

Args parse_args(int argc, char** argv) {
  Args a;
  sample::FlagTable t(
      argv[0],
      "Drives rpc_echo (or any server of the RPC frame) with many calls in flight on one "
      "connection, through Engine::dial, PeerPool and RpcClient, and checks every answer.",
      "Prints \"calls=N ok=N errors=N calls_per_sec=N p50_us=N p99_us=N\" on stdout and "
      "\"rpc_client: max_us=N\" on stderr. Exit 0 when every call was answered correctly, 1 "
      "when the server cannot be reached or a call failed (no call is started after the "
      "first failure), 2 on a bad command line.");
  t.add_string("--host", "H",
               "server host, an IP address or a name (looked up off the loops); sent to the "
               "pool as the address tcp://H:PORT",
               a.host, &a.host);
  t.add_number("--port", "N", "server TCP port", &a.port, 1, 65535, "port");
  t.add_string("--unix", "PATH", "call the server on this Unix-domain socket instead of TCP",
               "none, TCP", &a.unix_path);
  t.add_number("--calls", "N", "calls to make", &a.calls, 1, 1'000'000'000, "call count");
  t.add_number("--window", "N", "calls in flight at once", &a.window, 1, 1'000'000,
               "call count");
  t.add_number("--size", "BYTES", "request body size", &a.size, 0, UINT32_MAX, "byte count");
  t.add_number("--method", "1|2", "1 echo (the body back), 2 reverse (the body reversed)",
               &a.method, 1, 2, "method this client can check");
  t.add_millis("--timeout", "how long the connection may take to open, and each call to be "
               "answered",
               &a.timeout, 1, 3'600'000);
  t.add_string("--tls-ca", "FILE",
               "speak TLS, trusting servers signed by a CA in this PEM file (the host name "
               "is verified and sent as SNI)",
               "off, plain TCP", &a.tls_ca);
  t.add_string("--tls-cert", "FILE", "with --tls-ca: this client certificate (mTLS)", "none",
               &a.tls_cert);
  t.add_string("--tls-key", "FILE", "the PEM private key of --tls-cert", "none", &a.tls_key);
  t.add_string("--tls-server-name", "NAME",
               "with --tls-ca: the name to verify and send instead of --host", "--host",
               &a.tls_name);
  t.parse(argc, argv);
  return a;
}

std::string address_of(const Args& a) {
  if (!a.unix_path.empty()) return "unix:" + a.unix_path;
  // An IPv6 literal is bracketed in the address text, as the engine's parser wants.
  const bool bare_ipv6 = a.host.find(':') != std::string::npos && a.host[0] != '[';
  return "tcp://" + (bare_ipv6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

// The body of call `n`: deterministic, so an answer is checked without keeping a copy.
char body_byte(uint64_t n, uint64_t i) {
  return static_cast<char>((n * 131 + i * 7 + (i >> 8)) & 0xFF);
}

std::string body_of(uint64_t n, uint64_t size) {
  std::string body(size, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = body_byte(n, i);
  return body;
}

bool body_matches(uint64_t n, uint16_t method, std::string_view body, uint64_t size) {
  if (body.size() != size) return false;
  for (size_t i = 0; i < body.size(); ++i) {
    const uint64_t source = method == 2 ? size - 1 - i : i;  // reverse: read from the end
    if (body[i] != body_byte(n, source)) return false;
  }
  return true;
}

// Keeps `window` calls in flight: the main thread starts the first window, and each call
// that ends starts the next one from its `done` (on the loop thread, for an answer), so
// the steady state costs no thread hop. After the first failure no call is started.
class CallDriver {
 public:
  CallDriver(ringnet::proto::RpcClient& rpc, const Args& args, std::string address)
      : rpc_(rpc), args_(args), address_(std::move(address)) {
    latencies_us_.reserve(std::min<uint64_t>(args.calls, 1u << 20));
  }

  // Returns once every call started has ended.
  void run() {
    uint64_t first = 0, count = 0;
    {
      std::lock_guard lock(mu_);
      first = next_;
      count = std::min(args_.window, args_.calls);
      next_ += count;
    }
    for (uint64_t n = first; n < first + count; ++n) start(n);
    std::unique_lock lock(mu_);
    all_ended_.wait(lock, [this] { return finished(); });
  }

  uint64_t ok() const { return ok_; }
  std::vector<uint32_t>& latencies_us() { return latencies_us_; }

 private:
  // Call numbers start at 1, like the request ids the client gives them (not relied on).
  void start(uint64_t n) {
    const Clock::time_point sent = Clock::now();
    rpc_.call(address_, args_.method, body_of(n, args_.size), {},
              [this, n, sent](const RpcStatus& s, std::string_view body) {
                ended(n, sent, s, body);
              });
  }

  void ended(uint64_t n, Clock::time_point sent, const RpcStatus& s, std::string_view body) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent);
    std::string failure;
    if (!s) {
      failure = s.to_string();  // "UNAVAILABLE: dial tcp://...: Connection refused"
    } else if (!body_matches(n, args_.method, body, args_.size)) {
      failure = "wrong body (" + std::to_string(body.size()) + " bytes)";
    }
    uint64_t next = 0;
    {
      std::lock_guard lock(mu_);
      ++ended_;
      if (failure.empty()) {
        ++ok_;
        latencies_us_.push_back(static_cast<uint32_t>(std::min<int64_t>(us.count(), UINT32_MAX)));
      } else if (!failed_) {
        failed_ = true;
        std::fprintf(stderr, "rpc_client: call %" PRIu64 " to %s failed: %s\n", n,
                     address_.c_str(), failure.c_str());
      }
      // Claimed before this call counts as ended, so finished() cannot be seen early.
      if (!failed_ && next_ <= args_.calls) next = next_++;
      // Under the lock: once run() sees the end it returns and the driver may go, so the
      // last call must not touch it after unlocking.
      if (finished()) all_ended_.notify_one();
    }
    if (next != 0) start(next);
  }

  // Under mu_: every call started has ended, and no more will be.
  bool finished() const { return ended_ + 1 == next_ && (failed_ || next_ > args_.calls); }

  ringnet::proto::RpcClient& rpc_;
  const Args& args_;
  const std::string address_;
  std::mutex mu_;
  std::condition_variable all_ended_;
  uint64_t next_ = 1;   // the next call to start
  uint64_t ended_ = 0;  // calls that ended, answered or not
  uint64_t ok_ = 0;
  bool failed_ = false;
  std::vector<uint32_t> latencies_us_;
};

uint32_t percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  const std::string address = address_of(args);

  // Declared in the order they depend on each other: destroyed client first, engine last.
  ringnet::proto::RpcClientHandler handler;
  ringnet::Options options;
  options.loops = 1;
  ringnet::Engine engine(handler, options);
  std::shared_ptr<ringnet::proto::TlsContext> tls;
  if (!args.tls_ca.empty()) {
    ringnet::proto::TlsConfig cfg;
    cfg.ca_file = args.tls_ca;
    cfg.cert_file = args.tls_cert;
    cfg.key_file = args.tls_key;
    if (Status s = ringnet::proto::TlsContext::client(cfg, &tls); !s) {
      std::fprintf(stderr, "rpc_client: %s\n", s.message().c_str());
      return 1;
    }
  }
  ringnet::proto::PeerPool pool(engine, {.max_per_address = 1,
                                         .dial_timeout = args.timeout,
                                         .transport = tls,
                                         .server_name = args.tls_name});
  ringnet::proto::RpcClient rpc(
      pool, {.default_timeout = args.timeout,
             .max_attempts = 1,
             // Accept answers as large as our own requests, and never less than the default.
             .codec = {.min_body = 0,
                       .max_body = static_cast<uint32_t>(std::max<uint64_t>(
                           args.size, ringnet::proto::kRpcDefaultMaxBody))}});
  handler.attach(pool, rpc);
  if (Status s = engine.start(); !s) {
    std::fprintf(stderr, "rpc_client: engine start: %s\n", s.message().c_str());
    return 1;
  }

  // Open the connection first, so that a server that cannot be reached is reported as such
  // (not as the first call failing) and the latencies do not include the connect.
  std::promise<Status> connected;
  pool.get(address, [&connected](const ringnet::ConnHandle&, const Status& s) {
    connected.set_value(s);
  });
  if (Status s = connected.get_future().get(); !s) {
    std::fprintf(stderr, "rpc_client: cannot connect to %s: %s\n", address.c_str(),
                 s.message().c_str());
    return 1;
  }

  CallDriver driver(rpc, args, address);
  const auto start = Clock::now();
  driver.run();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<uint32_t>& lat = driver.latencies_us();
  const uint64_t errors = args.calls - driver.ok();  // failed, or never started
  const uint32_t max_us = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  std::printf("calls=%" PRIu64 " ok=%" PRIu64 " errors=%" PRIu64
              " calls_per_sec=%.0f p50_us=%u p99_us=%u\n",
              args.calls, driver.ok(), errors,
              seconds > 0 ? static_cast<double>(driver.ok()) / seconds : 0.0,
              percentile(lat, 0.50), percentile(lat, 0.99));
  std::fflush(stdout);
  std::fprintf(stderr, "rpc_client: max_us=%u\n", max_us);
  return errors == 0 ? 0 : 1;
}
