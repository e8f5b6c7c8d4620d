// SPDX-License-Identifier: MIT
// The job dispatcher's coordinator client: leader lease with a fencing token, fenced
// per-job state and a worker registry, all kept in redis-server.
//
// Why redis (the alternative was etcd): ringnet already speaks RESP, redis-server is one
// small Debian package that starts in milliseconds in tests, a lease is SET NX PX, and Lua
// scripts make check-and-write atomic. So the fencing check is made by the store itself at
// write time: a deposed leader's late write is refused by redis, not by the leader's own
// clock. Each operation below is one script (or one plain read), hence one atomic step.
//
// Fencing: every new lease gets a token from INCR on a counter key, strictly larger than
// any token before it, and the lease key holds "<owner> <token>". A fenced write names the
// (owner, token) it believes it holds; the script writes only if the lease holds exactly
// that value at that moment. Tokens grow only as long as the counter survives: a redis
// that restarts without persistence (appendonly) starts them again from 1.
//
// Results: kLost means redis answered and said no (someone else holds the lease, or we
// were fenced out). kError means no answer, or an error reply; last_error() has the text.
// After kError the outcome of a write is unknown (the reply may have been lost after redis
// applied it); a lease taken that way simply lapses after its ttl.
//
// Threads: one Coordinator is used by one thread at a time (it owns one connection and no
// lock). Calls block for at most about `timeout` per round trip. It connects on first use
// and, after a connection error, drops the connection; the next call connects again.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;
struct redisReply;

namespace jobs {

enum class [[nodiscard]] CoordResult {
  kOk,
  kLost,   // redis refused: the lease is held by someone else, or it is no longer ours
  kError,  // redis unreachable, timed out or answered an error; see last_error()
};
const char* to_string(CoordResult r);

struct [[nodiscard]] Acquire {
  CoordResult result;
  uint64_t token = 0;  // set when result is kOk
};

struct [[nodiscard]] Holder {
  CoordResult result;
  std::optional<std::string> value = {};  // "<owner> <token>"; empty when nobody holds the lease
};

struct [[nodiscard]] LastFired {
  CoordResult result;
  std::optional<int64_t> unix_ms = {};  // empty when the job never fired
};

struct Worker {
  std::string address;
  uint32_t capacity = 0;
  bool operator==(const Worker&) const = default;
};

struct [[nodiscard]] Workers {
  CoordResult result;
  std::vector<Worker> workers = {};  // live ones, sorted by address
};

struct CoordinatorOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::chrono::milliseconds timeout{500};  // for connecting, and for each round trip
  std::string prefix = "ringnet:jobs:";    // every key starts with it
};

class Coordinator {
 public:
  explicit Coordinator(CoordinatorOptions o);  // connects lazily, on the first call
  ~Coordinator();
  Coordinator(Coordinator&&) noexcept;
  Coordinator& operator=(Coordinator&&) noexcept;

  // --- Leadership: key prefix+"lease", token counter prefix+"fence".
  // kOk with a new token when the lease was free and is now ours for ttl. kLost when it is
  // held, by anyone, this owner included: a holder renews, and a restarted process waits
  // for its old lease to be released or to lapse.
  Acquire try_acquire(std::string_view owner, std::chrono::milliseconds ttl);
  // Extends the lease to ttl from now if it still holds "<owner> <token>", else kLost.
  CoordResult renew(std::string_view owner, uint64_t token, std::chrono::milliseconds ttl);
  // Deletes the lease if it still holds "<owner> <token>" (a clean shutdown hands over at
  // once), else kLost and nothing changes.
  CoordResult release(std::string_view owner, uint64_t token);
  // The lease's current value, for /healthz and tests.
  Holder holder();

  // --- Fenced state: per-job last-fired scheduled time in Unix ms, hash prefix+"last_fired".
  // Raises the job's value to unix_ms if the lease holds "<owner> <token>" at that moment,
  // else kLost and nothing changes. The value never moves backwards: kOk with a unix_ms at
  // or below the stored one leaves it as is (so a retried write is harmless). After kOk the
  // stored value is at least unix_ms. Values must stay within 2^53 (Lua numbers).
  CoordResult set_last_fired(std::string_view owner, uint64_t token, std::string_view job,
                             int64_t unix_ms);
  LastFired last_fired(std::string_view job);

  // --- Worker registry: sorted set prefix+"workers:"+service scored by expiry (Unix ms of
  // redis's own clock, so the processes' clocks do not matter), and hash
  // prefix+"capacity:"+service of address -> capacity.
  // Adds the worker, or refreshes its expiry and capacity, for ttl from now.
  CoordResult register_worker(std::string_view service, std::string_view address,
                              uint32_t capacity, std::chrono::milliseconds ttl);
  // Removes the worker; kOk whether or not it was registered.
  CoordResult deregister_worker(std::string_view service, std::string_view address);
  // Removes the expired workers and returns the live ones.
  Workers list_workers(std::string_view service);

  // Why the last call returned kError.
  const std::string& last_error() const { return error_; }

 private:
  struct ContextFree {
    void operator()(redisContext* c) const;
  };
  struct ReplyFree {
    void operator()(redisReply* r) const;
  };
  using Reply = std::unique_ptr<redisReply, ReplyFree>;
  enum Script : int;

  bool connect();
  Reply command(const std::vector<std::string_view>& args);
  Reply eval(Script s, const std::vector<std::string_view>& keys,
             const std::vector<std::string_view>& args);
  Reply checked(Reply r);
  std::optional<long long> integer(Reply r);
  CoordResult fail(std::string text);

  CoordinatorOptions opts_;
  std::string lease_key_, fence_key_, last_fired_key_;
  std::unique_ptr<redisContext, ContextFree> ctx_;
  std::vector<std::string> shas_;  // SCRIPT LOAD results, by Script; empty until loaded
  std::string error_;
};

}  // namespace jobs
