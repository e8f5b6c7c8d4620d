#include "ringnet/proto/rpc_client.h"

#include <cerrno>
#include <vector>

#include "ringnet/log.h"

namespace ringnet::proto {

RpcClient::RpcClient(PeerPool& pool, RpcClientOptions options)
    : pool_(pool), options_(options), codec_(options.codec) {
  if (options_.max_attempts < 1) options_.max_attempts = 1;
  timer_ = std::thread([this] { timer_main(); });
}

RpcClient::~RpcClient() {
  std::vector<Done> cancelled;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [id, call] : calls_) cancelled.push_back(std::move(call.done));
    stats_.cancelled += calls_.size();
    calls_.clear();
    deadlines_.clear();
    retries_.clear();
  }
  wake_.notify_all();
  timer_.join();
  for (Done& d : cancelled) d(Status::from_errno(ECANCELED, "rpc client destroyed"), {});
}

void RpcClient::set_method_timeout(uint16_t method, std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  method_timeouts_[method] = timeout;
}

uint64_t RpcClient::call(std::string_view address, uint16_t method, std::string body,
                         RpcCallOptions options, Done done) {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    // The effective timeout: the smallest of the ones that are set.
    std::chrono::milliseconds t = options_.default_timeout;
    auto pick = [&t](std::chrono::milliseconds v) {
      if (v.count() > 0 && (t.count() <= 0 || v < t)) t = v;
    };
    if (auto it = method_timeouts_.find(method); it != method_timeouts_.end()) pick(it->second);
    pick(options.timeout);
    Call& c = calls_[id];
    c.address = std::string(address);
    c.method = method;
    c.body = std::move(body);
    c.idempotent = options.idempotent;
    c.done = std::move(done);
    c.deadline = Clock::now() + (t.count() > 0 ? t : std::chrono::hours(24 * 365));
    c.deadline_it = deadlines_.emplace(c.deadline, id);
    ++stats_.calls;
    ++stats_.in_flight;
  }
  wake_.notify_one();  // the timer may have to wake earlier
  send(id);
  return id;
}

void RpcClient::send(uint64_t id) {
  std::string address;
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;  // ended meanwhile (timed out, cancelled)
    ++it->second.attempts;
    address = it->second.address;
  }
  pool_.get(address, [this, id](const ConnHandle& h, const Status& s) {
    if (!s) return fail_or_retry(id, s, true);
    std::string frame;
    {
      std::lock_guard lock(mu_);
      auto it = calls_.find(id);
      if (it == calls_.end()) return;
      const Call& c = it->second;
      RpcHeaderBytes head = encode_rpc_header(RpcType::kRequest,
                                              c.idempotent ? kRpcFlagIdempotent : 0, c.method,
                                              id, static_cast<uint32_t>(c.body.size()));
      frame.reserve(head.size() + c.body.size());
      frame.append(head.data(), head.size());
      frame += c.body;
    }
    // On the connection's loop, to note which connection carries the call before writing.
    h.dispatch([this, id, frame = std::move(frame)](Conn* conn) {
      if (conn == nullptr) {
        return fail_or_retry(id, Status::from_errno(ECONNRESET, "rpc: connection closed"), true);
      }
      {
        std::lock_guard lock(mu_);
        auto it = calls_.find(id);
        if (it == calls_.end()) return;
        it->second.conn_key = conn_key(*conn);
      }
      if (Status w = conn->write(frame); !w) fail_or_retry(id, w, true);
    });
  });
}

void RpcClient::fail_or_retry(uint64_t id, const Status& why, bool connection_failure) {
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    Call& c = it->second;
    if (connection_failure && c.idempotent && c.attempts < options_.max_attempts) {
      std::chrono::milliseconds backoff =
          c.next_backoff.count() == 0 ? options_.backoff : c.next_backoff * 2;
      Clock::time_point at = Clock::now() + backoff;
      if (at < c.deadline) {  // a retry that could not finish in time is not worth it
        c.next_backoff = backoff;
        c.conn_key = 0;
        retries_.emplace(at, id);
        ++stats_.retries;
        wake_.notify_one();
        return;
      }
    }
  }
  finish(id, why, {}, connection_failure ? &RpcClientStats::connection_failures
                                         : &RpcClientStats::errors);
}

void RpcClient::finish(uint64_t id, const Status& s, std::string_view body,
                       uint64_t RpcClientStats::*counter) {
  Done done;
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;  // ended already: each call ends once
    done = std::move(it->second.done);
    if (it->second.deadline_it != deadlines_.end()) deadlines_.erase(it->second.deadline_it);
    calls_.erase(it);
    --stats_.in_flight;
    ++(stats_.*counter);
  }
  if (done) done(s, body);
}

bool RpcClient::cancel(uint64_t id) {
  {
    std::lock_guard lock(mu_);
    if (calls_.find(id) == calls_.end()) return false;
  }
  finish(id, Status::from_errno(ECANCELED, "rpc: call cancelled"), {}, &RpcClientStats::cancelled);
  return true;
}

Action RpcClient::on_traffic(Conn& conn) {
  std::string_view in = conn.peek();
  size_t used = 0;
  while (used < in.size()) {
    RpcFrame f;
    Decoded d = codec_.decode(in.substr(used), f);
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
      std::lock_guard lock(mu_);
      known = calls_.count(f.request_id) != 0;
      if (!known) ++stats_.late_responses;
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

void RpcClient::on_close(Conn& conn, CloseInfo info) {
  (void)info;
  const uint64_t key = conn_key(conn);
  std::vector<uint64_t> lost;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, call] : calls_) {
      if (call.conn_key == key) lost.push_back(id);
    }
  }
  for (uint64_t id : lost) {
    fail_or_retry(id, Status::from_errno(ECONNRESET, "rpc: connection closed before the response"),
                  true);
  }
}

RpcClientStats RpcClient::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void RpcClient::timer_main() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const Clock::time_point now = Clock::now();
    std::vector<uint64_t> expired, resend;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      expired.push_back(deadlines_.begin()->second);
      deadlines_.erase(deadlines_.begin());
      if (auto it = calls_.find(expired.back()); it != calls_.end()) {
        it->second.deadline_it = deadlines_.end();  // already gone from the map
      }
    }
    while (!retries_.empty() && retries_.begin()->first <= now) {
      resend.push_back(retries_.begin()->second);
      retries_.erase(retries_.begin());
    }
    if (!expired.empty() || !resend.empty()) {
      lock.unlock();
      for (uint64_t id : expired) {
        finish(id, Status::from_errno(ETIMEDOUT, "rpc: no response in time"), {},
               &RpcClientStats::timeouts);
      }
      for (uint64_t id : resend) send(id);
      lock.lock();
      continue;
    }
    Clock::time_point next = Clock::time_point::max();
    if (!deadlines_.empty()) next = deadlines_.begin()->first;
    if (!retries_.empty()) next = std::min(next, retries_.begin()->first);
    if (next == Clock::time_point::max()) {
      wake_.wait(lock);
    } else {
      wake_.wait_until(lock, next);
    }
  }
}

}  // namespace ringnet::proto
