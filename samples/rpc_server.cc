// SPDX-License-Identifier: MIT
// rpc_server: two RPC services on two ports (ringnet/proto/rpc_server.h).
//
//   rpc_server --port 9000 --compute-port 9001 [--admin-port 9100] [--loops N] ...
//
// Service "kv" (--port), Protocol Buffers messages (samples/proto/kv.proto):
//   1 get  GetRequest -> GetReply      2 put  PutRequest -> PutReply
// Service "compute" (--compute-port), raw bytes:
//   1 echo     the body back                 2 reverse  the body reversed
//   3 sleep    a big-endian u32 of ms (at most 10000) slept on the worker pool, then the
//              body back                    4 hang     never answered: its deadline ends it
//   5 fail     the body is a decimal status code: answered with it
// Method 0 on both is rpc.list ("<id> <name>\n" per method). Deadlines: --timeout for every
// call, 10 s for sleep, and the caller's budget when its frame carries one.
// SIGINT/SIGTERM: listeners close, new requests get UNAVAILABLE, calls in flight get
// --drain-limit, then it prints one line of totals and exits 0:
//   rpc_server: calls=N ok=N errors=N deadline_exceeded=N cancelled=N unavailable=N
#include <ringnet/proto/rpc_server.h>
#include <ringnet/proto/rpc_typed.h>

#include <cinttypes>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kv.pb.h"
#include "sample_main.h"

namespace {

using namespace std::chrono_literals;
using ringnet::proto::RpcCall;
using ringnet::proto::RpcCallPtr;
using ringnet::proto::RpcCode;
using ringnet::proto::RpcStatus;

// The store behind "kv": one lock, held for a map operation only.
class Store {
 public:
  bool get(const std::string& key, std::string* value) {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    *value = it->second;
    return true;
  }
  bool put(const std::string& key, std::string value) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = map_.insert_or_assign(key, std::move(value));
    return !fresh;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> map_;
};

ringnet::Status add_kv(ringnet::proto::RpcService& kv, Store& store) {
  using namespace ringnet::samples;
  if (auto s = ringnet::proto::add_typed_unary<GetRequest, GetReply>(
          kv, "get", 1,
          [&store](RpcCall&, const GetRequest& req, GetReply& reply) {
            std::string value;
            reply.set_found(store.get(req.key(), &value));
            reply.set_value(std::move(value));
            return RpcStatus::ok();
          });
      !s) {
    return s;
  }
  return ringnet::proto::add_typed_unary<PutRequest, PutReply>(
      kv, "put", 2, [&store](RpcCall&, const PutRequest& req, PutReply& reply) {
        if (req.key().empty()) return RpcStatus::make(RpcCode::kInvalidArgument, "empty key");
        reply.set_replaced(store.put(req.key(), req.value()));
        return RpcStatus::ok();
      });
}

// Where "hang" keeps its calls. A call dropped unanswered is answered INTERNAL at once
// (RpcCall's destructor), so a hang holds its call until its deadline or the drain ends
// it; ended calls are let go as new ones come.
class Parking {
 public:
  void park(RpcCallPtr call) {
    std::lock_guard lock(mu_);
    std::erase_if(calls_, [](const RpcCallPtr& c) { return c->done(); });
    calls_.push_back(std::move(call));
  }

 private:
  std::mutex mu_;
  std::vector<RpcCallPtr> calls_;
};

ringnet::Status add_compute(ringnet::proto::RpcService& compute, Parking& parking) {
  ringnet::Status s = compute.add_unary("echo", 1, [](RpcCall&, std::string_view in, std::string& out) {
    out.assign(in);
    return RpcStatus::ok();
  });
  if (s) {
    s = compute.add_unary("reverse", 2, [](RpcCall&, std::string_view in, std::string& out) {
      out.assign(in.rbegin(), in.rend());
      return RpcStatus::ok();
    });
  }
  if (s) {
    s = compute.add_unary(
        "sleep", 3,
        [](RpcCall& call, std::string_view in, std::string& out) {
          const auto* b = reinterpret_cast<const unsigned char*>(in.data());
          const uint32_t ms = in.size() < 4 ? UINT32_MAX
                                            : (uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 |
                                               uint32_t{b[2]} << 8 | uint32_t{b[3]});
          if (ms > 10000) {
            return RpcStatus::make(RpcCode::kInvalidArgument,
                                   "sleep: body must start with a big-endian u32 of at most 10000 ms");
          }
          // Sleeps in slices, so a cancelled call (deadline, drain) frees its thread early.
          const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
          while (std::chrono::steady_clock::now() < until && !call.cancelled()) {
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
                5ms, until - std::chrono::steady_clock::now()));
          }
          out.assign(in);
          return RpcStatus::ok();
        },
        {.timeout = 10s, .exec = ringnet::proto::RpcExec::kPool});
  }
  if (s) s = compute.add_async("hang", 4, [&parking](RpcCallPtr call) { parking.park(std::move(call)); });
  if (s) {
    s = compute.add_unary("fail", 5, [](RpcCall&, std::string_view in, std::string&) {
      int code = 0;
      for (char ch : in) code = ch >= '0' && ch <= '9' && code < 1000 ? code * 10 + (ch - '0') : 1000;
      if (code <= 0 || code >= ringnet::proto::kRpcCodeCount) {
        return RpcStatus::make(RpcCode::kInvalidArgument, "fail: body must be a code 1..16");
      }
      return RpcStatus::make(static_cast<RpcCode>(code), "failed as asked");
    });
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int compute_port = 9001;
  int timeout_ms = 5000;
  int drain_limit_ms = 5000;
  uint32_t max_body = ringnet::proto::kRpcDefaultMaxBody;
  ringnet::proto::RpcServerOptions options;
  ringnet::proto::RpcCompression compress = ringnet::proto::RpcCompression::kNone;
  sample::Flags flags = sample::parse_flags(
      argc, argv,
      "Two RPC services (ringnet/proto/rpc_server.h): \"kv\" on --port with protobuf get (1) "
      "and put (2); \"compute\" on --compute-port with echo (1), reverse (2), sleep (3, on the "
      "worker pool), hang (4, never answered) and fail (5, the body's status code). Method 0 "
      "lists the methods.",
      [&](sample::FlagTable& t) {
        t.add_number("--compute-port", "N", "TCP port of the compute service; 0 picks a free one",
                     &compute_port, 0, 65535, "port");
        t.add_number("--timeout", "MS", "default deadline of every call", &timeout_ms, 1,
                     3600000, "milliseconds");
        t.add_number("--drain-limit", "MS", "on SIGTERM, how long calls in flight may finish",
                     &drain_limit_ms, 0, 3600000, "milliseconds");
        t.add_number("--max-body", "BYTES", "largest request body (and decompressed body)",
                     &max_body, 1, UINT32_MAX, "byte count");
        t.add_number("--pool-threads", "N", "worker pool threads (compute.sleep)",
                     &options.pool.threads, 1, 256, "thread count");
        t.add_choice("--compress", "compression of responses over 1 KiB", "none",
                     {{"none", [&] { compress = ringnet::proto::RpcCompression::kNone; }},
                      {"zstd", [&] { compress = ringnet::proto::RpcCompression::kZstd; }},
                      {"lz4", [&] { compress = ringnet::proto::RpcCompression::kLz4; }}});
      },
      sample::server_notes() + " On exit it prints \"rpc_server: calls=N ok=N errors=N "
                               "deadline_exceeded=N cancelled=N unavailable=N\".");
  options.engine = flags.options;
  const std::string host = flags.host.find(':') != std::string::npos ? "[" + flags.host + "]"
                                                                       : flags.host;
  if (flags.admin_port >= 0) options.admin = "tcp://" + host + ":" + std::to_string(flags.admin_port);
  Parking parking;  // outlives the server: its calls are answered by then
  std::shared_ptr<ringnet::proto::TlsContext> tls = sample::make_server_tls("rpc_server", flags.tls);
  sample::ReloadOnSighup reload(tls);  // before any thread: SIGHUP is blocked in all of them
  ringnet::proto::RpcServer server(options);
  ringnet::proto::RpcServiceOptions common;
  common.timeout = std::chrono::milliseconds(timeout_ms);
  common.drain_limit = std::chrono::milliseconds(drain_limit_ms);
  common.frame.max_body = max_body;
  common.max_decompressed = max_body;
  common.compression.codec = compress;
  common.transport = tls;  // both services (null: plain TCP)
  ringnet::proto::RpcServiceOptions kv_options = common;
  kv_options.name = "kv";
  kv_options.listen = {flags.unix_path.empty() ? "tcp://" + host + ":" + std::to_string(flags.port)
                                               : "unix:" + flags.unix_path};
  ringnet::proto::RpcServiceOptions compute_options = common;
  compute_options.name = "compute";
  compute_options.listen = {"tcp://" + host + ":" + std::to_string(compute_port)};
  Store store;
  if (ringnet::Status s = add_kv(server.add_service(kv_options), store); !s) {
    std::fprintf(stderr, "rpc_server: %s\n", s.message().c_str());
    return 1;
  }
  if (ringnet::Status s = add_compute(server.add_service(compute_options), parking); !s) {
    std::fprintf(stderr, "rpc_server: %s\n", s.message().c_str());
    return 1;
  }
  server.add_filter(std::make_shared<ringnet::proto::RpcLogFilter>(5));
  if (flags.admin_port >= 0) {
    server.engine().add_metrics(sample::heap_metrics);
    if (tls != nullptr) {
      server.engine().add_metrics([tls](ringnet::MetricsWriter& w) { tls->write_metrics(w); });
    }
  }

  // The signal thread must exist before the loops and the pool (see ShutdownOnSignals).
  ringnet::ShutdownOnSignals signals([&server, &flags](int) { server.shutdown(flags.drain_timeout); });
  if (ringnet::Status s = server.start(); !s) {
    std::fprintf(stderr, "rpc_server: start: %s\n", s.message().c_str());
    return 1;
  }
  for (const char* name : {"kv", "compute"}) {
    for (const ringnet::SockAddr& a : server.service(name)->addrs()) {
      std::printf("listening on %s (service %s, %d loops, %s)\n", a.to_string().c_str(), name,
                  server.engine().loop_count(),
                  ringnet::backend_name(server.engine().options().backend));
    }
  }
  if (flags.admin_port >= 0) {
    std::printf("admin on %s (/metrics, /healthz)\n",
                server.engine().admin_addr().to_string().c_str());
  }
  std::fflush(stdout);
  server.wait();
  const ringnet::proto::RpcServerStats st = server.stats();
  std::printf("rpc_server: calls=%" PRIu64 " ok=%" PRIu64 " errors=%" PRIu64
              " deadline_exceeded=%" PRIu64 " cancelled=%" PRIu64 " unavailable=%" PRIu64 "\n",
              st.calls, st.ok, st.errors, st.deadline_exceeded, st.cancelled, st.unavailable);
  std::fflush(stdout);
  return 0;
}
