// RpcClient over loopback on both backends, against a FramedHandler<RpcFrameCodec> test
// server: 1,000 calls from 50 threads share one connection; responses sent out of order
// reach their callers; a missing response times out only its own call, after the
// smallest of the default, method and call timeouts; an idempotent call survives its
// connection dying (one retry, a second connection) while a plain call fails at once;
// error frames, cancellation, and "every call ends exactly once".
#include <gtest/gtest.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/peer_pool.h>
#include <ringnet/proto/rpc_client.h>
#include <ringnet/proto/rpc_frame.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

using namespace ringnet::proto;

constexpr uint16_t kEcho = 1, kReversedBatch = 2, kError = 5, kResetOnce = 7, kNever = 9;

// method 1 echo; 2 held until 10 arrived, then answered last-first; 5 an error frame;
// 7 closes the connection the first time (reset_next), echoes after; 9 never answered.
class TestRpcServer : public FramedHandler<RpcFrameCodec> {
 public:
  Action on_message(Conn& c, const RpcFrame& f) override {
    RpcFrame reply = f;
    reply.type = RpcType::kResponse;
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
        reply.type = RpcType::kError;
        reply.body = "no such key";
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      case kResetOnce:
        if (reset_next.exchange(false)) return Action::kClose;
        return codec().encode(reply, c).is_ok() ? Action::kNone : Action::kClose;
      default:
        return Action::kNone;  // kNever
    }
  }
  std::atomic<bool> reset_next{false};

 private:
  std::vector<std::pair<uint64_t, std::string>> held_;  // one loop in these tests
};

struct RpcTestClient {
  RpcTestClient(Backend backend, RpcClientOptions o)
      : engine(handler, test_options(backend, 2)),
        pool(std::make_unique<PeerPool>(engine)),
        rpc(std::make_unique<RpcClient>(*pool, o)) {
    handler.attach(*pool, *rpc);
  }
  ~RpcTestClient() {
    engine.stop();
    engine.wait();  // every connection's on_close reached the client and the pool
    rpc.reset();
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
  Status status;
  std::string body;
  Clock::time_point at;
  RpcClient::Done done() {
    return [this](const Status& s, std::string_view b) {
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
        c.rpc->call(addr(), kEcho, body, {}, [&, body](const Status& s, std::string_view b) {
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
    EXPECT_TRUE(out[i]->status) << out[i]->status.message();
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
  EXPECT_EQ(by_call.status.code(), ETIMEDOUT);
  EXPECT_EQ(by_method.status.code(), ETIMEDOUT);
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
  EXPECT_TRUE(retried.status) << retried.status.message();
  EXPECT_EQ(retried.body, "again");
  EXPECT_EQ(c.rpc->stats().retries, 1u);
  EXPECT_EQ(server_.engine().stats().accepted, 2u);

  app_.reset_next.store(true);
  Outcome plain;
  Clock::time_point t0 = Clock::now();
  c.rpc->call(addr(), kResetOnce, "once", {}, plain.done());
  ASSERT_TRUE(plain.wait());
  EXPECT_EQ(plain.status.code(), ECONNRESET) << plain.status.message();
  EXPECT_LT(plain.at - t0, 1000ms);  // at once, not at the 3 s timeout
  EXPECT_EQ(c.rpc->stats().connection_failures, 1u);
}

TEST_P(RpcClientTest, ErrorFramesCancelAndEveryCallEndsOnce) {
  RpcTestClient c(GetParam(), {.default_timeout = 300ms});
  ASSERT_TRUE(c.engine.start());
  Outcome err;
  c.rpc->call(addr(), kError, "k", {}, err.done());
  ASSERT_TRUE(err.wait());
  EXPECT_EQ(err.status.code(), EPROTO);
  EXPECT_NE(err.status.message().find("no such key"), std::string::npos);

  Outcome cancelled;
  uint64_t id = c.rpc->call(addr(), kNever, "x", {}, cancelled.done());
  EXPECT_TRUE(c.rpc->cancel(id));
  EXPECT_FALSE(c.rpc->cancel(id));  // ended already
  ASSERT_TRUE(cancelled.wait());
  EXPECT_EQ(cancelled.status.code(), ECANCELED);
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
  EXPECT_EQ(o.status.code(), ECONNREFUSED) << o.status.message();
}

INSTANTIATE_TEST_SUITE_P(Backends, RpcClientTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
