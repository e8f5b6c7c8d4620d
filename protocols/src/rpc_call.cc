// SPDX-License-Identifier: MIT
// RpcCall's completion, the answer's way back to the connection, and the deadline
// registry with its timer thread: see rpc_server_core.h for who owns what.
#include <cinttypes>

#include "ringnet/log.h"
#include "rpc_server_core.h"

namespace ringnet::proto {

namespace {

thread_local RpcCurrentConn tls_current;
thread_local const RpcServerCore* tls_core = nullptr;

uint64_t since_ns(RpcCall::Clock::time_point t) {
  auto d = RpcCall::Clock::now() - t;
  return d.count() < 0 ? 0 : static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

}  // namespace

RpcCurrentConn rpc_set_current(RpcCurrentConn now) {
  RpcCurrentConn prev = tls_current;
  tls_current = now;
  return prev;
}

const RpcServerCore* rpc_current_core() { return tls_core; }
void rpc_set_current_core(const RpcServerCore* core) { tls_core = core; }

void RpcServerCore::notify_drain() {
  if (!draining.load(std::memory_order_acquire)) return;
  { std::lock_guard lock(mu); }  // a waiter between its check and its sleep sees this
  drained_cv.notify_all();
}

Log2Histogram AtomicLog2::snapshot() const {
  Log2Histogram h;
  for (size_t i = 0; i < buckets.size(); ++i) h.buckets[i] = buckets[i].load(std::memory_order_relaxed);
  h.count = count.load(std::memory_order_relaxed);
  h.sum = sum.load(std::memory_order_relaxed);
  return h;
}

// ---------------------------------------------------------------- RpcCall

RpcCall::~RpcCall() {
  if (core_ == nullptr) return;
  // A handler that dropped its call without answering: the caller hears it now rather
  // than at the deadline.
  if (state_.load(std::memory_order_acquire) == kCallPending) {
    core_->complete(*this, RpcStatus::make(RpcCode::kInternal, "handler dropped the call unanswered"),
                    {}, kCallAnswered);
  }
  // A call that ended left the registry as it ended (complete() untracks it).
}

uint16_t RpcCall::method_id() const { return method_->id; }
const std::string& RpcCall::method_name() const { return method_->name; }

void RpcCall::set_request(std::string body) {
  owned_ = std::move(body);
  request_ = owned_;
}

bool RpcCall::cancelled() const {
  const uint8_t s = state_.load(std::memory_order_acquire);
  return s == kCallExpired || s == kCallCancelled;
}

bool RpcCall::done() const { return state_.load(std::memory_order_acquire) != kCallPending; }

bool RpcCall::reply(std::string body) {
  if (core_ == nullptr) return false;  // not a server's call
  return core_->complete(*this, RpcStatus::ok(), std::move(body), kCallAnswered);
}

bool RpcCall::fail(RpcCode code, std::string_view message) {
  if (core_ == nullptr) return false;
  if (code == RpcCode::kOk) code = RpcCode::kUnknown;  // an error must not read as success
  return core_->complete(*this, RpcStatus::make(code, message), {}, kCallAnswered);
}

bool RpcCall::finish(const RpcStatus& status, std::string body) {
  if (core_ == nullptr) return false;
  return core_->complete(*this, status, std::move(body), kCallAnswered);
}

// ---------------------------------------------------------------- completion

bool RpcServerCore::complete(RpcCall& call, RpcStatus status, std::string body,
                             uint8_t final_state) {
  uint8_t expected = kCallPending;
  if (!call.state_.compare_exchange_strong(expected, final_state, std::memory_order_acq_rel)) {
    if (final_state == kCallAnswered) {
      (expected == kCallAnswered ? double_completions : late_completions)
          .fetch_add(1, std::memory_order_relaxed);
    }
    return false;
  }
  if (call.held_) untrack(call);  // only held calls are ever tracked (held_ never changes)
  // The answer passes back through the filters that saw the request (a throwing filter
  // turns it into INTERNAL, as a throwing handler does).
  const size_t server_filters = filters.size();
  for (size_t i = call.passed_; i-- > 0;) {
    RpcServerFilter& f = i < server_filters ? *filters[i]
                                            : *call.service_->filters_[i - server_filters];
    try {
      f.on_response(call, status, body);
    } catch (...) {
      handler_exceptions.fetch_add(1, std::memory_order_relaxed);
      status = RpcStatus::make(RpcCode::kInternal, "filter threw");
      body.clear();
    }
  }
  send(call, status, body);
  account(call, status);
  return true;
}

void RpcServerCore::send(RpcCall& call, const RpcStatus& status, std::string& body) {
  RpcMethod::Counters* counters = call.method_ != nullptr ? call.method_->counters.get() : nullptr;
  if (call.one_way_) {
    std::shared_lock lock(engine_mu);
    if (call.held_ && !engine_gone) {  // nothing to write, but the hold must go
      call.conn_.dispatch([](Conn* c) {
        if (c != nullptr) c->release();
      });
    }
    return;
  }
  const RpcService& svc = *call.service_;
  RpcFrame frame;
  frame.method = call.method_ != nullptr ? call.method_->id : 0;
  frame.request_id = call.request_id_;
  std::string packed;  // compressed body, or the error body
  if (status.is_ok()) {
    frame.type = RpcType::kResponse;
    if (counters != nullptr) counters->bytes_out.fetch_add(body.size(), std::memory_order_relaxed);
    RpcCompressionOptions how = svc.options_.compression;
    if (how.codec == RpcCompression::kNone) how.codec = call.reply_codec_;
    const RpcCompression used = rpc_compress(body, how, packed);
    if (used != RpcCompression::kNone) {
      frame.flags = rpc_flags_with_compression(0, used);
      frame.body = packed;
    } else {
      frame.body = body;
    }
  } else {
    frame.type = RpcType::kError;
    packed = encode_rpc_error_body(status.code, status.message);
    frame.body = packed;
  }
  if (frame.body.size() > svc.reply_codec_.options().max_body) {
    packed = encode_rpc_error_body(RpcCode::kResourceExhausted, "response over max_body");
    frame.type = RpcType::kError;  // the caller hears why rather than nothing
    frame.flags = 0;
    frame.body = packed;
  }
  if (counters != nullptr) {
    counters->bytes_out_wire.fetch_add(frame.body.size(), std::memory_order_relaxed);
  }
  Conn* here = tls_current.core == this ? tls_current.conn : nullptr;
  if (here != nullptr && here->loop_index() == call.loop_ && here->id() == call.conn_.id()) {
    // On the connection's own loop, inside its callback: straight to its output (refused
    // only when the connection is closing anyway).
    if (!svc.reply_codec_.encode(frame, *here)) here->close();
    if (call.held_) here->release();
    return;
  }
  std::string bytes;
  std::array<char, kRpcHeaderSize + kRpcBudgetSize> head;
  const size_t n = encode_rpc_head(frame, head.data());
  bytes.reserve(n + frame.body.size());
  bytes.append(head.data(), n).append(frame.body);
  std::shared_lock lock(engine_mu);
  if (engine_gone) return;  // the server is gone, and its connections with it
  call.conn_.dispatch([bytes = std::move(bytes), held = call.held_](Conn* c) {
    if (c == nullptr) return;  // closed meanwhile: nobody to answer
    if (!c->write(bytes)) c->close();
    if (held) c->release();
  });
}

void RpcServerCore::account(RpcCall& call, const RpcStatus& status) {
  const uint64_t latency = since_ns(call.start_);
  const auto code = static_cast<size_t>(status.code);
  if (status.is_ok()) {
    ok.fetch_add(1, std::memory_order_relaxed);
  } else {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (status.code == RpcCode::kDeadlineExceeded) deadline_exceeded.fetch_add(1, std::memory_order_relaxed);
    if (status.code == RpcCode::kCancelled) cancelled.fetch_add(1, std::memory_order_relaxed);
  }
  if (call.method_ != nullptr) {
    RpcMethod::Counters& c = *call.method_->counters;
    if (code < c.codes.size()) c.codes[code].fetch_add(1, std::memory_order_relaxed);
    c.latency_ns.add(latency);
    c.in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  const size_t server_filters = filters.size();
  for (size_t i = call.passed_; i-- > 0;) {
    RpcServerFilter& f = i < server_filters ? *filters[i]
                                            : *call.service_->filters_[i - server_filters];
    try {
      f.on_complete(call, status, std::chrono::nanoseconds(latency));
    } catch (...) {
      handler_exceptions.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Last: the drain counts a call as running until its filters have seen its end.
  call.service_->in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  notify_drain();
}

// ---------------------------------------------------------------- deadline registry

void RpcServerCore::track(RpcCall& call) {
  std::unique_lock lock(mu);
  if (call.state_.load(std::memory_order_acquire) != kCallPending) return;
  if (call.service_->drain_cancelled_) {  // its service's drain limit has passed
    lock.unlock();
    complete(call, RpcStatus::make(RpcCode::kCancelled, "server draining: call cancelled"), {},
             kCallCancelled);
    return;
  }
  const bool earliest = registry.empty() || call.deadline_ < registry.begin()->first;
  registry.emplace(call.deadline_, &call);
  call.registered_ = true;
  if (earliest) cv.notify_one();
}

void RpcServerCore::untrack(RpcCall& call) {
  std::lock_guard lock(mu);
  if (!call.registered_) return;
  registry.erase({call.deadline_, &call});
  call.registered_ = false;
  if (draining.load(std::memory_order_relaxed)) drained_cv.notify_all();
}

void RpcServerCore::timer_main() {
  std::unique_lock lock(mu);
  while (!timer_stop) {
    if (registry.empty()) {
      cv.wait(lock);
      continue;
    }
    const auto when = registry.begin()->first;
    if (RpcCall::Clock::now() < when) {
      cv.wait_until(lock, when);
      continue;
    }
    // Keep the call alive outside the lock; one being destroyed now (lock() fails) is
    // answered by its destructor, which waits for this lock to leave the registry.
    RpcCall* raw = registry.begin()->second;
    std::shared_ptr<RpcCall> call = raw->weak_from_this().lock();
    registry.erase(registry.begin());
    raw->registered_ = false;
    if (!call) continue;
    lock.unlock();
    complete(*call, RpcStatus::make(RpcCode::kDeadlineExceeded, "deadline exceeded"), {},
             kCallExpired);  // account() wakes a drain waiting for it
    call.reset();
    lock.lock();
  }
}

size_t RpcServerCore::cancel_pending(const RpcService* service) {
  std::vector<std::shared_ptr<RpcCall>> victims;
  {
    std::lock_guard lock(mu);
    for (auto it = registry.begin(); it != registry.end();) {
      RpcCall* raw = it->second;
      if (service != nullptr && raw->service_ != service) {
        ++it;
        continue;
      }
      if (auto call = raw->weak_from_this().lock()) victims.push_back(std::move(call));
      raw->registered_ = false;
      it = registry.erase(it);
    }
  }
  size_t n = 0;
  for (auto& call : victims) {
    n += complete(*call, RpcStatus::make(RpcCode::kCancelled, "server draining: call cancelled"),
                  {}, kCallCancelled) ? 1 : 0;
  }
  return n;
}

size_t RpcServerCore::pending(const RpcService* service) {
  std::lock_guard lock(mu);
  size_t n = 0;
  for (const auto& [when, call] : registry) n += (service == nullptr || call->service_ == service);
  return n;
}

}  // namespace ringnet::proto
