// SPDX-License-Identifier: MIT
// Coordinator: each operation is one Lua script run by redis (EVALSHA, loaded on first use)
// or one plain read, over hiredis's blocking API.
#include "coordinator.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <utility>

namespace jobs {

// Script numbers index kScripts and Coordinator::shas_.
enum Coordinator::Script : int {
  kAcquire,
  kRenew,
  kRelease,
  kSetLastFired,
  kRegister,
  kDeregister,
  kList,
  kScriptCount
};

namespace {

// Returning 0 (not false) for "no": a Lua false comes back as a nil reply.
constexpr const char* kScripts[] = {
    // kAcquire. KEYS: lease, fence. ARGV: owner, ttl ms. The token is taken only when the
    // lease is free, so tokens are not burnt by refused attempts.
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "local token = redis.call('INCR', KEYS[2])\n"
    "redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'NX', 'PX', ARGV[2])\n"
    "return token\n",
    // kRenew. KEYS: lease. ARGV: "<owner> <token>", ttl ms.
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n",
    // kRelease. KEYS: lease. ARGV: "<owner> <token>".
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n",
    // kSetLastFired. KEYS: lease, last_fired. ARGV: "<owner> <token>", job, unix ms.
    // The fencing check and the write are one step: no leader change can fall between.
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local cur = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "if not cur or tonumber(cur) < tonumber(ARGV[3]) then\n"
    "  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])\n"
    "end\n"
    "return 1\n",
    // kRegister. KEYS: workers, capacity. ARGV: address, capacity, ttl ms. Expiry from
    // redis's clock, so that every process compares against the same one.
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "return 1\n",
    // kDeregister. KEYS: workers, capacity. ARGV: address.
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "return 1\n",
    // kList. KEYS: workers, capacity. Returns address, capacity, address, capacity, ...
    // HDEL one by one: unpack() of a long list would overflow Lua's stack.
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "for _, a in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do\n"
    "  redis.call('HDEL', KEYS[2], a)\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local out = {}\n"
    "for _, a in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
    "  out[#out + 1] = a\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[2], a) or '0'\n"
    "end\n"
    "return out\n",
};

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

std::string lease_value(std::string_view owner, uint64_t token) {
  return std::string(owner) + ' ' + std::to_string(token);
}

template <typename T>
std::optional<T> parse(const char* s, size_t len) {
  T v{};
  auto [end, ec] = std::from_chars(s, s + len, v);
  if (ec != std::errc() || end != s + len) return std::nullopt;
  return v;
}

}  // namespace

const char* to_string(CoordResult r) {
  switch (r) {
    case CoordResult::kOk: return "ok";
    case CoordResult::kLost: return "lost";
    case CoordResult::kError: return "error";
  }
  return "?";
}

void Coordinator::ContextFree::operator()(redisContext* c) const { redisFree(c); }
void Coordinator::ReplyFree::operator()(redisReply* r) const { freeReplyObject(r); }

Coordinator::Coordinator(CoordinatorOptions o)
    : opts_(std::move(o)),
      lease_key_(opts_.prefix + "lease"),
      fence_key_(opts_.prefix + "fence"),
      last_fired_key_(opts_.prefix + "last_fired"),
      shas_(kScriptCount) {
  static_assert(std::size(kScripts) == kScriptCount);
}
Coordinator::~Coordinator() = default;
Coordinator::Coordinator(Coordinator&&) noexcept = default;
Coordinator& Coordinator::operator=(Coordinator&&) noexcept = default;

CoordResult Coordinator::fail(std::string text) {
  error_ = std::move(text);
  return CoordResult::kError;
}

bool Coordinator::connect() {
  std::unique_ptr<redisContext, ContextFree> c(
      redisConnectWithTimeout(opts_.host.c_str(), opts_.port, to_timeval(opts_.timeout)));
  std::string where = "redis " + opts_.host + ':' + std::to_string(opts_.port) + ": ";
  if (!c || c->err) {
    error_ = where + (c ? c->errstr : "cannot allocate a context");
    return false;
  }
  // Without a read timeout a stopped (not closed) server would block the caller forever.
  if (redisSetTimeout(c.get(), to_timeval(opts_.timeout)) != REDIS_OK) {
    error_ = where + "cannot set the timeout: " + c->errstr;
    return false;
  }
  ctx_ = std::move(c);
  return true;
}

// Null on a connection error (error_ set). hiredis marks the context unusable after any
// I/O error or timeout, and a late reply must not be read as the answer to the next
// command, so the connection is dropped; the next call connects again.
Coordinator::Reply Coordinator::command(const std::vector<std::string_view>& args) {
  if (!ctx_ && !connect()) return nullptr;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (!r) {
    error_ = "redis " + opts_.host + ':' + std::to_string(opts_.port) + ": " + ctx_->errstr;
    ctx_.reset();
  }
  return Reply(r);
}

// Null, with error_ set, unless a reply arrived and is not an error reply.
Coordinator::Reply Coordinator::checked(Reply r) {
  if (r && r->type == REDIS_REPLY_ERROR) {
    error_ = "redis replied: " + std::string(r->str, r->len);
    return nullptr;
  }
  return r;
}

std::optional<long long> Coordinator::integer(Reply r) {
  r = checked(std::move(r));
  if (!r) return std::nullopt;
  if (r->type != REDIS_REPLY_INTEGER) {
    error_ = "redis: unexpected reply type";
    return std::nullopt;
  }
  return r->integer;
}

Coordinator::Reply Coordinator::eval(Script s, const std::vector<std::string_view>& keys,
                                     const std::vector<std::string_view>& args) {
  std::string& sha = shas_[s];
  if (sha.empty()) {
    Reply r = checked(command({"SCRIPT", "LOAD", kScripts[s]}));
    if (!r) return r;
    if (r->type != REDIS_REPLY_STRING) {
      error_ = "SCRIPT LOAD: unexpected reply";
      return nullptr;
    }
    sha.assign(r->str, r->len);
  }
  std::string nkeys = std::to_string(keys.size());
  std::vector<std::string_view> argv{"EVALSHA", sha, nkeys};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Reply r = command(argv);
  if (r && r->type == REDIS_REPLY_ERROR &&
      std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
    // redis restarted or flushed its scripts; EVAL runs the script and caches it again.
    argv[0] = "EVAL";
    argv[1] = kScripts[s];
    r = command(argv);
  }
  return checked(std::move(r));
}

Acquire Coordinator::try_acquire(std::string_view owner, std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return {fail("try_acquire: ttl must be positive")};
  auto token =
      integer(eval(kAcquire, {lease_key_, fence_key_}, {owner, std::to_string(ttl.count())}));
  if (!token) return {CoordResult::kError};
  if (*token <= 0) return {CoordResult::kLost};
  return {CoordResult::kOk, static_cast<uint64_t>(*token)};
}

CoordResult Coordinator::renew(std::string_view owner, uint64_t token,
                               std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return fail("renew: ttl must be positive");
  auto n = integer(
      eval(kRenew, {lease_key_}, {lease_value(owner, token), std::to_string(ttl.count())}));
  if (!n) return CoordResult::kError;
  return *n == 1 ? CoordResult::kOk : CoordResult::kLost;
}

CoordResult Coordinator::release(std::string_view owner, uint64_t token) {
  auto n = integer(eval(kRelease, {lease_key_}, {lease_value(owner, token)}));
  if (!n) return CoordResult::kError;
  return *n == 1 ? CoordResult::kOk : CoordResult::kLost;
}

Holder Coordinator::holder() {
  Reply r = checked(command({"GET", lease_key_}));
  if (!r) return {CoordResult::kError};
  if (r->type == REDIS_REPLY_NIL) return {CoordResult::kOk};
  if (r->type != REDIS_REPLY_STRING) return {fail("GET lease: unexpected reply type")};
  return {CoordResult::kOk, std::string(r->str, r->len)};
}

CoordResult Coordinator::set_last_fired(std::string_view owner, uint64_t token,
                                        std::string_view job, int64_t unix_ms) {
  auto n = integer(eval(kSetLastFired, {lease_key_, last_fired_key_},
                        {lease_value(owner, token), job, std::to_string(unix_ms)}));
  if (!n) return CoordResult::kError;
  return *n == 1 ? CoordResult::kOk : CoordResult::kLost;
}

LastFired Coordinator::last_fired(std::string_view job) {
  Reply r = checked(command({"HGET", last_fired_key_, job}));
  if (!r) return {CoordResult::kError};
  if (r->type == REDIS_REPLY_NIL) return {CoordResult::kOk};
  auto v = r->type == REDIS_REPLY_STRING ? parse<int64_t>(r->str, r->len) : std::nullopt;
  if (!v) return {fail("HGET last_fired: not an integer")};
  return {CoordResult::kOk, v};
}

CoordResult Coordinator::register_worker(std::string_view service, std::string_view address,
                                         uint32_t capacity, std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return fail("register_worker: ttl must be positive");
  std::string workers = opts_.prefix + "workers:" + std::string(service);
  std::string capacities = opts_.prefix + "capacity:" + std::string(service);
  auto n = integer(eval(kRegister, {workers, capacities},
                        {address, std::to_string(capacity), std::to_string(ttl.count())}));
  return n ? CoordResult::kOk : CoordResult::kError;
}

CoordResult Coordinator::deregister_worker(std::string_view service, std::string_view address) {
  std::string workers = opts_.prefix + "workers:" + std::string(service);
  std::string capacities = opts_.prefix + "capacity:" + std::string(service);
  auto n = integer(eval(kDeregister, {workers, capacities}, {address}));
  return n ? CoordResult::kOk : CoordResult::kError;
}

Workers Coordinator::list_workers(std::string_view service) {
  std::string workers = opts_.prefix + "workers:" + std::string(service);
  std::string capacities = opts_.prefix + "capacity:" + std::string(service);
  Reply r = eval(kList, {workers, capacities}, {});
  if (!r) return {CoordResult::kError};
  if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
    return {fail("list_workers: unexpected reply")};
  }
  Workers out{CoordResult::kOk};
  for (size_t i = 0; i < r->elements; i += 2) {
    const redisReply* addr = r->element[i];
    const redisReply* cap = r->element[i + 1];
    auto c = cap->type == REDIS_REPLY_STRING ? parse<uint32_t>(cap->str, cap->len) : std::nullopt;
    if (addr->type != REDIS_REPLY_STRING || !c) return {fail("list_workers: bad entry")};
    out.workers.push_back({std::string(addr->str, addr->len), *c});
  }
  // The set is ordered by expiry; callers want a stable order.
  std::sort(out.workers.begin(), out.workers.end(),
            [](const Worker& a, const Worker& b) { return a.address < b.address; });
  return out;
}

}  // namespace jobs
