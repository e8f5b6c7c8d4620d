// SPDX-License-Identifier: MIT
// RoutedRpcClient: key → HashRouter node → RpcClient call, outcomes back to the router.
#include "ringnet/proto/routed_rpc.h"

#include "callbacks_in_flight.h"

#include <condition_variable>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ringnet::proto {

namespace {

using Clock = std::chrono::steady_clock;

// Whether an attempt's outcome says something about the node (rather than the request).
enum class Health { kGood, kBad, kUnknown };
Health health_of(const RpcStatus& s) {
  switch (s.code) {
    case RpcCode::kOk:
      return Health::kGood;
    case RpcCode::kUnavailable:
    case RpcCode::kDeadlineExceeded:
      return Health::kBad;
    case RpcCode::kCancelled:
      return Health::kUnknown;
    default:
      // An error frame (no errno) is the node answering; an error the client made itself
      // (a refused filter, a body too large: with an errno) never reached it.
      return s.error == 0 ? Health::kGood : Health::kUnknown;
  }
}

}  // namespace

struct RoutedRpcClient::State : std::enable_shared_from_this<RoutedRpcClient::State> {
  struct Call {
    std::string key;
    uint16_t method = 0;
    std::string body;  // kept only while a second node may be tried
    RpcCallOptions options;
    Done done;
    Clock::time_point deadline = Clock::time_point::max();
    HashRouter::Lease lease;  // the node of the attempt in flight
    uint64_t rpc_id = 0;      // that attempt's RpcClient call, 0 while it starts
    uint32_t attempt = 0;
    bool rerouted = false, cancelled = false;
  };

  State(RpcClient& r, HashRouter& h, RoutedRpcOptions o) : rpc(r), router(h), options(o) {}

  RpcClient& rpc;
  HashRouter& router;
  const RoutedRpcOptions options;

  std::mutex mu;  // everything below
  std::condition_variable cv;
  bool closing = false;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Call>> calls;
  std::unordered_map<uint64_t, uint64_t> probes;  // probe token -> RpcClient id (0: starting)
  std::unordered_set<std::string> probing;        // nodes with a probe outstanding
  CallbacksInFlight running;                      // `done`s running now, by thread
  RoutedRpcStats stats;

  void start(const std::shared_ptr<State>& self, uint64_t id, const std::shared_ptr<Call>& c,
             std::string avoid);
  void attempt_done(uint64_t id, uint32_t attempt, const RpcStatus& status, std::string_view body);
  void finish(uint64_t id, const std::shared_ptr<Call>& c, std::unique_lock<std::mutex>& lk,
              const RpcStatus& status, std::string_view body, const std::string& node);
};

// Acquires the key's node (avoiding `avoid`) and sends the attempt. Never under `mu`: the
// RpcClient may end the call on this thread, before call() returns.
void RoutedRpcClient::State::start(const std::shared_ptr<State>& self, uint64_t id,
                                   const std::shared_ptr<Call>& c, std::string avoid) {
  HashRouter::Lease lease = router.acquire(c->key, avoid);
  std::unique_lock lk(mu);
  if (!lease) {
    ++stats.no_node;
    finish(id, c, lk, RpcStatus::make(RpcCode::kUnavailable, "no node for the key"), {}, {});
    return;
  }
  std::string node = lease.address();
  uint32_t attempt = ++c->attempt;
  c->lease = std::move(lease);
  bool keep_body = options.next_node_on_unavailable && c->options.idempotent && !c->rerouted;
  std::string body = keep_body ? c->body : std::move(c->body);
  lk.unlock();
  std::weak_ptr<State> weak = self;
  uint64_t rid = rpc.call(node, c->method, std::move(body), c->options,
                          [weak, id, attempt](const RpcStatus& s, std::string_view b) {
                            if (auto st = weak.lock()) st->attempt_done(id, attempt, s, b);
                          });
  lk.lock();
  auto it = calls.find(id);
  if (it == calls.end() || it->second->attempt != attempt) return;  // ended already
  it->second->rpc_id = rid;
  if (!c->cancelled) return;
  lk.unlock();
  rpc.cancel(rid);  // cancel() came while the attempt was starting
}

void RoutedRpcClient::State::attempt_done(uint64_t id, uint32_t attempt, const RpcStatus& status,
                                          std::string_view body) {
  std::unique_lock lk(mu);
  auto it = calls.find(id);
  if (it == calls.end() || it->second->attempt != attempt) return;
  std::shared_ptr<Call> c = it->second;
  std::string node = c->lease.address();
  Health h = health_of(status);
  if (h != Health::kUnknown) router.report(node, h == Health::kGood);
  router.release(c->lease);
  c->rpc_id = 0;
  Clock::time_point now = Clock::now();
  if (status.code == RpcCode::kUnavailable && options.next_node_on_unavailable &&
      c->options.idempotent && !c->rerouted && !c->cancelled && !closing && now < c->deadline) {
    c->rerouted = true;
    if (c->options.timeout.count() > 0)  // the second node gets what is left, not more
      c->options.timeout = std::chrono::ceil<std::chrono::milliseconds>(c->deadline - now);
    ++stats.rerouted;
    lk.unlock();
    // The callback holds the state strongly only while it runs; so may the new attempt.
    start(shared_from_this(), id, c, node);
    return;
  }
  finish(id, c, lk, status, body, node);
}

// Ends the call: forgets it, then runs `done` outside the lock (returns with `lk` released),
// counted in `running` so that the destructor waits for it unless it runs inside it.
void RoutedRpcClient::State::finish(uint64_t id, const std::shared_ptr<Call>& c,
                                    std::unique_lock<std::mutex>& lk, const RpcStatus& status,
                                    std::string_view body, const std::string& node) {
  calls.erase(id);
  CallbacksInFlight::Scope scope(running, lk);
  if (c->done) c->done(status, body, node);
}

RoutedRpcClient::RoutedRpcClient(RpcClient& rpc, HashRouter& router, RoutedRpcOptions options)
    : state_(std::make_shared<State>(rpc, router, options)) {
  if (options.probe_interval.count() <= 0) return;
  prober_ = std::thread([st = state_] {
    std::unique_lock lk(st->mu);
    for (;;) {
      // A deadline, not a wait for a period: the cv is notified by every probe's answer.
      auto next = Clock::now() + st->options.probe_interval;
      if (st->cv.wait_until(lk, next, [&] { return st->closing; })) break;
      lk.unlock();
      probe_state(st);  // `st` keeps the state while the thread runs; joined before it goes
      lk.lock();
    }
  });
}

RoutedRpcClient::~RoutedRpcClient() {
  State& st = *state_;
  {
    std::lock_guard lk(st.mu);
    st.closing = true;
  }
  st.cv.notify_all();
  if (prober_.joinable()) prober_.join();
  std::unique_lock lk(st.mu);
  while (!st.calls.empty() || !st.probes.empty()) {
    std::vector<uint64_t> ids;
    for (auto& [id, c] : st.calls) {
      c->cancelled = true;
      if (c->rpc_id != 0) ids.push_back(c->rpc_id);
    }
    for (auto& [token, rid] : st.probes)
      if (rid != 0) ids.push_back(rid);
    lk.unlock();
    for (uint64_t rid : ids) st.rpc.cancel(rid);  // their `done`s end the calls
    lk.lock();
    // Attempts still starting on other threads get their id soon and see `cancelled`.
    st.cv.wait_for(lk, std::chrono::milliseconds(5));
  }
  st.running.wait_others(lk);  // not for a `done` on this thread: it is destroying us
}

uint64_t RoutedRpcClient::call(std::string_view key, uint16_t method, std::string body,
                               RpcCallOptions options, Done done) {
  auto c = std::make_shared<State::Call>();
  c->key = std::string(key);
  c->method = method;
  c->body = std::move(body);
  c->options = options;
  c->done = std::move(done);
  if (options.timeout.count() > 0) c->deadline = Clock::now() + options.timeout;
  std::shared_ptr<State> st = state_;  // `done` may destroy this object
  std::unique_lock lk(st->mu);
  uint64_t id = st->next_id++;
  ++st->stats.calls;
  if (st->closing) {
    st->finish(id, c, lk, RpcStatus::make(RpcCode::kCancelled, "client closing"), {}, {});
    return id;
  }
  st->calls.emplace(id, c);
  lk.unlock();
  st->start(st, id, c, {});
  return id;
}

bool RoutedRpcClient::cancel(uint64_t id) {
  std::unique_lock lk(state_->mu);
  auto it = state_->calls.find(id);
  if (it == state_->calls.end() || it->second->cancelled) return false;
  it->second->cancelled = true;
  uint64_t rid = it->second->rpc_id;
  lk.unlock();
  if (rid != 0) state_->rpc.cancel(rid);  // else start() cancels it once it has the id
  return true;
}

void RoutedRpcClient::probe() { probe_state(state_); }

void RoutedRpcClient::probe_state(const std::shared_ptr<State>& st) {
  for (const HashRouterNode& n : st->router.nodes()) {
    std::unique_lock lk(st->mu);
    if (st->closing || !st->probing.insert(n.address).second) continue;  // one at a time
    uint64_t token = st->next_id++;
    st->probes.emplace(token, 0);
    ++st->stats.probes;
    lk.unlock();
    std::weak_ptr<State> weak = st;
    uint64_t rid = st->rpc.call(
        n.address, st->options.probe_method, {}, {.timeout = st->options.probe_timeout},
        [weak, token, node = n.address](const RpcStatus& s, std::string_view) {
          auto st = weak.lock();
          if (!st) return;
          Health h = health_of(s);
          if (h != Health::kUnknown) st->router.report(node, h == Health::kGood);
          std::lock_guard lk(st->mu);
          if (h == Health::kBad) ++st->stats.probe_failures;
          st->probes.erase(token);
          st->probing.erase(node);
          st->cv.notify_all();
        });
    lk.lock();
    if (auto it = st->probes.find(token); it != st->probes.end()) it->second = rid;
  }
}

RoutedRpcStats RoutedRpcClient::stats() const {
  std::lock_guard lk(state_->mu);
  RoutedRpcStats s = state_->stats;
  s.in_flight = state_->calls.size();
  return s;
}

}  // namespace ringnet::proto
