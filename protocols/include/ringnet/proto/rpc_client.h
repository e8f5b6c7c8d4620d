// RpcClient: many calls in flight on one connection per address, over the RPC frame
// (rpc_frame.h), matched by request id.
//
//   ringnet::proto::PeerPool pool(engine);
//   ringnet::proto::RpcClient rpc(pool, {.default_timeout = 500ms});
//   rpc.set_method_timeout(kGetUser, 100ms);
//   rpc.call("tcp://10.0.0.7:9000", kGetUser, key, {.timeout = 80ms, .idempotent = true},
//            [](const ringnet::Status& s, std::string_view body) { ... });
//
//   // the client engine's handler forwards its connections' events to both; an engine
//   // used only for RPC calls can take RpcClientHandler, which does just that.
//
// Every call ends exactly once, through `done`:
//   ok            the response body (a view, valid during `done`)
//   error frame   code EPROTO, message "rpc error: <the server's body>"
//   ETIMEDOUT     no response within the effective timeout: the smallest of the client's
//                 default, the method's and the call's own (zero = not set)
//   ECONNRESET    the connection died before the response (at once, not at the timeout)
//   ECANCELED     cancel(id), or the client was destroyed
//   other         the dial failed (ECONNREFUSED...), or the connection refused the write
// Calls marked idempotent (the frame's flag bit 0) are retried after a connection failure,
// up to max_attempts in all, with backoff doubling from `backoff`, within their deadline.
// A response that comes after its call ended (timed out, cancelled) is counted and dropped.
//
// Threads: call(), cancel() and stats() from any thread; the hooks on loop threads. `done`
// runs on a loop thread (responses, connection failures) or the client's timer thread
// (timeouts, retries' failures), never under the client's lock, never twice.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/proto/peer_pool.h"
#include "ringnet/proto/rpc_frame.h"
#include "ringnet/status.h"

namespace ringnet::proto {

struct RpcClientOptions {
  std::chrono::milliseconds default_timeout{1000};
  int max_attempts = 3;                     // for idempotent calls; 1 = never retry
  std::chrono::milliseconds backoff{10};    // before the first retry, doubled after
  RpcFrameOptions codec{};                  // response size limits
};

struct RpcCallOptions {
  std::chrono::milliseconds timeout{0};  // 0 = not set (the others decide)
  bool idempotent = false;               // safe to send again after a connection failure
};

struct RpcClientStats {
  uint64_t calls = 0, ok = 0, errors = 0, timeouts = 0, connection_failures = 0;
  uint64_t cancelled = 0, retries = 0, late_responses = 0;
  uint64_t in_flight = 0;  // gauge
};

class RpcClient {
 public:
  using Done = std::function<void(const Status&, std::string_view body)>;

  RpcClient(PeerPool& pool, RpcClientOptions options = {});
  ~RpcClient();  // calls still in flight end with ECANCELED
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  void set_method_timeout(uint16_t method, std::chrono::milliseconds timeout);
  // Starts a call; returns its id (for cancel). Any thread.
  uint64_t call(std::string_view address, uint16_t method, std::string body,
                RpcCallOptions options, Done done);
  // Ends the call with ECANCELED if it has not ended; true if it had not.
  bool cancel(uint64_t id);

  // Handler hooks (loop thread). on_traffic consumes the responses it understands; a
  // malformed frame closes the connection (its calls then fail or retry).
  Action on_traffic(Conn& c);
  void on_close(Conn& c, CloseInfo info);

  RpcClientStats stats() const;

 private:
  struct Call {
    std::string address;
    uint16_t method = 0;
    std::string body;
    bool idempotent = false;
    Done done;
    std::chrono::steady_clock::time_point deadline;
    int attempts = 0;
    std::chrono::milliseconds next_backoff{0};
    uint64_t conn_key = 0;  // connection it was sent on (0: none yet)
    std::multimap<std::chrono::steady_clock::time_point, uint64_t>::iterator deadline_it;
  };
  using Clock = std::chrono::steady_clock;
  static uint64_t conn_key(const Conn& c) {
    return (static_cast<uint64_t>(c.loop_index() + 1) << 48) ^ c.id().pack();
  }

  void send(uint64_t id);                       // (again) through the pool
  void fail_or_retry(uint64_t id, const Status& why, bool connection_failure);
  void finish(uint64_t id, const Status& s, std::string_view body, uint64_t RpcClientStats::*counter);
  void timer_main();

  PeerPool& pool_;
  RpcClientOptions options_;
  RpcFrameCodec codec_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Call> calls_;
  std::unordered_map<uint16_t, std::chrono::milliseconds> method_timeouts_;
  std::multimap<Clock::time_point, uint64_t> deadlines_;  // timeouts (may hold stale ids)
  std::multimap<Clock::time_point, uint64_t> retries_;    // sends due after a backoff
  RpcClientStats stats_;
  bool stopping_ = false;
  std::thread timer_;
};

// The handler of an engine whose connections serve only RPC calls: forwards every
// connection event to the pool and the client. The engine needs its handler before the
// pool and client exist, so they are attached afterwards (before Engine::start).
class RpcClientHandler final : public EventHandler {
 public:
  void attach(PeerPool& pool, RpcClient& rpc) {
    pool_ = &pool;
    rpc_ = &rpc;
  }
  Action on_open(Conn& c) override {
    pool_->on_open(c);
    return Action::kNone;
  }
  Action on_traffic(Conn& c) override { return rpc_->on_traffic(c); }
  void on_close(Conn& c, CloseInfo info) override {
    rpc_->on_close(c, info);  // fails or retries its calls first, while the pool
    pool_->on_close(c, info);  // still knows the connection
  }

 private:
  PeerPool* pool_ = nullptr;
  RpcClient* rpc_ = nullptr;
};

}  // namespace ringnet::proto
