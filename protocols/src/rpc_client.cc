// SPDX-License-Identifier: MIT
#include "ringnet/proto/rpc_client.h"

#include <array>
#include <cerrno>
#include <cstdint>
#include <condition_variable>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "callbacks_in_flight.h"
#include "ringnet/log.h"

namespace ringnet::proto {

using Clock = std::chrono::steady_clock;

namespace {

// A status the client found itself, with its errno.
RpcStatus local_status(RpcCode code, int error, std::string message) {
  return RpcStatus{code, std::move(message), error};
}

// The budget sent for `left` (> 0) until the deadline: milliseconds rounded up, at least 1.
uint32_t budget_ms(Clock::duration left) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  if (ms < 1) return 1;
  return ms > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(ms);
}

}  // namespace

RpcClientFilter::~RpcClientFilter() = default;

RpcStatus RpcClientFilter::on_call(RpcClientCall& call) {
  (void)call;
  return RpcStatus::ok();
}

void RpcClientFilter::on_result(const RpcClientCall& call, const RpcStatus& status,
                                std::chrono::nanoseconds latency) {
  (void)call;
  (void)status;
  (void)latency;
}

// Everything the client knows, shared by the RpcClient object, its timer thread and its
// hooks, and reachable weakly from the callbacks it hands to the pool and the loops. The
// destructor closes it (under mu): the calls are taken out, so whatever arrives later
// (a get callback, a write task, a response, a close) finds nothing to act on.
struct RpcClient::State : std::enable_shared_from_this<RpcClient::State> {
  struct Call {
    std::string address;
    uint16_t method = 0;
    std::string body;  // as the filters left it
    std::string compressed;  // the body as sent when compression is not kNone
    RpcCompression compression = RpcCompression::kNone;
    RpcCallOptions options;
    Done done;
    Clock::time_point started;
    size_t filters_passed = 0;  // these get on_result
    bool has_deadline = false;  // an effective timeout: a budget in every frame
    Clock::time_point deadline;
    int attempts = 0;
    std::chrono::milliseconds next_backoff{0};
    uint64_t conn_key = 0;  // connection it was sent on (0: none yet)
    std::multimap<Clock::time_point, uint64_t>::iterator deadline_it;

    RpcClientCall view() { return RpcClientCall{address, method, body, options}; }
    std::string_view wire_body() const {
      return compression == RpcCompression::kNone ? std::string_view(body) : compressed;
    }
  };
  using Counter = uint64_t RpcClientStats::*;

  State(PeerPool& p, RpcClientOptions o) : pool(p), options(o), codec(o.codec) {
    if (options.max_attempts < 1) options.max_attempts = 1;
  }

  static uint64_t conn_key(const Conn& c) {
    return (static_cast<uint64_t>(c.loop_index() + 1) << 48) ^ c.id().pack();
  }

  RpcStatus run_filters(Call& c);
  bool admit(uint64_t id, Call c);
  // Under mu (held by `lock`): sets the call's deadline; an error when it cannot be sent.
  RpcStatus prepare(Call& c);
  void send(uint64_t id);  // (again) through the pool
  void on_ready(uint64_t id, const ConnHandle& h, const Status& s);
  void write_on(uint64_t id, Conn* conn, const std::string& frame);
  void fail_or_retry(uint64_t id, const RpcStatus& why, bool retryable, Counter counter);
  void finish(uint64_t id, const RpcStatus& s, std::string_view body, Counter counter);
  // Runs the filters' on_result and `done` outside the lock, counted so that the
  // destructor can wait for them.
  void run_done(std::unique_lock<std::mutex>& lock, Call call, const RpcStatus& s,
                std::string_view body);
  void end(Call& call, const RpcStatus& s, std::string_view body);
  void on_response(const RpcFrame& f);
  void timer_main();
  Action on_traffic(Conn& c);
  void on_close(Conn& c);

  PeerPool& pool;  // outlives the client; not used once it is closed
  RpcClientOptions options;
  const RpcFrameCodec codec;  // decode() is const: shared by the loops
  // Written by add_filter under mu until the first call() sets filters_frozen (under mu);
  // read-only afterwards, so read without the lock.
  std::vector<std::shared_ptr<RpcClientFilter>> filters;
  std::mutex mu;
  std::condition_variable wake;  // the timer thread's
  bool closed = false;           // the client's destructor has begun
  bool filters_frozen = false;   // call() has been called
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
  std::vector<State::Call> cancelled;
  {
    std::lock_guard lock(state_->mu);
    state_->closed = true;
    for (auto& [id, call] : state_->calls) cancelled.push_back(std::move(call));
    state_->stats.cancelled += state_->calls.size();
    state_->stats.in_flight -= state_->calls.size();
    state_->calls.clear();
    state_->deadlines.clear();
    state_->retries.clear();
  }
  state_->wake.notify_all();
  const RpcStatus why = local_status(RpcCode::kCancelled, ECANCELED, "rpc client destroyed");
  for (State::Call& c : cancelled) state_->end(c, why, {});
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

Status RpcClient::add_filter(std::shared_ptr<RpcClientFilter> filter) {
  if (!filter) return Status::invalid("rpc client: add_filter(nullptr)");
  std::lock_guard lock(state_->mu);
  if (state_->filters_frozen) return Status::invalid("rpc client: add_filter after call()");
  state_->filters.push_back(std::move(filter));
  return Status::ok();
}

// The filters run first, on this thread and without the lock; then, under the lock, the
// call gets its deadline and goes into the map, unless it ends here (refused by a filter,
// too large, or the client is being destroyed).
uint64_t RpcClient::call(std::string_view address, uint16_t method, std::string body,
                         RpcCallOptions options, Done done) {
  std::shared_ptr<State> st = state_;  // a `done` run from here may destroy the client
  State::Call c;
  c.started = Clock::now();
  c.address = std::string(address);
  c.method = method;
  c.body = std::move(body);
  c.options = options;
  c.done = std::move(done);
  uint64_t id;
  {
    std::unique_lock lock(st->mu);
    id = st->next_id++;
    ++st->stats.calls;
    st->filters_frozen = true;  // st->filters is read-only from now on
    if (st->closed) {  // called from a `done` while the client is being destroyed
      ++st->stats.cancelled;
      st->run_done(lock, std::move(c),
                   local_status(RpcCode::kCancelled, ECANCELED, "rpc client destroyed"), {});
      return id;
    }
  }
  if (RpcStatus refused = st->run_filters(c); !refused) {
    std::unique_lock lock(st->mu);
    ++st->stats.filtered;
    st->run_done(lock, std::move(c), refused, {});
    return id;
  }
  if (st->options.compression.codec != RpcCompression::kNone) {  // once, for every attempt
    c.compression = rpc_compress(c.body, st->options.compression, c.compressed);
  }
  if (st->admit(id, std::move(c))) st->send(id);
  return id;
}

// Called without the lock: the call goes into the map, or ends here (too large, or the
// client is being destroyed). True when it is to be sent.
bool RpcClient::State::admit(uint64_t id, Call c) {
  {
    std::unique_lock lock(mu);
    RpcStatus bad = closed ? local_status(RpcCode::kCancelled, ECANCELED, "rpc client destroyed")
                           : prepare(c);
    if (!bad) {
      ++(bad.code == RpcCode::kCancelled ? stats.cancelled : stats.errors);
      run_done(lock, std::move(c), bad, {});
      return false;
    }
    auto [it, inserted] = calls.emplace(id, std::move(c));
    (void)inserted;
    it->second.deadline_it = deadlines.emplace(it->second.deadline, id);
    ++stats.in_flight;
  }
  wake.notify_one();  // the timer may have to wake earlier
  return true;
}

bool RpcClient::cancel(uint64_t id) {
  std::shared_ptr<State> st = state_;  // the `done` may destroy the client
  {
    std::lock_guard lock(st->mu);
    if (st->calls.find(id) == st->calls.end()) return false;
  }
  st->finish(id, local_status(RpcCode::kCancelled, ECANCELED, "rpc: call cancelled"), {},
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

// Caller's thread, no lock. Stops at the first filter that refuses; the ones before it
// (filters_passed) get on_result.
RpcStatus RpcClient::State::run_filters(Call& c) {
  for (; c.filters_passed < filters.size(); ++c.filters_passed) {
    RpcClientCall view = c.view();
    RpcStatus s = filters[c.filters_passed]->on_call(view);
    if (!s) return s;
  }
  return RpcStatus::ok();
}

RpcStatus RpcClient::State::prepare(Call& c) {
  // The effective timeout: the smallest of the ones that are set.
  std::chrono::milliseconds t = options.default_timeout;
  auto pick = [&t](std::chrono::milliseconds v) {
    if (v.count() > 0 && (t.count() <= 0 || v < t)) t = v;
  };
  if (auto it = method_timeouts.find(c.method); it != method_timeouts.end()) pick(it->second);
  pick(c.options.timeout);
  c.has_deadline = t.count() > 0;
  c.deadline = c.started + (c.has_deadline ? t : std::chrono::hours(24 * 365));
  const uint64_t length = uint64_t{c.wire_body().size()} + (c.has_deadline ? kRpcBudgetSize : 0);
  if (length > options.codec.max_body) {
    return local_status(RpcCode::kInvalidArgument, EMSGSIZE,
                        "rpc: request body_length " + std::to_string(length) +
                            " over max_body " + std::to_string(options.codec.max_body));
  }
  return RpcStatus::ok();
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

// The frame is built here, as late as the client can: its budget is the time left now.
void RpcClient::State::on_ready(uint64_t id, const ConnHandle& h, const Status& s) {
  // A socket error (errno) may pass; a bad address, a name that does not resolve or an
  // engine that stops (no errno, code -1) will not: those are not retried.
  if (!s) {
    return fail_or_retry(id, local_status(RpcCode::kUnavailable, s.code(), s.message()),
                         s.code() > 0,
                         s.code() > 0 ? &RpcClientStats::connection_failures
                                      : &RpcClientStats::errors);
  }
  std::string frame;
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    const Call& c = it->second;
    RpcFrame f;
    f.type = RpcType::kRequest;
    f.flags = rpc_flags_with_compression(c.options.idempotent ? kRpcFlagIdempotent : 0,
                                         c.compression);
    f.method = c.method;
    f.request_id = id;
    f.body = c.wire_body();
    if (c.has_deadline) {
      const Clock::duration left = c.deadline - Clock::now();
      if (left <= Clock::duration::zero()) return;  // the timer thread ends it
      f.set_budget(budget_ms(left));
    }
    std::array<char, kRpcHeaderSize + kRpcBudgetSize> head;
    const size_t head_size = encode_rpc_head(f, head.data());
    frame.reserve(head_size + f.body.size());
    frame.append(head.data(), head_size);
    frame += f.body;
  }
  // On the connection's loop, to note which connection carries the call before writing.
  h.dispatch([weak = weak_from_this(), id, frame = std::move(frame)](Conn* conn) {
    if (std::shared_ptr<State> st = weak.lock()) st->write_on(id, conn, frame);
  });
}

void RpcClient::State::write_on(uint64_t id, Conn* conn, const std::string& frame) {
  if (conn == nullptr) {
    return fail_or_retry(id,
                         local_status(RpcCode::kUnavailable, ECONNRESET, "rpc: connection closed"),
                         true, &RpcClientStats::connection_failures);
  }
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    it->second.conn_key = conn_key(*conn);
  }
  // Conn::write refuses only a connection that is closing: the call lost its connection.
  if (Status w = conn->write(frame); !w) {
    fail_or_retry(id,
                  local_status(RpcCode::kUnavailable, ECONNRESET, "rpc: write: " + w.message()),
                  true, &RpcClientStats::connection_failures);
  }
}

void RpcClient::State::fail_or_retry(uint64_t id, const RpcStatus& why, bool retryable,
                                     Counter counter) {
  {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    if (it == calls.end()) return;
    Call& c = it->second;
    if (retryable && c.options.idempotent && c.attempts < options.max_attempts) {
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
  finish(id, why, {}, counter);
}

void RpcClient::State::finish(uint64_t id, const RpcStatus& s, std::string_view body,
                              Counter counter) {
  std::unique_lock lock(mu);
  auto it = calls.find(id);
  if (it == calls.end()) return;  // ended already: each call ends once
  Call call = std::move(it->second);
  if (call.deadline_it != deadlines.end()) deadlines.erase(call.deadline_it);
  calls.erase(it);
  --stats.in_flight;
  ++(stats.*counter);
  run_done(lock, std::move(call), s, body);
}

void RpcClient::State::run_done(std::unique_lock<std::mutex>& lock, Call call,
                                const RpcStatus& s, std::string_view body) {
  CallbacksInFlight::Scope running(dones_running, lock);
  end(call, s, body);
  call = Call();  // the captures of `done` go while still counted
}

// No lock. The filters that passed see the result in the reverse order, then `done`.
void RpcClient::State::end(Call& call, const RpcStatus& s, std::string_view body) {
  if (call.filters_passed > 0) {
    const auto latency = std::chrono::duration_cast<std::chrono::nanoseconds>(
        Clock::now() - call.started);
    const RpcClientCall view = call.view();
    for (size_t i = call.filters_passed; i-- > 0;) filters[i]->on_result(view, s, latency);
  }
  if (call.done) call.done(s, s ? body : std::string_view());
}

// Loop thread, no lock: one response or error frame from the server. A compressed body
// (either type) is decompressed first; one that does not decompress ends the call.
void RpcClient::State::on_response(const RpcFrame& f) {
  {
    std::lock_guard lock(mu);
    if (calls.count(f.request_id) == 0) {
      ++stats.late_responses;
      return;
    }
  }
  std::string_view body = f.body;
  std::string inflated;
  if (f.compression_bits() != 0) {
    RpcStatus s = rpc_decompress(f.compression_bits(), f.body, options.codec.max_body, inflated);
    if (!s) return finish(f.request_id, s, {}, &RpcClientStats::errors);
    body = inflated;
  }
  if (f.type == RpcType::kResponse) {
    return finish(f.request_id, RpcStatus::ok(), body, &RpcClientStats::ok);
  }
  RpcStatus s = decode_rpc_error_body(body);
  // A draining server answers kUnavailable: another attempt may find a server that serves.
  const bool retryable = s.code == RpcCode::kUnavailable;
  fail_or_retry(f.request_id, s, retryable, &RpcClientStats::errors);
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
    on_response(f);
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
    fail_or_retry(id,
                  local_status(RpcCode::kUnavailable, ECONNRESET,
                               "rpc: connection closed before the response"),
                  true, &RpcClientStats::connection_failures);
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
        finish(id, local_status(RpcCode::kDeadlineExceeded, ETIMEDOUT, "rpc: no response in time"),
               {}, &RpcClientStats::timeouts);
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
