// SPDX-License-Identifier: MIT
// RpcClient over loopback on both backends, against a FramedHandler<RpcFrameCodec> test
// server that records every request frame: 1,000 calls from 50 threads share one
// connection; responses sent out of order reach their callers; a missing response times
// out only its own call (DEADLINE_EXCEEDED), after the smallest of the default, method and
// call timeouts; an idempotent call survives its connection dying (one retry, a second
// connection) while a plain call fails at once (UNAVAILABLE, ECONNRESET); error frames
// (the server's code and message), cancellation (CANCELLED), a request over max_body
// (INVALID_ARGUMENT, not sent), and "every call ends exactly once". Deadlines on the wire:
// each send carries the time left (the budget), a retry less, none without a timeout.
// UNAVAILABLE error frames are retried for idempotent calls only, up to max_attempts.
// Filters: on_call in order (body and options changes reach the server), on_result in
// reverse, a refusal that sends nothing. Compression: zstd and lz4 round trips, a body
// under the threshold sent raw, responses that do not decompress. Then the client is
// destroyed with calls in each state (waiting for a dial that times out or is refused,
// sent, waiting out a retry backoff, with writes and responses queued on its loop), from
// its own `done` (loop thread, timer thread) and under load: every call ends once, with
// CANCELLED unless it had ended, none after the destructor returned (run these under ASan).
#include <gtest/gtest.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/peer_pool.h>
#include <ringnet/proto/rpc_client.h>
#include <ringnet/proto/rpc_compression.h>
#include <ringnet/proto/rpc_frame.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

using namespace ringnet::proto;

constexpr uint16_t kEcho = 1, kReversedBatch = 2, kError = 5, kResetOnce = 7, kNever = 9,
                   kHeld = 11, kUnavailableOnce = 13, kBadCompressed = 15;

// What the server saw of one request frame.
struct Seen {
  uint16_t method = 0;
  uint16_t flags = 0;
  uint32_t budget_ms = 0;  // when flags has kRpcFlagBudget
  std::string body;
};

// method 1 echo (the reply keeps the request's flags); 2 held until 10 arrived, then
// answered last-first; 5 an error frame NOT_FOUND "no such key"; 7 closes the connection
// the first time (reset_next), echoes after; 9 never answered (counted in never_seen);
// 11 held until the test calls answer_held(); 13 an error frame UNAVAILABLE "draining"
// while unavailable_next > 0 (counted down), echoes after; 15 a response flagged zstd
// whose body does not decompress (body "bomb": declares 4 GiB; else a bad payload).
// Every frame is recorded (seen()) before it is answered.
class TestRpcServer : public FramedHandler<RpcFrameCodec> {
 public:
  Action on_message(Conn& c, const RpcFrame& f) override {
    {
      std::lock_guard lock(mu_);
      seen_.push_back({f.method, f.flags, f.budget_ms, std::string(f.body)});
    }
    RpcFrame reply = f;
    reply.type = RpcType::kResponse;
    std::string error_body;
    switch (f.method) {
      case kEcho:
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      case kReversedBatch: {
        held_.push_back({f.request_id, std::string(f.body)});
        if (held_.size() < 10) return Action::kNone;
        for (auto it = held_.rbegin(); it != held_.rend(); ++it) {
          reply.request_id = it->first;
          reply.body = it->second;
          if (!codec().encode(reply, c)) return Action::kClose;
        }
        held_.clear();
        return Action::kNone;
      }
      case kError:
        error_body = encode_rpc_error_body(RpcCode::kNotFound, "no such key");
        reply.type = RpcType::kError;
        reply.body = error_body;
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      case kBadCompressed:
        reply.flags = rpc_flags_with_compression(0, RpcCompression::kZstd);
        reply.body = f.body == "bomb" ? std::string_view("\xff\xff\xff\xffzz", 6)
                                      : std::string_view("\0\0\0\x08garbage!", 12);
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      case kUnavailableOnce:
        if (unavailable_next.fetch_sub(1) > 0) {
          error_body = encode_rpc_error_body(RpcCode::kUnavailable, "draining");
          reply.type = RpcType::kError;
          reply.flags = 0;
          reply.body = error_body;
        }
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      case kResetOnce:
        if (reset_next.exchange(false)) return Action::kClose;
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      case kHeld: {
        std::lock_guard lock(mu_);
        answer_ += encode_reply(f);
        ++held_count_;
        held_conn_ = c.handle();
        return Action::kNone;
      }
      default:
        never_seen.fetch_add(1);
        return Action::kNone;  // kNever
    }
  }
  // Any thread: how many kHeld calls wait for answer_held().
  int held_count() const {
    std::lock_guard lock(mu_);
    return held_count_;
  }
  // Any thread: sends the answers of the kHeld calls so far; returns their size in bytes.
  size_t answer_held() {
    std::lock_guard lock(mu_);
    size_t n = answer_.size();
    held_conn_.async_write(answer_);
    answer_.clear();
    held_count_ = 0;
    return n;
  }
  // Any thread: the request frames received so far, in order.
  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  // Any thread: the ones of `method`.
  std::vector<Seen> seen(uint16_t method) const {
    std::vector<Seen> out;
    for (Seen& s : seen()) {
      if (s.method == method) out.push_back(std::move(s));
    }
    return out;
  }
  std::atomic<bool> reset_next{false};
  std::atomic<int> never_seen{0};
  std::atomic<int> unavailable_next{0};

 private:
  static std::string encode_reply(const RpcFrame& f) {
    RpcHeaderBytes head = encode_rpc_header(RpcType::kResponse, 0, f.method, f.request_id,
                                            static_cast<uint32_t>(f.body.size()));
    return std::string(head.data(), head.size()) + std::string(f.body);
  }
  mutable std::mutex mu_;
  std::string answer_;
  int held_count_ = 0;
  ConnHandle held_conn_;
  std::vector<std::pair<uint64_t, std::string>> held_;  // one loop in these tests
  std::vector<Seen> seen_;
};

struct RpcTestClient {
  RpcTestClient(Backend backend, RpcClientOptions o, PeerPoolOptions po = {}, int loops = 2)
      : engine(handler, test_options(backend, loops)),
        pool(std::make_unique<PeerPool>(engine, po)),
        rpc(std::make_unique<RpcClient>(*pool, o)) {
    handler.attach(*pool, *rpc);
  }
  ~RpcTestClient() {
    engine.stop();
    engine.wait();  // every connection's on_close reached the client and the pool
    rpc.reset();  // (unless a test destroyed it already)
    pool.reset();
  }
  RpcClientHandler handler;
  Engine engine;
  std::unique_ptr<PeerPool> pool;
  std::unique_ptr<RpcClient> rpc;
};

// One call's outcome, waited for with a bound.
struct Outcome {
  std::mutex mu;
  int ends = 0;
  RpcStatus status;
  std::string body;
  Clock::time_point at;
  RpcClient::Done done() {
    return [this](const RpcStatus& s, std::string_view b) {
      std::lock_guard lock(mu);
      ++ends;
      status = s;
      body = std::string(b);
      at = Clock::now();
    };
  }
  bool wait(Millis timeout = 5000ms) {
    return wait_until([&] {
      std::lock_guard lock(mu);
      return ends > 0;
    }, timeout);
  }
};

class RpcClientTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.start()); }
  std::string addr() const { return "tcp://127.0.0.1:" + std::to_string(server_.port()); }
  TestRpcServer app_;
  TestServer server_{app_, test_options(GetParam())};
};

TEST_P(RpcClientTest, FiftyCallersShareOneConnection) {
  RpcTestClient c(GetParam(), {});
  ASSERT_TRUE(c.engine.start());
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 50; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string body = make_payload(16 + (t * 20 + i) % 200, uint64_t(t * 1000 + i));
        c.rpc->call(addr(), kEcho, body, {}, [&, body](const RpcStatus& s, std::string_view b) {
          (s.is_ok() && b == body ? ok : bad).fetch_add(1);
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  ASSERT_TRUE(wait_until([&] { return ok.load() + bad.load() == 1000; }, 10000ms));
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(server_.engine().stats().accepted, 1u);
  RpcClientStats st = c.rpc->stats();
  EXPECT_EQ(st.calls, 1000u);
  EXPECT_EQ(st.ok, 1000u);
  EXPECT_EQ(st.in_flight, 0u);
}

TEST_P(RpcClientTest, OutOfOrderResponsesReachTheirCallers) {
  RpcTestClient c(GetParam(), {});
  ASSERT_TRUE(c.engine.start());
  std::vector<std::unique_ptr<Outcome>> out;
  for (int i = 0; i < 10; ++i) {
    out.push_back(std::make_unique<Outcome>());
    c.rpc->call(addr(), kReversedBatch, "call " + std::to_string(i), {}, out.back()->done());
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(out[i]->wait()) << i;
    EXPECT_TRUE(out[i]->status) << out[i]->status.to_string();
    EXPECT_EQ(out[i]->body, "call " + std::to_string(i));
  }
  EXPECT_LT(out[9]->at, out[0]->at + 1s);  // sanity: one batch
}

TEST_P(RpcClientTest, MissingResponseTimesOutOnlyItsCallAfterTheSmallestTimeout) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms});
  c.rpc->set_method_timeout(kNever, 400ms);
  ASSERT_TRUE(c.engine.start());
  Outcome by_call, by_method;
  std::vector<std::unique_ptr<Outcome>> fine;
  Clock::time_point t0 = Clock::now();
  c.rpc->call(addr(), kNever, "a", {.timeout = 150ms}, by_call.done());
  c.rpc->call(addr(), kNever, "b", {}, by_method.done());
  for (int i = 0; i < 5; ++i) {
    fine.push_back(std::make_unique<Outcome>());
    c.rpc->call(addr(), kEcho, "ok", {}, fine.back()->done());
  }
  for (auto& f : fine) {
    ASSERT_TRUE(f->wait());
    EXPECT_TRUE(f->status);
  }
  ASSERT_TRUE(by_call.wait());
  ASSERT_TRUE(by_method.wait());
  EXPECT_EQ(by_call.status.code, RpcCode::kDeadlineExceeded);
  EXPECT_EQ(by_call.status.error, ETIMEDOUT);
  EXPECT_EQ(by_method.status.code, RpcCode::kDeadlineExceeded);
  EXPECT_EQ(by_method.status.error, ETIMEDOUT);
  EXPECT_GE(by_call.at - t0, 140ms);
  EXPECT_LT(by_call.at - t0, 380ms);  // the call's 150 ms, not the method's 400 ms
  EXPECT_GE(by_method.at - t0, 390ms);
  EXPECT_LT(by_method.at - t0, 2000ms);
  EXPECT_EQ(c.rpc->stats().timeouts, 2u);
  EXPECT_EQ(c.rpc->stats().ok, 5u);
}

TEST_P(RpcClientTest, IdempotentCallIsRetriedOnANewConnectionPlainCallFailsAtOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms});
  ASSERT_TRUE(c.engine.start());
  app_.reset_next.store(true);
  Outcome retried;
  c.rpc->call(addr(), kResetOnce, "again", {.idempotent = true}, retried.done());
  ASSERT_TRUE(retried.wait());
  EXPECT_TRUE(retried.status) << retried.status.to_string();
  EXPECT_EQ(retried.body, "again");
  EXPECT_EQ(c.rpc->stats().retries, 1u);
  EXPECT_EQ(server_.engine().stats().accepted, 2u);

  app_.reset_next.store(true);
  Outcome plain;
  Clock::time_point t0 = Clock::now();
  c.rpc->call(addr(), kResetOnce, "once", {}, plain.done());
  ASSERT_TRUE(plain.wait());
  EXPECT_EQ(plain.status.code, RpcCode::kUnavailable) << plain.status.to_string();
  EXPECT_EQ(plain.status.error, ECONNRESET);
  EXPECT_LT(plain.at - t0, 1000ms);  // at once, not at the 3 s timeout
  EXPECT_EQ(c.rpc->stats().connection_failures, 1u);
}

TEST_P(RpcClientTest, ErrorFramesCancelAndEveryCallEndsOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 300ms});
  ASSERT_TRUE(c.engine.start());
  Outcome err;
  c.rpc->call(addr(), kError, "k", {}, err.done());
  ASSERT_TRUE(err.wait());
  EXPECT_EQ(err.status.code, RpcCode::kNotFound) << err.status.to_string();
  EXPECT_EQ(err.status.message, "no such key");
  EXPECT_EQ(err.status.error, 0);
  EXPECT_EQ(err.body, "");
  EXPECT_EQ(c.rpc->stats().errors, 1u);

  Outcome cancelled;
  uint64_t id = c.rpc->call(addr(), kNever, "x", {}, cancelled.done());
  EXPECT_TRUE(c.rpc->cancel(id));
  EXPECT_FALSE(c.rpc->cancel(id));  // ended already
  ASSERT_TRUE(cancelled.wait());
  EXPECT_EQ(cancelled.status.code, RpcCode::kCancelled);
  EXPECT_EQ(cancelled.status.error, ECANCELED);
  std::this_thread::sleep_for(500ms);  // past its timeout: no second end
  std::lock_guard lock(cancelled.mu);
  EXPECT_EQ(cancelled.ends, 1);
  EXPECT_EQ(c.rpc->stats().timeouts, 0u);
}

TEST_P(RpcClientTest, RefusedAddressFailsTheCall) {
  RpcTestClient c(GetParam(), {});
  ASSERT_TRUE(c.engine.start());
  std::string dead = addr();
  server_.stop();  // nothing listens there any more
  Outcome o;
  c.rpc->call(dead, kEcho, "x", {.idempotent = true}, o.done());
  ASSERT_TRUE(o.wait());
  EXPECT_EQ(o.status.code, RpcCode::kUnavailable) << o.status.to_string();
  EXPECT_EQ(o.status.error, ECONNREFUSED);
}

// A host name that does not resolve is not a connection failure worth retrying: an
// idempotent call fails once, at once, with a message that says why. A name that does
// resolve works like its address.
TEST_P(RpcClientTest, ANameThatDoesNotResolveFailsOnceWithoutRetries) {
  RpcTestClient c(GetParam(), {});
  ASSERT_TRUE(c.engine.start());
  Outcome bad;
  c.rpc->call("tcp://nosuch.invalid:9", kEcho, "x", {.idempotent = true}, bad.done());
  ASSERT_TRUE(bad.wait());
  EXPECT_FALSE(bad.status);
  EXPECT_EQ(bad.status.code, RpcCode::kUnavailable);
  EXPECT_EQ(bad.status.error, -1);  // no errno: Status::invalid from the pool
  EXPECT_NE(bad.status.message.find("cannot resolve host"), std::string::npos)
      << bad.status.to_string();
  RpcClientStats st = c.rpc->stats();
  EXPECT_EQ(st.retries, 0u);
  EXPECT_EQ(st.connection_failures, 0u);
  EXPECT_EQ(st.errors, 1u);
  Outcome good;
  c.rpc->call("tcp://localhost:" + addr().substr(addr().rfind(':') + 1), kEcho, "by name",
              {}, good.done());
  ASSERT_TRUE(good.wait());
  EXPECT_TRUE(good.status) << good.status.to_string();
  EXPECT_EQ(good.body, "by name");
}

// A request whose body_length (body + the 4-byte budget field) is over codec.max_body
// ends with INVALID_ARGUMENT at once, and nothing is sent: the next call, which fits, is
// the first frame the server sees.
TEST_P(RpcClientTest, ARequestOverMaxBodyIsAnInvalidArgumentAndNotSent) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms, .codec = {.max_body = 100}});
  ASSERT_TRUE(c.engine.start());
  Outcome big;
  c.rpc->call(addr(), kEcho, std::string(97, 'x'), {}, big.done());  // 97 + 4 > 100
  ASSERT_TRUE(big.wait());
  EXPECT_EQ(big.status.code, RpcCode::kInvalidArgument) << big.status.to_string();
  EXPECT_EQ(big.status.error, EMSGSIZE);
  Outcome fits;
  c.rpc->call(addr(), kEcho, std::string(96, 'y'), {}, fits.done());
  ASSERT_TRUE(fits.wait());
  EXPECT_TRUE(fits.status) << fits.status.to_string();
  std::vector<Seen> seen = app_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, std::string(96, 'y'));
  EXPECT_EQ(c.rpc->stats().errors, 1u);
}

// ---- deadlines on the wire ---------------------------------------------------------------

// A call with a timeout sends the time it has left (the budget field), rounded up: never
// more than the timeout, and close to it on the first send; its retry, after the backoff,
// sends less.
TEST_P(RpcClientTest, EachSendCarriesTheTimeLeftAsItsBudget) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms, .backoff = 100ms});
  ASSERT_TRUE(c.engine.start());
  app_.unavailable_next.store(1);
  Outcome o;
  c.rpc->call(addr(), kUnavailableOnce, "twice", {.timeout = 2000ms, .idempotent = true},
              o.done());
  ASSERT_TRUE(o.wait());
  ASSERT_TRUE(o.status) << o.status.to_string();
  std::vector<Seen> seen = app_.seen(kUnavailableOnce);
  ASSERT_EQ(seen.size(), 2u);
  for (const Seen& s : seen) {
    EXPECT_TRUE(s.flags & kRpcFlagBudget);
    EXPECT_TRUE(s.flags & kRpcFlagIdempotent);
    EXPECT_EQ(s.body, "twice");  // the budget field is not part of the body
  }
  EXPECT_LE(seen[0].budget_ms, 2000u);  // the call's 2 s, not the default 5 s
  EXPECT_GE(seen[0].budget_ms, 1500u);
  EXPECT_LE(seen[1].budget_ms, seen[0].budget_ms - 90);  // after a 100 ms backoff
  EXPECT_GE(seen[1].budget_ms, 1u);
}

// Without an effective timeout there is no budget; the smallest timeout is the one sent.
TEST_P(RpcClientTest, ABudgetOnlyWithATimeoutAndTheSmallestOne) {
  RpcTestClient c(GetParam(), {.default_timeout = 0ms});
  c.rpc->set_method_timeout(kResetOnce, 300ms);
  ASSERT_TRUE(c.engine.start());
  Outcome none, by_method;
  c.rpc->call(addr(), kEcho, "no timeout", {}, none.done());
  c.rpc->call(addr(), kResetOnce, "method timeout", {.timeout = 4000ms}, by_method.done());
  ASSERT_TRUE(none.wait());
  ASSERT_TRUE(by_method.wait());
  ASSERT_TRUE(none.status) << none.status.to_string();
  ASSERT_TRUE(by_method.status) << by_method.status.to_string();
  std::vector<Seen> echo = app_.seen(kEcho), reset = app_.seen(kResetOnce);
  ASSERT_EQ(echo.size(), 1u);
  EXPECT_FALSE(echo[0].flags & kRpcFlagBudget);
  EXPECT_EQ(echo[0].body, "no timeout");
  ASSERT_EQ(reset.size(), 1u);
  EXPECT_TRUE(reset[0].flags & kRpcFlagBudget);
  EXPECT_LE(reset[0].budget_ms, 300u);
  EXPECT_GE(reset[0].budget_ms, 1u);
}

// ---- retries after UNAVAILABLE -----------------------------------------------------------

// A draining server answers UNAVAILABLE: an idempotent call is sent again (after the
// backoff) and gets its answer; a plain call ends with the server's status, once.
TEST_P(RpcClientTest, UnavailableErrorFrameIsRetriedOnlyForIdempotentCalls) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms});
  ASSERT_TRUE(c.engine.start());
  app_.unavailable_next.store(1);
  Outcome retried;
  c.rpc->call(addr(), kUnavailableOnce, "again", {.idempotent = true}, retried.done());
  ASSERT_TRUE(retried.wait());
  EXPECT_TRUE(retried.status) << retried.status.to_string();
  EXPECT_EQ(retried.body, "again");
  EXPECT_EQ(c.rpc->stats().retries, 1u);
  EXPECT_EQ(app_.seen(kUnavailableOnce).size(), 2u);

  app_.unavailable_next.store(1);
  Outcome plain;
  c.rpc->call(addr(), kUnavailableOnce, "once", {}, plain.done());
  ASSERT_TRUE(plain.wait());
  EXPECT_EQ(plain.status.code, RpcCode::kUnavailable) << plain.status.to_string();
  EXPECT_EQ(plain.status.message, "draining");
  EXPECT_EQ(plain.status.error, 0);
  RpcClientStats st = c.rpc->stats();
  EXPECT_EQ(st.retries, 1u);
  EXPECT_EQ(st.errors, 1u);
  EXPECT_EQ(st.ok, 1u);
}

// An idempotent call that keeps getting UNAVAILABLE gives up after max_attempts sends.
TEST_P(RpcClientTest, UnavailableRetriesStopAtMaxAttempts) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms, .max_attempts = 3});
  ASSERT_TRUE(c.engine.start());
  app_.unavailable_next.store(100);
  Outcome o;
  c.rpc->call(addr(), kUnavailableOnce, "x", {.idempotent = true}, o.done());
  ASSERT_TRUE(o.wait());
  EXPECT_EQ(o.status.code, RpcCode::kUnavailable) << o.status.to_string();
  EXPECT_EQ(c.rpc->stats().retries, 2u);
  EXPECT_EQ(app_.seen(kUnavailableOnce).size(), 3u);
}

// ---- filters -----------------------------------------------------------------------------

// A filter that logs its hooks to a shared list; it may prefix the body, refuse one
// method, or set a timeout.
class LogFilter : public RpcClientFilter {
 public:
  LogFilter(std::string name, std::shared_ptr<std::vector<std::string>> log,
            std::shared_ptr<std::mutex> mu)
      : name_(std::move(name)), log_(std::move(log)), mu_(std::move(mu)) {}
  RpcStatus on_call(RpcClientCall& call) override {
    note(name_ + ".call");
    if (refuse_method != 0 && call.method == refuse_method) {
      return RpcStatus::make(RpcCode::kPermissionDenied, name_ + " says no");
    }
    call.body = prefix + call.body;
    if (timeout.count() > 0) call.options.timeout = timeout;
    return RpcStatus::ok();
  }
  void on_result(const RpcClientCall& call, const RpcStatus& status,
                 std::chrono::nanoseconds latency) override {
    note(name_ + ".result " + rpc_code_name(status.code) + " " + call.body);
    std::lock_guard lock(*mu_);
    last_latency = latency;
  }
  uint16_t refuse_method = 0;
  std::string prefix;
  Millis timeout{0};
  std::chrono::nanoseconds last_latency{0};  // under *mu_

 private:
  void note(std::string what) {
    std::lock_guard lock(*mu_);
    log_->push_back(std::move(what));
  }
  std::string name_;
  std::shared_ptr<std::vector<std::string>> log_;
  std::shared_ptr<std::mutex> mu_;
};

struct FilterLog {
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  std::shared_ptr<LogFilter> make(std::string name) {
    return std::make_shared<LogFilter>(std::move(name), lines, mu);
  }
  // `done` that logs "done <code>", then reports to `o`.
  RpcClient::Done done(Outcome& o) {
    return [this, d = o.done()](const RpcStatus& s, std::string_view body) {
      {
        std::lock_guard lock(*mu);
        lines->push_back(std::string("done ") + rpc_code_name(s.code));
      }
      d(s, body);
    };
  }
  std::vector<std::string> take() {
    std::lock_guard lock(*mu);
    return std::exchange(*lines, {});
  }
};

// on_call in the order added, each seeing the body as the one before left it; the server
// gets the last body; on_result in the reverse order, then `done`; a latency above zero.
TEST_P(RpcClientTest, FiltersRunInOrderAndSeeTheResultInReverse) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms});
  FilterLog log;
  auto a = log.make("a"), b = log.make("b");
  a->prefix = "A:";
  b->prefix = "B:";
  ASSERT_TRUE(c.rpc->add_filter(a));
  ASSERT_TRUE(c.rpc->add_filter(b));
  ASSERT_TRUE(c.engine.start());
  Outcome o;
  c.rpc->call(addr(), kEcho, "body", {}, log.done(o));
  ASSERT_TRUE(o.wait());
  ASSERT_TRUE(o.status) << o.status.to_string();
  EXPECT_EQ(o.body, "B:A:body");
  std::vector<Seen> seen = app_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "B:A:body");
  EXPECT_EQ(log.take(), (std::vector<std::string>{"a.call", "b.call", "b.result OK B:A:body",
                                                  "a.result OK B:A:body", "done OK"}));
  std::lock_guard lock(*log.mu);
  EXPECT_GT(a->last_latency.count(), 0);
  EXPECT_GT(b->last_latency.count(), 0);
}

// A filter that refuses ends the call with its status at once: later filters never see
// it, the earlier ones see the result, and nothing reaches the server (the next call,
// which the filter lets through, is the first frame it gets). Filters see failures too.
TEST_P(RpcClientTest, AFilterThatRefusesEndsTheCallAndNothingIsSent) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms});
  FilterLog log;
  auto a = log.make("a"), b = log.make("b"), z = log.make("z");
  b->refuse_method = kNever;
  ASSERT_TRUE(c.rpc->add_filter(a));
  ASSERT_TRUE(c.rpc->add_filter(b));
  ASSERT_TRUE(c.rpc->add_filter(z));
  ASSERT_TRUE(c.engine.start());
  Outcome refused;
  c.rpc->call(addr(), kNever, "secret", {}, log.done(refused));
  ASSERT_TRUE(refused.wait());
  EXPECT_EQ(refused.status.code, RpcCode::kPermissionDenied);
  EXPECT_EQ(refused.status.message, "b says no");
  EXPECT_EQ(log.take(), (std::vector<std::string>{"a.call", "b.call",
                                                  "a.result PERMISSION_DENIED secret",
                                                  "done PERMISSION_DENIED"}));
  EXPECT_EQ(c.rpc->stats().filtered, 1u);
  EXPECT_EQ(c.rpc->stats().in_flight, 0u);

  Outcome err;
  c.rpc->call(addr(), kError, "k", {}, log.done(err));
  ASSERT_TRUE(err.wait());
  EXPECT_EQ(err.status.code, RpcCode::kNotFound);
  EXPECT_EQ(log.take(), (std::vector<std::string>{"a.call", "b.call", "z.call",
                                                  "z.result NOT_FOUND k", "b.result NOT_FOUND k",
                                                  "a.result NOT_FOUND k", "done NOT_FOUND"}));
  std::vector<Seen> seen = app_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, kError);
  EXPECT_EQ(app_.never_seen.load(), 0);
}

// A filter may set the call's options: its timeout becomes the call's (and its budget).
// add_filter is refused once calls have started.
TEST_P(RpcClientTest, AFilterMaySetTheTimeoutAndFiltersAreFixedAtTheFirstCall) {
  RpcTestClient c(GetParam(), {.default_timeout = 0ms});
  FilterLog log;
  auto t = log.make("t");
  t->timeout = 200ms;
  ASSERT_TRUE(c.rpc->add_filter(t));
  EXPECT_FALSE(c.rpc->add_filter(nullptr));
  ASSERT_TRUE(c.engine.start());
  Outcome o;
  Clock::time_point t0 = Clock::now();
  c.rpc->call(addr(), kNever, "x", {}, o.done());
  EXPECT_FALSE(c.rpc->add_filter(log.make("late")));
  ASSERT_TRUE(o.wait());
  EXPECT_EQ(o.status.code, RpcCode::kDeadlineExceeded);
  EXPECT_GE(o.at - t0, 190ms);
  EXPECT_LT(o.at - t0, 2000ms);
  ASSERT_TRUE(eventually([&] { return app_.never_seen.load() == 1; }));
  std::vector<Seen> seen = app_.seen(kNever);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].flags & kRpcFlagBudget);
  EXPECT_LE(seen[0].budget_ms, 200u);
}

// ---- compression -------------------------------------------------------------------------

// A body over the threshold goes out compressed (flags bits 2-3 name the codec, the body
// is smaller); the test server echoes it with the same flags, and `done` gets the body
// decompressed. A body under the threshold goes out as is.
TEST_P(RpcClientTest, CompressedRequestsAndResponsesRoundTrip) {
  for (RpcCompression codec : {RpcCompression::kZstd, RpcCompression::kLz4}) {
    SCOPED_TRACE(rpc_compression_name(codec));
    RpcTestClient c(GetParam(), {.default_timeout = 3000ms,
                                 .compression = {.codec = codec, .threshold = 64}});
    ASSERT_TRUE(c.engine.start());
    const size_t before = app_.seen().size();
    std::string text;
    while (text.size() < 4096) text += "the quick brown fox " + std::to_string(text.size() % 7);
    Outcome big, small;
    c.rpc->call(addr(), kEcho, text, {}, big.done());
    ASSERT_TRUE(big.wait());
    ASSERT_TRUE(big.status) << big.status.to_string();
    EXPECT_TRUE(same_bytes(text, big.body));
    c.rpc->call(addr(), kEcho, "tiny", {}, small.done());
    ASSERT_TRUE(small.wait());
    ASSERT_TRUE(small.status) << small.status.to_string();
    EXPECT_EQ(small.body, "tiny");
    std::vector<Seen> seen = app_.seen();
    ASSERT_EQ(seen.size(), before + 2);
    const Seen& sent_big = seen[before];
    const Seen& sent_small = seen[before + 1];
    EXPECT_EQ((sent_big.flags & kRpcFlagCompressionMask) >> kRpcFlagCompressionShift,
              static_cast<unsigned>(codec));
    EXPECT_LT(sent_big.body.size(), text.size() / 2);
    EXPECT_TRUE(sent_big.flags & kRpcFlagBudget);  // compression and budget together
    EXPECT_EQ(sent_small.flags & kRpcFlagCompressionMask, 0);
    EXPECT_EQ(sent_small.body, "tiny");
  }
}

// A response that does not decompress ends its call with rpc_decompress's status; one
// that declares more than max_body is refused before anything is inflated.
TEST_P(RpcClientTest, AResponseThatDoesNotDecompressEndsTheCall) {
  RpcTestClient c(GetParam(), {.default_timeout = 3000ms});
  ASSERT_TRUE(c.engine.start());
  Outcome bad, bomb;
  c.rpc->call(addr(), kBadCompressed, "x", {}, bad.done());
  c.rpc->call(addr(), kBadCompressed, "bomb", {}, bomb.done());
  ASSERT_TRUE(bad.wait());
  ASSERT_TRUE(bomb.wait());
  EXPECT_EQ(bad.status.code, RpcCode::kInvalidArgument) << bad.status.to_string();
  EXPECT_EQ(bomb.status.code, RpcCode::kResourceExhausted) << bomb.status.to_string();
  EXPECT_EQ(bad.body, "");
  EXPECT_EQ(c.rpc->stats().errors, 2u);
  Outcome fine;  // the connection is still good
  c.rpc->call(addr(), kEcho, "after", {}, fine.done());
  ASSERT_TRUE(fine.wait());
  EXPECT_TRUE(fine.status) << fine.status.to_string();
}

// ---- destroying the client with calls in flight (issue #19) ------------------------------

// A `done` that reports to an EndRecorder.
RpcClient::Done record(EndRecorder& ends) {
  size_t i = ends.add();
  return [&ends, i](const RpcStatus& s, std::string_view) { ends.end(i, s.error); };
}

// Destroys the client while its engine runs (a watchdog bounds the destructor: it must not
// wait for a loop) and notes the moment in `ends`.
void destroy(std::unique_ptr<RpcClient>& rpc, EndRecorder& ends) {
  {
    Watchdog dog(5000ms, "~RpcClient");
    rpc.reset();
  }
  ends.mark_destroyed();
}

// A live pooled connection to `address` (dialed if need be).
testing::AssertionResult pooled(PeerPool& pool, const std::string& address, ConnHandle* out) {
  auto got = std::make_shared<std::pair<std::mutex, std::optional<ConnHandle>>>();
  pool.get(address, [got](const ConnHandle& h, const Status& s) {
    std::lock_guard lock(got->first);
    if (s) got->second = h;
  });
  if (!wait_until([&] {
        std::lock_guard lock(got->first);
        return got->second.has_value();
      }, 5000ms)) {
    return testing::AssertionFailure() << "no pooled connection to " << address;
  }
  std::lock_guard lock(got->first);
  *out = *got->second;
  return testing::AssertionSuccess();
}

// Runs a no-op task on the loop of `h` and waits for it: what was queued there before
// has run.
testing::AssertionResult loop_ran_queued_work(const ConnHandle& h) {
  auto ran = std::make_shared<std::atomic<bool>>(false);
  h.dispatch([ran](Conn*) { ran->store(true); });
  if (wait_until([&] { return ran->load(); }, 5000ms)) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "the loop did not run a task within 5 s";
}

std::string refused_address() { return "tcp://127.0.0.1:" + std::to_string(unused_port()); }

// Calls wait in the pool for a dial that hangs (the SYN is dropped). The client is
// destroyed: each ends with ECANCELED, once, then. Later the dial times out and the pool
// fails its waiters: the client's must reach nothing (the test's own get, queued behind
// them on the same thread, tells when they have run).
TEST_P(RpcClientTest, DestroyedWhileItsDialTimesOutCancelsEachCallOnce) {
  uint16_t stuck_port = 0;
  int lfd = raw_listener(0, &stuck_port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(stuck_port);
  const std::string stuck = "tcp://127.0.0.1:" + std::to_string(stuck_port);
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms}, {.dial_timeout = 300ms});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends;
  for (int i = 0; i < 4; ++i) {
    c.rpc->call(stuck, kEcho, "x", {.idempotent = i % 2 == 0}, record(ends));
  }
  ASSERT_EQ(c.pool->stats().waiting, 4u);
  std::atomic<int> after{0};
  c.pool->get(stuck, [&](const ConnHandle&, const Status& s) { after.store(s.code()); });
  destroy(c.rpc, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  ASSERT_TRUE(wait_until([&] { return after.load() != 0; }, 5000ms));
  EXPECT_EQ(after.load(), ETIMEDOUT);
  EXPECT_EQ(ends.late(), 0);
  EXPECT_EQ(ends.ends(), 4u);
  ::close(lfd);
}

// Same with a dial that will be refused: the client's one loop is held, so the dial waits
// in its queue until after the client is gone.
TEST_P(RpcClientTest, DestroyedWhileItsDialIsRefusedCancelsEachCallOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms}, {}, 1);
  ASSERT_TRUE(c.engine.start());
  ConnHandle h;
  ASSERT_TRUE(pooled(*c.pool, addr(), &h));
  LoopBlocker blocker;
  ASSERT_TRUE(blocker.block(h));
  const std::string refused = refused_address();
  EndRecorder ends;
  for (int i = 0; i < 4; ++i) {
    c.rpc->call(refused, kEcho, "x", {.idempotent = i % 2 == 0}, record(ends));
  }
  std::atomic<int> after{0};
  c.pool->get(refused, [&](const ConnHandle&, const Status& s) { after.store(s.code()); });
  destroy(c.rpc, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  blocker.release();
  ASSERT_TRUE(wait_until([&] { return after.load() != 0; }, 5000ms));
  EXPECT_EQ(after.load(), ECONNREFUSED);
  EXPECT_EQ(ends.late(), 0);
}

// Calls sent to a server that never answers. The client is destroyed: each ends with
// ECANCELED, once. Then the server goes away: the connection's close reaches the hooks of
// a client that is gone, and must touch nothing.
TEST_P(RpcClientTest, DestroyedWhileAwaitingResponsesCancelsEachCallOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends;
  for (int i = 0; i < 5; ++i) {
    c.rpc->call(addr(), kNever, "x", {.idempotent = i % 2 == 0}, record(ends));
  }
  ASSERT_TRUE(wait_until([&] { return app_.never_seen.load() == 5; }, 5000ms));
  destroy(c.rpc, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  server_.stop();
  ASSERT_TRUE(wait_until([&] { return c.pool->stats().evicted == 1; }, 5000ms));
  EXPECT_EQ(ends.late(), 0);
}

// An idempotent call was refused and waits out its backoff before the next attempt. The
// client is destroyed: it ends with ECANCELED, once, and is never attempted again.
TEST_P(RpcClientTest, DestroyedWhileARetryWaitsOutItsBackoffCancelsItOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 10000ms, .max_attempts = 3, .backoff = 300ms});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends;
  c.rpc->call(refused_address(), kEcho, "x", {.idempotent = true}, record(ends));
  ASSERT_TRUE(wait_until([&] { return c.rpc->stats().retries >= 1; }, 5000ms));
  destroy(c.rpc, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  const uint64_t dials = c.pool->stats().dials;
  std::this_thread::sleep_for(700ms);  // past the backoffs that were pending
  EXPECT_EQ(c.pool->stats().dials, dials);
  EXPECT_EQ(ends.late(), 0);
}

// The client's one loop is held while responses for five calls arrive on its socket and
// ten more calls queue their writes on it. The client is destroyed (without waiting for
// the loop): all fifteen end with ECANCELED, once. When the loop goes on, the queued
// writes and the responses find a client that is gone, and must touch nothing.
TEST_P(RpcClientTest, DestroyedWithWorkQueuedOnItsLoopCancelsEachCallOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms}, {}, 1);
  ASSERT_TRUE(c.engine.start());
  Outcome warm;
  c.rpc->call(addr(), kEcho, "warm", {}, warm.done());
  ASSERT_TRUE(warm.wait());
  ASSERT_TRUE(warm.status) << warm.status.to_string();
  EndRecorder ends;
  for (int i = 0; i < 5; ++i) c.rpc->call(addr(), kHeld, "held", {}, record(ends));
  ASSERT_TRUE(wait_until([&] { return app_.held_count() == 5; }, 5000ms));
  ConnHandle h;
  ASSERT_TRUE(pooled(*c.pool, addr(), &h));
  LoopBlocker blocker;
  ASSERT_TRUE(blocker.block(h));
  const uint64_t out_before = server_.engine().stats().bytes_out;
  const uint64_t in_before = c.engine.stats().bytes_in;
  const size_t answers = app_.answer_held();
  ASSERT_TRUE(wait_until(
      [&] { return server_.engine().stats().bytes_out >= out_before + answers; }, 5000ms));
  for (int i = 0; i < 10; ++i) c.rpc->call(addr(), kEcho, "queued", {}, record(ends));
  destroy(c.rpc, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  blocker.release();
  ASSERT_TRUE(wait_until([&] { return c.engine.stats().bytes_in >= in_before + answers; },
                         5000ms));
  ASSERT_TRUE(loop_ran_queued_work(h));
  EXPECT_EQ(ends.late(), 0);
  EXPECT_EQ(ends.ends(), 15u);
}

// A `done` running on a loop thread (a response) destroys the client: the other calls end
// with ECANCELED there and then, once; nothing deadlocks.
TEST_P(RpcClientTest, DestroyedFromADoneOnALoopThreadCancelsTheOthers) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends;
  for (int i = 0; i < 3; ++i) c.rpc->call(addr(), kNever, "x", {}, record(ends));
  std::atomic<int> first{0};
  std::atomic<bool> destroyed{false};
  c.rpc->call(addr(), kHeld, "last", {}, [&](const RpcStatus& s, std::string_view body) {
    first.store(s && body == "last" ? 1 : 2);
    c.rpc.reset();
    ends.mark_destroyed();
    destroyed.store(true);
  });
  ASSERT_TRUE(wait_until([&] { return app_.held_count() == 1 && app_.never_seen == 3; },
                         5000ms));
  app_.answer_held();
  ASSERT_TRUE(wait_until([&] { return destroyed.load(); }, 5000ms));
  EXPECT_EQ(first.load(), 1);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  EXPECT_EQ(ends.late(), 0);
}

// A `done` running on the client's timer thread (a timeout) destroys the client: the
// other calls end with ECANCELED, once; the timer thread does not try to join itself.
TEST_P(RpcClientTest, DestroyedFromADoneOnTheTimerThreadCancelsTheOthers) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends;
  for (int i = 0; i < 3; ++i) c.rpc->call(addr(), kNever, "x", {}, record(ends));
  ASSERT_TRUE(wait_until([&] { return app_.never_seen.load() == 3; }, 5000ms));
  std::atomic<int> first{0};
  std::atomic<bool> destroyed{false};
  c.rpc->call(addr(), kNever, "late", {.timeout = 100ms}, [&](const RpcStatus& s, std::string_view) {
    first.store(s.error);
    c.rpc.reset();
    ends.mark_destroyed();
    destroyed.store(true);
  });
  ASSERT_TRUE(wait_until([&] { return destroyed.load(); }, 5000ms));
  EXPECT_EQ(first.load(), ETIMEDOUT);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  EXPECT_EQ(ends.late(), 0);
}

// A `done` is running on a loop thread (it takes 300 ms) when the client is destroyed on
// the main thread: the destructor returns only after that `done` has, and ends the other
// calls with ECANCELED meanwhile.
TEST_P(RpcClientTest, DestructorWaitsForADoneRunningOnALoopThread) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends;
  for (int i = 0; i < 3; ++i) c.rpc->call(addr(), kNever, "x", {}, record(ends));
  std::atomic<bool> entered{false}, returned{false};
  c.rpc->call(addr(), kHeld, "slow", {}, [&](const RpcStatus&, std::string_view) {
    entered.store(true);
    std::this_thread::sleep_for(300ms);
    returned.store(true);
  });
  ASSERT_TRUE(wait_until([&] { return app_.held_count() == 1; }, 5000ms));
  app_.answer_held();
  ASSERT_TRUE(wait_until([&] { return entered.load(); }, 5000ms));
  destroy(c.rpc, ends);
  EXPECT_TRUE(returned.load());
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  EXPECT_EQ(ends.late(), 0);
}

// 1,200 calls from four threads, answered on two loops; the client is destroyed once a
// few hundred were answered, while each `done` lingers a little on its loop thread. Every
// call ends once (answered or ECANCELED), and none still runs, or starts, after the
// destructor returned.
TEST_P(RpcClientTest, DestroyedUnderLoadEndsEachCallOnceAndNoneAfter) {
  RpcTestClient c(GetParam(), {.default_timeout = 5000ms}, {.max_per_address = 2});
  ASSERT_TRUE(c.engine.start());
  EndRecorder ends(200us);
  std::vector<RpcClient::Done> dones;
  for (int i = 0; i < 1200; ++i) dones.push_back(record(ends));
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int i = t; i < 1200; i += 4) {
        c.rpc->call(addr(), kEcho, "load", {}, std::move(dones[i]));
      }
    });
  }
  for (auto& t : callers) t.join();
  ASSERT_TRUE(wait_until([&] { return ends.ends() >= 200; }, 10000ms));
  destroy(c.rpc, ends);
  std::this_thread::sleep_for(300ms);  // the answers still coming reach a client that is gone
  EXPECT_TRUE(ends.each_once({0, ECANCELED}));
  EXPECT_EQ(ends.late(), 0);
  EXPECT_EQ(ends.ends(), 1200u);
}

INSTANTIATE_TEST_SUITE_P(Backends, RpcClientTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
