// SPDX-License-Identifier: MIT
#include "ringnet/proto/rpc_client.h"

#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "callbacks_in_flight.h"
#include "ringnet/log.h"

namespace ringnet::proto {

using Clock = std::chrono::steady_clock;

// Everything the client knows, shared by the RpcClient object, its timer thread and its
// hooks, and reachable weakly from the callbacks it hands to the pool and the loops. The
// destructor closes it (under mu): the calls are taken out, so whatever arrives later
// (a get callback, a write task, a response, a close) finds nothing to act on.
struct RpcClient::State : std::enable_shared_from_this<RpcClient::State> {
  struct Call {
    std::string address;
    uint16_t method = 0;
    std::string body;
    bool idempotent = false;
    Done done;
    Clock::time_point deadline;
    int attempts = 0;
    std::chrono::milliseconds next_backoff{0};
    uint64_t conn_key = 0;  // connection it was sent on (0: none yet)
    std::multimap<Clock::time_point, uint64_t>::iterator deadline_it;
  };

  State(PeerPool& p, RpcClientOptions o) : pool(p), options(o), codec(o.codec) {
    if (options.max_attempts < 1) options.max_attempts = 1;
  }

  static uint64_t conn_key(const Conn& c) {
    return (static_cast<uint64_t>(c.loop_index() + 1) << 48) ^ c.id().pack();
  }

  void send(uint64_t id);  // (again) through the pool
  void on_ready(uint64_t id, const ConnHandle& h, const Status& s);
  void write_on(uint64_t id, Conn* conn, const std::string& frame);
  void fail_or_retry(uint64_t id, const Status& why, bool connection_failure);
  void finish(uint64_t id, const Status& s, std::string_view body,
              uint64_t RpcClientStats::*counter);
  // Runs `done` outside the lock, counted so that the destructor can wait for it.
  void run_done(std::unique_lock<std::mutex>& lock, Done done, const Status& s,
                std::string_view body);
  void timer_main();
  Action on_traffic(Conn& c);
  void on_close(Conn& c);

  PeerPool& pool;  // outlives the client; not used once it is closed
  RpcClientOptions options;
  const RpcFrameCodec codec;  // decode() is const: shared by the loops
  std::mutex mu;
  std::condition_variable wake;  // the timer thread's
  bool closed = false;           // the client's destructor has begun
  CallbacksInFlight dones_running;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, Call> calls;
  std::unordered_map<uint16_t, std::chrono::milliseconds> method_timeouts;
  std::multimap<Clock::time_point, uint64_t> deadlines;  // timeouts (may hold stale ids)
  std::multimap<Clock::time_point, uint64_t> retries;    // sends due after a backoff
  RpcClientStats stats;
};

RpcClient::RpcClient(PeerPool& pool, RpcClientOptions options)
    : state_(std::make_shared<State>(pool, options)) {
  timer_ = std::thread([st = state_] { st->timer_main(); });
}

// Closes the state, ends what was in flight here, then waits for the `done`s other
// threads are running (not for loops). Destroyed from a `done` on the timer thread, the
// thread cannot join itself: it is detached, finds the state closed when that `done`
// returns, and exits, dropping its reference.
RpcClient::~RpcClient() {
  std::vector<Done> cancelled;
  {
    std::lock_guard lock(state_->mu);
    state_->closed = true;
    for (auto& [id, call] : state_->calls) cancelled.push_back(std::move(call.done));
    state_->stats.cancelled += state_->calls.size();
    state_->stats.in_flight -= state_->calls.size();
    state_->calls.clear();
    state_->deadlines.clear();
    state_->retries.clear();
  }
  state_->wake.notify_all();
  for (Done& d : cancelled) {
    if (d) d(Status::from_errno(ECANCELED, "rpc client destroyed"), {});
  }
  cancelled.clear();
  {
    std::unique_lock lock(state_->mu);
    state_->dones_running.wait_others(lock);
  }
  if (timer_.get_id() == std::this_thread::get_id()) {
    timer_.detach();
  } else {
    timer_.join();
  }
}

void RpcClient::set_method_timeout(uint16_t method, std::chrono::milliseconds timeout) {
  std::lock_guard lock(state_->mu);
  state_->method_timeouts[method] = timeout;
}

uint64_t RpcClient::call(std::string_view address, uint16_t method, std::string body,
                         RpcCallOptions options, Done done) {
  std::shared_ptr<State> st = state_;  // a `done` run from here may destroy the client
  uint64_t id;
  {
    std::unique_lock lock(st->mu);
    id = st->next_id++;
    ++st->stats.calls;
    if (st->closed) {  // called from a `done` while the client is being destroyed
      ++st->stats.cancelled;
      st->run_done(lock, std::move(done), Status::from_errno(ECANCELED, "rpc client destroyed"),
                   {});
      return id;
    }
    // The effective timeout: the smallest of the ones that are set.
    std::chrono::milliseconds t = st->options.default_timeout;
    auto pick = [&t](std::chrono::milliseconds v) {
      if (v.count() > 0 && (t.count() <= 0 || v < t)) t = v;
    };
    if (auto it = st->method_timeouts.find(method); it != st->method_timeouts.end()) {
      pick(it->second);
    }
    pick(options.timeout);
    State::Call& c = st->calls[id];
    c.address = std::string(address);
    c.method = method;
    c.body = std::move(body);
    c.idempotent = options.idempotent;
    c.done = std::move(done);
    c.deadline = Clock::now() + (t.count() > 0 ? t : std::chrono::hours(24 * 365));
    c.deadline_it = st->deadlines.emplace(c.deadline, id);
    ++st->stats.in_flight;
  }
  st->wake.notify_one();  // the timer may have to wake earlier
  st->send(id);
  return id;
}

bool RpcClient::cancel(uint64_t id) {
  std::shared_ptr<State> st = state_;  // the `done` may destroy the client
  {
    std::lock_guard lock(st->mu);
    if (st->calls.find(id) == st->calls.end()) return false;
  }
  st->finish(id, Status::from_errno(ECANCELED, "rpc: call cancelled"), {},
             &RpcClientStats::cancelled);
  return true;
}

RpcClientStats RpcClient::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

Action RpcClient::Hooks::on_traffic(Conn& c) {
  return state_ ? state_->on_traffic(c) : Action::kNone;
}

void RpcClient::Hooks::on_close(Conn& c, CloseInfo info) {
  (void)info;
  if (state_) state_->on_close(c);
}

// Caller's thread or the timer thread. The pool answers on this thread (a live
// connection, an immediate error) or on a loop after a dial, possibly after the client is
// gone: hence the weak reference.
void RpcClient::State::send(uint64_t id) {
  std::string address;
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;  // ended meanwhile (timed out, cancelled, closed)
    ++it->second.attempts;
    address = it->second.address;
  }
  pool.get(address, [weak = weak_from_this(), id](const ConnHandle& h, const Status& s) {
    if (std::shared_ptr<State> st = weak.lock()) st->on_ready(id, h, s);
  });
}

void RpcClient::State::on_ready(uint64_t id, const ConnHandle& h, const Status& s) {
  // A socket error (errno) may pass; a bad address, a name that does not resolve or an
  // engine that stops (no errno) will not: those are not retried.
  if (!s) return fail_or_retry(id, s, s.code() > 0);
  std::string frame;
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    const Call& c = it->second;
    RpcHeaderBytes head = encode_rpc_header(RpcType::kRequest,
                                            c.idempotent ? kRpcFlagIdempotent : 0, c.method,
                                            id, static_cast<uint32_t>(c.body.size()));
    frame.reserve(head.size() + c.body.size());
    frame.append(head.data(), head.size());
    frame += c.body;
  }
  // On the connection's loop, to note which connection carries the call before writing.
  h.dispatch([weak = weak_from_this(), id, frame = std::move(frame)](Conn* conn) {
    if (std::shared_ptr<State> st = weak.lock()) st->write_on(id, conn, frame);
  });
}

void RpcClient::State::write_on(uint64_t id, Conn* conn, const std::string& frame) {
  if (conn == nullptr) {
    return fail_or_retry(id, Status::from_errno(ECONNRESET, "rpc: connection closed"), true);
  }
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    it->second.conn_key = conn_key(*conn);
  }
  if (Status w = conn->write(frame); !w) fail_or_retry(id, w, true);
}

void RpcClient::State::fail_or_retry(uint64_t id, const Status& why, bool connection_failure) {
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    Call& c = it->second;
    if (connection_failure && c.idempotent && c.attempts < options.max_attempts) {
      std::chrono::milliseconds backoff =
          c.next_backoff.count() == 0 ? options.backoff : c.next_backoff * 2;
      Clock::time_point at = Clock::now() + backoff;
      if (at < c.deadline) {  // a retry that could not finish in time is not worth it
        c.next_backoff = backoff;
        c.conn_key = 0;
        retries.emplace(at, id);
        ++stats.retries;
        wake.notify_one();
        return;
      }
    }
  }
  finish(id, why, {}, connection_failure ? &RpcClientStats::connection_failures
                                         : &RpcClientStats::errors);
}

void RpcClient::State::finish(uint64_t id, const Status& s, std::string_view body,
                              uint64_t RpcClientStats::*counter) {
  std::unique_lock lock(mu);
  auto it = calls.find(id);
  if (it == calls.end()) return;  // ended already: each call ends once
  Done done = std::move(it->second.done);
  if (it->second.deadline_it != deadlines.end()) deadlines.erase(it->second.deadline_it);
  calls.erase(it);
  --stats.in_flight;
  ++(stats.*counter);
  run_done(lock, std::move(done), s, body);
}

void RpcClient::State::run_done(std::unique_lock<std::mutex>& lock, Done done, const Status& s,
                                std::string_view body) {
  CallbacksInFlight::Scope running(dones_running, lock);
  if (done) done(s, body);
  done = nullptr;  // its captures go while still counted
}

Action RpcClient::State::on_traffic(Conn& conn) {
  std::string_view in = conn.peek();
  size_t used = 0;
  while (used < in.size()) {
    RpcFrame f;
    Decoded d = codec.decode(in.substr(used), f);
    if (d.kind == Decoded::kNeedMore) break;
    if (d.kind == Decoded::kError || f.type == RpcType::kRequest || f.type == RpcType::kOneWay) {
      RINGNET_LOG_LIMITED(LogLevel::kWarn, 10, "rpc client: bad frame from {}: {}",
                          conn.remote_addr().to_string(),
                          d.kind == Decoded::kError ? d.error.reason : "a request sent to a client");
      conn.discard();
      return Action::kClose;  // its calls fail (or retry) in on_close
    }
    bool known;
    {
      std::lock_guard lock(mu);
      known = calls.count(f.request_id) != 0;
      if (!known) ++stats.late_responses;
    }
    if (known) {
      if (f.type == RpcType::kResponse) {
        finish(f.request_id, Status::ok(), f.body, &RpcClientStats::ok);
      } else {
        finish(f.request_id,
               Status::from_errno(EPROTO, "rpc error: " + std::string(f.body)), f.body,
               &RpcClientStats::errors);
      }
    }
    used += d.consumed;
  }
  conn.discard(used);
  return Action::kNone;
}

void RpcClient::State::on_close(Conn& conn) {
  const uint64_t key = conn_key(conn);
  std::vector<uint64_t> lost;
  {
    std::lock_guard lock(mu);
    for (const auto& [id, call] : calls) {
      if (call.conn_key == key) lost.push_back(id);
    }
  }
  for (uint64_t id : lost) {
    fail_or_retry(id, Status::from_errno(ECONNRESET, "rpc: connection closed before the response"),
                  true);
  }
}

void RpcClient::State::timer_main() {
  std::unique_lock lock(mu);
  while (!closed) {
    const Clock::time_point now = Clock::now();
    std::vector<uint64_t> expired, resend;
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      expired.push_back(deadlines.begin()->second);
      deadlines.erase(deadlines.begin());
      if (auto it = calls.find(expired.back()); it != calls.end()) {
        it->second.deadline_it = deadlines.end();  // already gone from the map
      }
    }
    while (!retries.empty() && retries.begin()->first <= now) {
      resend.push_back(retries.begin()->second);
      retries.erase(retries.begin());
    }
    if (!expired.empty() || !resend.empty()) {
      lock.unlock();
      for (uint64_t id : expired) {
        finish(id, Status::from_errno(ETIMEDOUT, "rpc: no response in time"), {},
               &RpcClientStats::timeouts);
      }
      for (uint64_t id : resend) send(id);  // nothing once closed: the calls are gone
      lock.lock();
      continue;
    }
    Clock::time_point next = Clock::time_point::max();
    if (!deadlines.empty()) next = deadlines.begin()->first;
    if (!retries.empty()) next = std::min(next, retries.begin()->first);
    if (next == Clock::time_point::max()) {
      wake.wait(lock);
    } else {
      wake.wait_until(lock, next);
    }
  }
}

}  // namespace ringnet::proto
