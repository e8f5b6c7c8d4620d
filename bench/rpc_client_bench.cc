// SPDX-License-Identifier: MIT
// rpc_client_bench: N callers sharing one reused connection vs one connection per caller,
// in the same run. A server engine (1 loop, RPC echo) and a client engine (1 loop,
// PeerPool + RpcClient) run in this process; each caller keeps one call in flight (closed
// loop: the next call starts from the previous call's completion), for --duration seconds
// after --warmup. Prints calls/s and latency percentiles per mode.
//
//   rpc_client_bench [--callers 50] [--size 64] [--duration 3] [--warmup 1]
//                    [--backend epoll|io_uring] [--repeats 3]
//
// Pin it with taskset to compare runs; both engines share the process, so the figures
// are for comparing the two modes with each other, not with other servers.
#include <ringnet/engine.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/peer_pool.h>
#include <ringnet/proto/rpc_client.h>
#include <ringnet/proto/rpc_frame.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace ringnet;
using namespace ringnet::proto;
using Clock = std::chrono::steady_clock;

class EchoServer final : public FramedHandler<RpcFrameCodec> {
 public:
  Action on_message(Conn& c, const RpcFrame& f) override {
    RpcFrame reply = f;
    reply.type = RpcType::kResponse;
    return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
  }
};

struct Result {
  double calls_per_sec = 0;
  double p50_us = 0, p99_us = 0;
  uint64_t errors = 0;
  uint64_t connections = 0;
};

// One measurement: `per_address` connections to the server, `callers` closed loops.
Result run_mode(const std::string& addr, Backend backend, int callers, size_t per_address,
                size_t size, double warmup_s, double duration_s) {
  RpcClientHandler side;
  Options o;
  o.loops = 1;
  o.backend = backend;
  Engine engine(side, o);
  auto pool = std::make_unique<PeerPool>(engine, PeerPoolOptions{.max_per_address = per_address});
  auto rpc = std::make_unique<RpcClient>(*pool, RpcClientOptions{.default_timeout = std::chrono::seconds(5)});
  side.attach(*pool, *rpc);
  if (Status s = engine.start(); !s) {
    std::fprintf(stderr, "client start: %s\n", s.message().c_str());
    std::exit(1);
  }
  const std::string body(size, 'x');
  std::atomic<bool> measuring{false}, running{true};
  std::atomic<uint64_t> errors{0};
  std::mutex mu;
  std::vector<uint32_t> latencies;  // ns/100, while measuring (loop thread appends)
  latencies.reserve(4 << 20);
  std::atomic<uint64_t> done_calls{0};

  std::function<void()> start_call;
  struct Loop {
    std::function<void()> next;
  };
  std::vector<std::shared_ptr<Loop>> loops;
  for (int i = 0; i < callers; ++i) {
    auto loop = std::make_shared<Loop>();
    std::weak_ptr<Loop> weak = loop;
    loop->next = [&, weak] {
      if (!running.load(std::memory_order_relaxed)) return;
      Clock::time_point t0 = Clock::now();
      rpc->call(addr, 1, body, {}, [&, weak, t0](const RpcStatus& s, std::string_view) {
        if (!s) errors.fetch_add(1);
        if (measuring.load(std::memory_order_relaxed)) {
          auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
          std::lock_guard lock(mu);
          latencies.push_back(static_cast<uint32_t>(std::min<int64_t>(ns / 100, UINT32_MAX)));
          done_calls.fetch_add(1, std::memory_order_relaxed);
        }
        if (auto l = weak.lock()) l->next();
      });
    };
    loops.push_back(loop);
  }
  for (auto& l : loops) l->next();
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
  measuring.store(true);
  Clock::time_point t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(duration_s));
  measuring.store(false);
  double window = std::chrono::duration<double>(Clock::now() - t0).count();
  running.store(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the last calls end
  Result r;
  {
    std::lock_guard lock(mu);
    r.calls_per_sec = double(done_calls.load()) / window;
    std::sort(latencies.begin(), latencies.end());
    if (!latencies.empty()) {
      r.p50_us = latencies[latencies.size() / 2] / 10.0;
      r.p99_us = latencies[latencies.size() * 99 / 100] / 10.0;
    }
  }
  r.errors = errors.load();
  r.connections = engine.stats().dialed;
  engine.stop();
  engine.wait();
  loops.clear();
  rpc.reset();
  pool.reset();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int callers = 50, repeats = 3;
  size_t size = 64;
  double duration = 3, warmup = 1;
  Backend backend = Backend::kEpoll;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rpc_client_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--callers") callers = std::atoi(val());
    else if (a == "--size") size = static_cast<size_t>(std::atol(val()));
    else if (a == "--duration") duration = std::atof(val());
    else if (a == "--warmup") warmup = std::atof(val());
    else if (a == "--repeats") repeats = std::atoi(val());
    else if (a == "--backend") backend = std::strcmp(val(), "io_uring") == 0 ? Backend::kIoUring : Backend::kEpoll;
    else {
      std::fprintf(stderr, "usage: rpc_client_bench [--callers N] [--size B] [--duration S] "
                           "[--warmup S] [--repeats N] [--backend epoll|io_uring]\n");
      return 2;
    }
  }
  if (callers < 1 || repeats < 1 || duration <= 0) return 2;
  EchoServer server;
  Options so;
  so.loops = 1;
  so.backend = backend;
  Engine server_engine(server, so);
  if (Status s = server_engine.listen("tcp://127.0.0.1:0"); !s) return 1;
  if (Status s = server_engine.start(); !s) {
    std::fprintf(stderr, "server start: %s\n", s.message().c_str());
    return 1;
  }
  const std::string addr = "tcp://" + server_engine.listen_addrs()[0].to_string();
  std::printf("| run | mode | connections | calls/s | p50 us | p99 us | errors |\n"
              "|---|---|---:|---:|---:|---:|---:|\n");
  for (int r = 1; r <= repeats; ++r) {  // interleaved: shared, per-caller, shared, ...
    for (int mode = 0; mode < 2; ++mode) {
      size_t per_address = mode == 0 ? 1 : static_cast<size_t>(callers);
      Result res = run_mode(addr, backend, callers, per_address, size, warmup, duration);
      std::printf("| %d | %s | %llu | %.0f | %.1f | %.1f | %llu |\n", r,
                  mode == 0 ? "one shared connection" : "one connection per caller",
                  static_cast<unsigned long long>(res.connections), res.calls_per_sec,
                  res.p50_us, res.p99_us, static_cast<unsigned long long>(res.errors));
      std::fflush(stdout);
    }
  }
  server_engine.stop();
  server_engine.wait();
  return 0;
}
