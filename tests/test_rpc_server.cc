// SPDX-License-Identifier: MIT
// RpcServer over real loopback sockets, both backends, driven by a raw frame client that
// shares only the frame header encoder with the server: dispatch, statuses, deadlines,
// completions, filters, the limiter, two services, protocol errors and the drain.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "ringnet/proto/peer_pool.h"
#include "ringnet/proto/rpc_client.h"
#include "ringnet/proto/rpc_server.h"
#include "test_support.h"

namespace ringnet::test {
namespace {

using namespace std::chrono_literals;
using proto::RpcCall;
using proto::RpcCallPtr;
using proto::RpcCode;
using proto::RpcExec;
using proto::RpcFrame;
using proto::RpcServer;
using proto::RpcService;
using proto::RpcStatus;
using proto::RpcType;

// One frame as the client reads it.
struct Reply {
  RpcType type = RpcType::kResponse;
  uint16_t flags = 0;
  uint16_t method = 0;
  uint64_t id = 0;
  std::string body;
  RpcCode code() const { return proto::decode_rpc_error_body(body).code; }
  std::string message() const { return proto::decode_rpc_error_body(body).message; }
};

uint64_t be(std::string_view s) {
  uint64_t v = 0;
  for (char ch : s) v = (v << 8) | static_cast<unsigned char>(ch);
  return v;
}

// A frame client over one connection: writes request frames, reads answer frames.
class RawRpc {
 public:
  testing::AssertionResult connect(const SockAddr& addr) { return client_.connect(addr); }

  static std::string frame(uint16_t method, uint64_t id, std::string_view body,
                           uint16_t flags = 0, RpcType type = RpcType::kRequest,
                           std::optional<uint32_t> budget = std::nullopt) {
    RpcFrame f{type, flags, method, id, body};
    if (budget) f.set_budget(*budget);
    std::array<char, proto::kRpcHeaderSize + proto::kRpcBudgetSize> head;
    const size_t n = proto::encode_rpc_head(f, head.data());
    return std::string(head.data(), n) + std::string(body);
  }

  testing::AssertionResult send(uint16_t method, uint64_t id, std::string_view body,
                                std::optional<uint32_t> budget = std::nullopt,
                                RpcType type = RpcType::kRequest) {
    return client_.send_all(frame(method, id, body, 0, type, budget));
  }
  testing::AssertionResult send_raw(std::string_view bytes) { return client_.send_all(bytes); }

  testing::AssertionResult read(Reply* r, Millis timeout = kIoTimeout) {
    std::string head;
    if (auto res = client_.recv_exact(proto::kRpcHeaderSize, &head, timeout); !res) return res;
    if (head.substr(0, 2) != "RN") return testing::AssertionFailure() << "bad magic";
    r->type = static_cast<RpcType>(head[3]);
    r->flags = static_cast<uint16_t>(be(head.substr(4, 2)));
    r->method = static_cast<uint16_t>(be(head.substr(6, 2)));
    r->id = be(head.substr(8, 8));
    const size_t len = be(head.substr(16, 4));
    r->body.clear();
    if (len == 0) return testing::AssertionSuccess();
    return client_.recv_exact(len, &r->body, timeout);
  }

  // Sends one request and reads one answer.
  testing::AssertionResult call(uint16_t method, uint64_t id, std::string_view body, Reply* r,
                                std::optional<uint32_t> budget = std::nullopt) {
    if (auto res = send(method, id, body, budget); !res) return res;
    if (auto res = read(r); !res) return res;
    if (r->id != id) return testing::AssertionFailure() << "answer for id " << r->id;
    return testing::AssertionSuccess();
  }

  Client& socket() { return client_; }

 private:
  Client client_;
};

constexpr uint16_t kEcho = 1;
constexpr uint16_t kStatus = 2;  // body = decimal code: fails with it
constexpr uint16_t kThrow = 3;
constexpr uint16_t kHang = 4;    // async: parked, never answered by the handler
constexpr uint16_t kPoolEcho = 5;
constexpr uint16_t kThreadEcho = 6;  // async: answered from a new thread

// A server with one service "main" on 127.0.0.1:0 and the methods above.
class RpcServerTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {}
  void TearDown() override {
    if (server_) server_->shutdown(0ms);
    for (auto& t : threads_) t.join();
  }

  proto::RpcServiceOptions service_options() {
    return {.name = "main", .listen = {"tcp://127.0.0.1:0"}, .timeout = 5000ms,
            .drain_limit = 2000ms};
  }

  RpcService& make(proto::RpcServiceOptions so) {
    proto::RpcServerOptions options;
    options.engine = test_options(GetParam(), 2);
    server_ = std::make_unique<RpcServer>(options);
    RpcService& svc = server_->add_service(std::move(so));
    EXPECT_TRUE(svc.add_unary("echo", kEcho, [](RpcCall&, std::string_view in, std::string& out) {
      out.assign(in);
      return RpcStatus::ok();
    }).is_ok());
    EXPECT_TRUE(svc.add_unary("status", kStatus, [](RpcCall&, std::string_view in, std::string&) {
      const int code = std::stoi(std::string(in));
      return RpcStatus::make(static_cast<RpcCode>(code), "asked for " + std::string(in));
    }).is_ok());
    EXPECT_TRUE(svc.add_unary("throw", kThrow, [](RpcCall&, std::string_view, std::string&) -> RpcStatus {
      throw std::runtime_error("boom");
    }).is_ok());
    EXPECT_TRUE(svc.add_async("hang", kHang, [this](RpcCallPtr call) {
      std::lock_guard lock(mu_);
      parked_.push_back(std::move(call));
    }).is_ok());
    EXPECT_TRUE(svc.add_unary("pool_echo", kPoolEcho,
                              [](RpcCall&, std::string_view in, std::string& out) {
                                out = "pool:" + std::string(in);
                                return RpcStatus::ok();
                              },
                              {.exec = RpcExec::kPool})
                    .is_ok());
    EXPECT_TRUE(svc.add_async("thread_echo", kThreadEcho, [this](RpcCallPtr call) {
      std::lock_guard lock(mu_);
      threads_.emplace_back([call] { call->reply("thread:" + std::string(call->request())); });
    }).is_ok());
    return svc;
  }

  void start() { ASSERT_TRUE(server_->start().is_ok()); }
  // A client connected to the main service (a failed connect fails the test).
  RawRpc connected() {
    RawRpc c;
    EXPECT_TRUE(c.connect(addr()));
    return c;
  }
  SockAddr addr(const char* service = "main", size_t i = 0) {
    return server_->service(service)->addrs().at(i);
  }
  size_t parked() {
    std::lock_guard lock(mu_);
    return parked_.size();
  }
  RpcCallPtr take_parked() {
    std::lock_guard lock(mu_);
    if (parked_.empty()) return nullptr;
    RpcCallPtr c = parked_.front();
    parked_.erase(parked_.begin());
    return c;
  }

  std::unique_ptr<RpcServer> server_;
  std::mutex mu_;
  std::vector<RpcCallPtr> parked_;
  std::vector<std::thread> threads_;
};

TEST_P(RpcServerTest, DispatchesByIdAndListsMethodsByName) {
  make(service_options());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kEcho, 7, "hello", &r));
  EXPECT_EQ(r.type, RpcType::kResponse);
  EXPECT_EQ(r.method, kEcho);
  EXPECT_EQ(r.body, "hello");
  // rpc.list (id 0) names every method, so a client can call by name.
  ASSERT_TRUE(c.call(0, 8, "", &r));
  ASSERT_EQ(r.type, RpcType::kResponse);
  std::map<std::string, uint16_t> ids;
  std::istringstream lines(r.body);
  std::string line;
  while (std::getline(lines, line)) {
    const auto sp = line.find(' ');
    ids[line.substr(sp + 1)] = static_cast<uint16_t>(std::stoi(line.substr(0, sp)));
  }
  EXPECT_EQ(ids.at("rpc.list"), 0);
  EXPECT_EQ(ids.at("echo"), kEcho);
  EXPECT_EQ(ids.at("pool_echo"), kPoolEcho);
  ASSERT_TRUE(c.call(ids.at("pool_echo"), 9, "x", &r));
  EXPECT_EQ(r.body, "pool:x");
}

TEST_P(RpcServerTest, RegistrationRefusesTakenIdsNamesAndIdZero) {
  RpcService& svc = make(service_options());
  auto h = [](RpcCall&, std::string_view, std::string&) { return RpcStatus::ok(); };
  EXPECT_FALSE(svc.add_unary("other", kEcho, h).is_ok());
  EXPECT_FALSE(svc.add_unary("echo", 99, h).is_ok());
  EXPECT_FALSE(svc.add_unary("zero", 0, h).is_ok());
  EXPECT_TRUE(svc.add_unary("fine", 99, h).is_ok());
}

TEST_P(RpcServerTest, UnknownMethodIsAnErrorAndTheConnectionStays) {
  make(service_options());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(777, 1, "x", &r));
  EXPECT_EQ(r.type, RpcType::kError);
  EXPECT_EQ(r.code(), RpcCode::kUnknownMethod);
  EXPECT_NE(r.message().find("777"), std::string::npos) << r.message();
  ASSERT_TRUE(c.call(kEcho, 2, "still here", &r));
  EXPECT_EQ(r.body, "still here");
  EXPECT_TRUE(eventually([&] { return server_->stats().unknown_method == 1; }));
}

TEST_P(RpcServerTest, EveryStatusCodeTravelsEndToEnd) {
  make(service_options());
  start();
  RawRpc c = connected();
  for (int code = 1; code < proto::kRpcCodeCount; ++code) {
    Reply r;
    ASSERT_TRUE(c.call(kStatus, static_cast<uint64_t>(code), std::to_string(code), &r));
    EXPECT_EQ(r.type, RpcType::kError);
    EXPECT_EQ(r.code(), static_cast<RpcCode>(code));
    EXPECT_EQ(r.message(), "asked for " + std::to_string(code));
  }
}

TEST_P(RpcServerTest, AThrowingHandlerAnswersInternalAndTheServerServesOn) {
  make(service_options());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kThrow, 1, "", &r));
  EXPECT_EQ(r.code(), RpcCode::kInternal);
  EXPECT_NE(r.message().find("boom"), std::string::npos);
  ASSERT_TRUE(c.call(kEcho, 2, "ok", &r));
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(server_->stats().handler_exceptions, 1u);
}

TEST_P(RpcServerTest, HandlersCompletedFromOtherThreads) {
  make(service_options());
  start();
  RawRpc c = connected();
  // Several in flight at once on one connection: answers match by id.
  for (uint64_t id = 1; id <= 20; ++id) {
    ASSERT_TRUE(c.send(id % 2 ? kPoolEcho : kThreadEcho, id, std::to_string(id)));
  }
  std::map<uint64_t, std::string> got;
  for (int i = 0; i < 20; ++i) {
    Reply r;
    ASSERT_TRUE(c.read(&r));
    got[r.id] = r.body;
  }
  ASSERT_EQ(got.size(), 20u);
  for (uint64_t id = 1; id <= 20; ++id) {
    EXPECT_EQ(got[id], (id % 2 ? "pool:" : "thread:") + std::to_string(id));
  }
}

// The deadline is the smallest of the service's timeout, the method's and the caller's
// budget; each case makes a different one the smallest.
struct DeadlineCase {
  int service_ms, method_ms;
  std::optional<uint32_t> budget_ms;
  int expect_ms;
};

class RpcDeadlineTest : public RpcServerTest {
 protected:
  void run(DeadlineCase d) {
    auto so = service_options();
    so.timeout = std::chrono::milliseconds(d.service_ms);
    RpcService& svc = make(so);
    ASSERT_TRUE(svc.add_async("hang_timed", 40,
                              [this](RpcCallPtr call) {
                                std::lock_guard lock(mu_);
                                parked_.push_back(std::move(call));
                              },
                              {.timeout = std::chrono::milliseconds(d.method_ms)})
                    .is_ok());
    start();
    RawRpc c = connected();
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(c.send(40, 1, "x", d.budget_ms));
    Reply r;
    ASSERT_TRUE(c.read(&r, 10000ms));
    const auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
    EXPECT_EQ(r.code(), RpcCode::kDeadlineExceeded) << r.message();
    // Slack: never before the deadline; well before the next-smallest one.
    EXPECT_GE(took.count(), d.expect_ms - 5);
    EXPECT_LT(took.count(), d.expect_ms + 900);
    // The handler's context reports it, and its late answer is refused and counted.
    ASSERT_TRUE(eventually([&] { return parked() == 1; }));
    RpcCallPtr call = take_parked();
    EXPECT_TRUE(call->cancelled());
    EXPECT_FALSE(call->reply("too late"));
    EXPECT_EQ(server_->stats().late_completions, 1u);
    // Counted after the answer went out: wait for it.
    EXPECT_TRUE(eventually([&] { return server_->stats().deadline_exceeded == 1; }));
    // No second answer comes for that id: the next frame is the next call's.
    ASSERT_TRUE(c.call(kEcho, 2, "next", &r));
    EXPECT_EQ(r.body, "next");
  }
};

TEST_P(RpcDeadlineTest, ServiceTimeoutSmallest) { run({200, 3000, 4000, 200}); }
TEST_P(RpcDeadlineTest, MethodTimeoutSmallest) { run({3000, 200, 4000, 200}); }
TEST_P(RpcDeadlineTest, CallerBudgetSmallest) { run({3000, 4000, 200, 200}); }
TEST_P(RpcDeadlineTest, NoBudgetUsesTheTimeouts) { run({3000, 250, std::nullopt, 250}); }

TEST_P(RpcServerTest, ZeroBudgetIsRefusedWithoutRunningTheHandler) {
  make(service_options());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kHang, 1, "x", &r, 0u));
  EXPECT_EQ(r.code(), RpcCode::kDeadlineExceeded);
  EXPECT_EQ(parked(), 0u);
}

TEST_P(RpcServerTest, ASecondCompletionIsRefusedAndCounted) {
  make(service_options());
  start();
  RawRpc c = connected();
  ASSERT_TRUE(c.send(kHang, 1, "x"));
  ASSERT_TRUE(eventually([&] { return parked() == 1; }));
  RpcCallPtr call = take_parked();
  EXPECT_TRUE(call->reply("first"));
  EXPECT_FALSE(call->fail(RpcCode::kInternal, "second"));
  EXPECT_FALSE(call->reply("third"));
  EXPECT_FALSE(call->cancelled());
  Reply r;
  ASSERT_TRUE(c.read(&r));
  EXPECT_EQ(r.body, "first");
  EXPECT_EQ(server_->stats().double_completions, 2u);
  ASSERT_TRUE(c.call(kEcho, 2, "next", &r));  // nothing else was sent for id 1
  EXPECT_EQ(r.body, "next");
}

TEST_P(RpcServerTest, ADroppedCallIsAnsweredInternalAtOnce) {
  auto so = service_options();
  RpcService& svc = make(so);
  ASSERT_TRUE(svc.add_async("drop", 41, [](RpcCallPtr) {}).is_ok());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(41, 1, "x", &r));
  EXPECT_EQ(r.code(), RpcCode::kInternal);
}

// Records the order its hooks ran in.
class OrderFilter : public proto::RpcServerFilter {
 public:
  OrderFilter(std::string name, std::vector<std::string>* log, std::mutex* mu,
              std::optional<RpcCode> refuse = std::nullopt)
      : name_(std::move(name)), log_(log), mu_(mu), refuse_(refuse) {}
  RpcStatus on_request(RpcCall& call) override {
    note("req:" + name_);
    if (refuse_) return RpcStatus::make(*refuse_, "refused by " + name_);
    if (name_ == "a") call.set_request(std::string(call.request()) + "+a");
    return RpcStatus::ok();
  }
  void on_response(RpcCall&, RpcStatus&, std::string& body) override {
    note("resp:" + name_);
    body += "+" + name_;
  }
  void on_complete(const RpcCall&, const RpcStatus& st, std::chrono::nanoseconds latency) override {
    note("done:" + name_ + ":" + proto::rpc_code_name(st.code) + (latency.count() > 0 ? "" : ":0ns"));
  }

 private:
  void note(std::string s) {
    std::lock_guard lock(*mu_);
    log_->push_back(std::move(s));
  }
  std::string name_;
  std::vector<std::string>* log_;
  std::mutex* mu_;
  std::optional<RpcCode> refuse_;
};

TEST_P(RpcServerTest, FiltersRunInOrderAndCanShortCircuit) {
  std::vector<std::string> log;
  std::mutex mu;
  RpcService& svc = make(service_options());
  server_->add_filter(std::make_shared<OrderFilter>("a", &log, &mu));
  svc.add_filter(std::make_shared<OrderFilter>("b", &log, &mu));
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kEcho, 1, "x", &r));
  EXPECT_EQ(r.body, "x+a+b+a");  // a changed the request; b then a changed the answer
  auto snapshot = [&] {
    std::lock_guard lock(mu);
    return log;
  };
  EXPECT_TRUE(eventually([&] { return snapshot().size() == 6; }));
  EXPECT_EQ(snapshot(), (std::vector<std::string>{"req:a", "req:b", "resp:b", "resp:a",
                                                  "done:b:OK", "done:a:OK"}));
}

TEST_P(RpcServerTest, AFilterThatRefusesSkipsLaterFiltersAndTheHandler) {
  std::vector<std::string> log;
  std::mutex mu;
  RpcService& svc = make(service_options());
  svc.add_filter(std::make_shared<OrderFilter>("a", &log, &mu));
  svc.add_filter(std::make_shared<OrderFilter>("deny", &log, &mu, RpcCode::kPermissionDenied));
  svc.add_filter(std::make_shared<OrderFilter>("c", &log, &mu));
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kHang, 1, "x", &r));
  EXPECT_EQ(r.code(), RpcCode::kPermissionDenied);
  EXPECT_EQ(r.message(), "refused by deny");
  EXPECT_EQ(parked(), 0u);  // the handler never ran
  std::lock_guard lock(mu);
  EXPECT_EQ(log, (std::vector<std::string>{"req:a", "req:deny", "resp:a", "done:a:PERMISSION_DENIED"}));
}

TEST_P(RpcServerTest, ConcurrencyLimitRefusesOverItsLimit) {
  RpcService& svc = make(service_options());
  auto limit = std::make_shared<proto::RpcConcurrencyLimit>(2);
  svc.add_filter(limit);
  start();
  RawRpc c = connected();
  ASSERT_TRUE(c.send(kHang, 1, "a"));
  ASSERT_TRUE(c.send(kHang, 2, "b"));
  ASSERT_TRUE(eventually([&] { return parked() == 2; }));
  Reply r;
  ASSERT_TRUE(c.call(kEcho, 3, "c", &r));
  EXPECT_EQ(r.code(), RpcCode::kResourceExhausted);
  EXPECT_EQ(limit->refused(), 1u);
  ASSERT_TRUE(take_parked()->reply("one"));
  ASSERT_TRUE(c.read(&r));
  EXPECT_EQ(r.id, 1u);
  EXPECT_TRUE(eventually([&] { return limit->in_flight() == 1; }));
  ASSERT_TRUE(c.call(kEcho, 4, "d", &r));
  EXPECT_EQ(r.body, "d");
  ASSERT_TRUE(take_parked()->reply("two"));
  ASSERT_TRUE(c.read(&r));
  EXPECT_EQ(r.id, 2u);
  EXPECT_TRUE(eventually([&] { return limit->in_flight() == 0; }));
}

TEST_P(RpcServerTest, TwoServicesOnTwoPortsHaveTheirOwnMethods) {
  RpcService& a = make(service_options());
  (void)a;
  RpcService& b = server_->add_service({.name = "other", .listen = {"tcp://127.0.0.1:0"}});
  ASSERT_TRUE(b.add_unary("echo", kEcho, [](RpcCall& call, std::string_view in, std::string& out) {
    out = call.service().name() + ":" + std::string(in);
    return RpcStatus::ok();
  }).is_ok());
  start();
  EXPECT_NE(addr("main").port(), addr("other").port());
  RawRpc ca, cb;
  ASSERT_TRUE(ca.connect(addr("main")));
  ASSERT_TRUE(cb.connect(addr("other")));
  Reply r;
  ASSERT_TRUE(ca.call(kEcho, 1, "x", &r));
  EXPECT_EQ(r.body, "x");
  ASSERT_TRUE(cb.call(kEcho, 1, "x", &r));
  EXPECT_EQ(r.body, "other:x");
  ASSERT_TRUE(cb.call(kThrow, 2, "", &r));  // not a method of "other"
  EXPECT_EQ(r.code(), RpcCode::kUnknownMethod);
}

TEST_P(RpcServerTest, MalformedFramesCloseOnlyTheirConnection) {
  make(service_options());
  start();
  RawRpc good, bad, confused;
  ASSERT_TRUE(good.connect(addr()));
  ASSERT_TRUE(bad.connect(addr()));
  ASSERT_TRUE(confused.connect(addr()));
  ASSERT_TRUE(bad.send_raw("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_NE(bad.socket().wait_end(5000ms), End::kData);
  ASSERT_TRUE(confused.send(kEcho, 1, "x", std::nullopt, RpcType::kResponse));
  EXPECT_NE(confused.socket().wait_end(5000ms), End::kData);
  Reply r;
  ASSERT_TRUE(good.call(kEcho, 1, "fine", &r));
  EXPECT_EQ(r.body, "fine");
  EXPECT_TRUE(eventually([&] { return server_->stats().protocol_errors == 2; }));
}

TEST_P(RpcServerTest, MetricsNameEveryMethodWithItsCodes) {
  make(service_options());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kEcho, 1, "12345", &r));
  ASSERT_TRUE(c.call(kStatus, 2, "5", &r));
  MetricsWriter w;
  EXPECT_TRUE(eventually([&] {
    MetricsWriter m;
    server_->write_metrics(m);
    return m.text().find("ringnet_rpc_responses_total{service=\"main\",method=\"status\",code=\"NOT_FOUND\"} 1") !=
           std::string::npos;
  }));
  server_->write_metrics(w);
  const std::string& t = w.text();
  EXPECT_NE(t.find("ringnet_rpc_requests_total{service=\"main\",method=\"echo\"} 1"), std::string::npos) << t;
  EXPECT_NE(t.find("ringnet_rpc_bytes_total{service=\"main\",method=\"echo\",direction=\"in\",stage=\"body\"} 5"),
            std::string::npos);
  EXPECT_NE(t.find("ringnet_rpc_latency_seconds_count{service=\"main\",method=\"echo\"} 1"), std::string::npos);
  EXPECT_EQ(w.duplicates(), 0);
}

// Compressed requests are inflated before the handler; the answer goes back with the same
// codec when it is over the threshold, raw below it.
TEST_P(RpcServerTest, ZstdAndLz4RoundTripsAndSmallBodiesStayRaw) {
  make(service_options());
  start();
  RawRpc c = connected();
  const std::string big = make_payload(64 * 1024, 3) + std::string(64 * 1024, 'z');
  uint64_t id = 1;
  for (auto codec : {proto::RpcCompression::kZstd, proto::RpcCompression::kLz4}) {
    std::string packed;
    ASSERT_EQ(proto::rpc_compress(big, {.codec = codec, .threshold = 1024}, packed), codec);
    ASSERT_LT(packed.size(), big.size());
    ASSERT_TRUE(c.send_raw(RawRpc::frame(kEcho, id, packed,
                                         proto::rpc_flags_with_compression(0, codec))));
    Reply r;
    ASSERT_TRUE(c.read(&r));
    EXPECT_EQ(r.id, id);
    ASSERT_EQ(r.type, RpcType::kResponse);
    ASSERT_EQ((r.flags & proto::kRpcFlagCompressionMask) >> proto::kRpcFlagCompressionShift,
              static_cast<int>(codec));
    std::string back;
    ASSERT_TRUE(proto::rpc_decompress(static_cast<uint8_t>(codec), r.body, big.size(), back));
    EXPECT_TRUE(same_bytes(big, back));
    ++id;
    // A small answer to a compressed request goes back raw.
    ASSERT_TRUE(proto::rpc_compress(std::string(2000, 'a'), {.codec = codec, .threshold = 1}, packed) == codec);
    ASSERT_TRUE(c.send_raw(RawRpc::frame(0, id, packed, proto::rpc_flags_with_compression(0, codec))));
    ASSERT_TRUE(c.read(&r));  // rpc.list: a short answer, under the 1 KiB threshold
    EXPECT_EQ(r.type, RpcType::kResponse);
    EXPECT_EQ(r.flags & proto::kRpcFlagCompressionMask, 0);
    EXPECT_NE(r.body.find("1 echo\n"), std::string::npos) << r.body;
    ++id;
  }
  // Below the threshold nothing is compressed by a sender: a plain frame stays plain.
  Reply r;
  ASSERT_TRUE(c.call(kEcho, id, "short", &r));
  EXPECT_EQ(r.flags, 0);
  EXPECT_EQ(r.body, "short");
}

TEST_P(RpcServerTest, ACompressionBombClosesItsConnectionOnly) {
  auto so = service_options();
  so.max_decompressed = 1024 * 1024;
  make(so);
  start();
  RawRpc bomber, other;
  ASSERT_TRUE(bomber.connect(addr()));
  ASSERT_TRUE(other.connect(addr()));
  std::string packed;
  const std::string zeros(64 * 1024 * 1024, '\0');  // 64 MiB of zeros: a few KiB packed
  ASSERT_EQ(proto::rpc_compress(zeros, {.codec = proto::RpcCompression::kZstd}, packed),
            proto::RpcCompression::kZstd);
  ASSERT_LT(packed.size(), 64u * 1024);
  ASSERT_TRUE(bomber.send_raw(RawRpc::frame(kEcho, 1, packed,
                                            proto::rpc_flags_with_compression(0, proto::RpcCompression::kZstd))));
  Reply r;
  ASSERT_TRUE(bomber.read(&r));
  EXPECT_EQ(r.code(), RpcCode::kResourceExhausted);
  EXPECT_NE(bomber.socket().wait_end(5000ms), End::kData);
  // Garbage that claims to be lz4 is a bad argument, not a bomb: that connection stays.
  ASSERT_TRUE(other.send_raw(RawRpc::frame(kEcho, 2, std::string("\0\0\0\x10garbage!", 12),
                                           proto::rpc_flags_with_compression(0, proto::RpcCompression::kLz4))));
  ASSERT_TRUE(other.read(&r));
  EXPECT_EQ(r.code(), RpcCode::kInvalidArgument);
  ASSERT_TRUE(other.call(kEcho, 3, "alive", &r));
  EXPECT_EQ(r.body, "alive");
  EXPECT_TRUE(eventually([&] { return server_->stats().decompress_refused == 2; }));
}

// Drain: calls in flight when shutdown begins finish or are cancelled at the drain limit;
// requests read afterwards are refused UNAVAILABLE; every request the server read gets
// exactly one answer before its connection ends.
TEST_P(RpcServerTest, ShutdownAnswersEveryCallItRead) {
  auto so = service_options();
  so.drain_limit = 300ms;
  RpcService& svc = make(so);
  ASSERT_TRUE(svc.add_unary("slow", 42,
                            [](RpcCall&, std::string_view in, std::string& out) {
                              std::this_thread::sleep_for(50ms);
                              out.assign(in);
                              return RpcStatus::ok();
                            },
                            {.exec = RpcExec::kPool})
                  .is_ok());
  start();
  constexpr int kConns = 4;
  std::vector<RawRpc> clients(kConns);
  for (auto& c : clients) ASSERT_TRUE(c.connect(addr()));
  // Each connection: one hanging call, two slow ones, then echoes.
  uint64_t next_id = 1;
  std::vector<std::vector<uint64_t>> sent(kConns);
  for (int i = 0; i < kConns; ++i) {
    for (uint16_t m : {kHang, uint16_t{42}, uint16_t{42}, kEcho, kEcho}) {
      ASSERT_TRUE(clients[static_cast<size_t>(i)].send(m, next_id, "v" + std::to_string(next_id)));
      sent[static_cast<size_t>(i)].push_back(next_id++);
    }
  }
  ASSERT_TRUE(eventually([&] { return parked() == kConns; }));
  std::thread stopper([&] { server_->shutdown(5000ms); });
  // A request sent during the drain is refused, not dropped.
  // Usually read once the drain began (then refused UNAVAILABLE), else served: either
  // way it gets exactly one answer, which is what is asserted.
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(clients[0].send(kEcho, 9999, "late"));
  sent[0].push_back(9999);
  std::map<RpcCode, int> codes;
  for (int i = 0; i < kConns; ++i) {
    std::map<uint64_t, int> answers;
    Reply r;
    while (clients[static_cast<size_t>(i)].read(&r, 10000ms)) {
      answers[r.id]++;
      codes[r.type == RpcType::kResponse ? RpcCode::kOk : r.code()]++;
    }
    for (uint64_t id : sent[static_cast<size_t>(i)]) {
      EXPECT_EQ(answers[id], 1) << "connection " << i << " id " << id;
    }
  }
  stopper.join();
  EXPECT_EQ(codes[RpcCode::kCancelled], kConns);  // the hanging calls, at the drain limit
  EXPECT_GE(codes[RpcCode::kOk], kConns * 4 - 1);
  server_.reset();
}

// A reset connection cancels its calls. (A FIN alone does not: a half-closed peer may
// still read the answer, and the engine keeps a held connection for it.)
TEST_P(RpcServerTest, AResetConnectionCancelsItsCalls) {
  make(service_options());
  start();
  {
    RawRpc c = connected();
    ASSERT_TRUE(c.send(kHang, 1, "x"));
    ASSERT_TRUE(eventually([&] { return parked() == 1; }));
    c.socket().reset();
  }
  RpcCallPtr call = take_parked();
  EXPECT_TRUE(eventually([&] { return call->cancelled(); }));
  EXPECT_FALSE(call->reply("nobody listens"));
  EXPECT_TRUE(eventually([&] { return server_->stats().cancelled == 1; }));
}

TEST_P(RpcServerTest, AnInlineHandlerThatRepliesItselfIsNotADoubleCompletion) {
  RpcService& svc = make(service_options());
  ASSERT_TRUE(svc.add_unary("self", 43, [](RpcCall& call, std::string_view, std::string&) {
    call.reply("said it myself");
    return RpcStatus::ok();
  }).is_ok());
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(43, 1, "", &r));
  EXPECT_EQ(r.body, "said it myself");
  ASSERT_TRUE(c.call(kEcho, 2, "next", &r));  // exactly one answer came for id 1
  EXPECT_EQ(r.body, "next");
  EXPECT_EQ(server_->stats().double_completions, 0u);
}

TEST_P(RpcServerTest, HugeTimeoutsDoNotOverflowTheDeadline) {
  auto so = service_options();
  so.timeout = std::chrono::milliseconds::max();
  make(so);
  start();
  RawRpc c = connected();
  Reply r;
  ASSERT_TRUE(c.call(kEcho, 1, "fine", &r));
  EXPECT_EQ(r.body, "fine");
  ASSERT_TRUE(c.call(kHang, 2, "x", &r, 100u));
  EXPECT_EQ(r.code(), RpcCode::kDeadlineExceeded);
}

TEST_P(RpcServerTest, ShutdownFromAHandlerDrainsWithoutDeadlock) {
  for (RpcExec exec : {RpcExec::kInline, RpcExec::kPool}) {
    RpcService& svc = make(service_options());
    ASSERT_TRUE(svc.add_unary("quit", 44,
                              [this](RpcCall&, std::string_view, std::string& out) {
                                server_->shutdown(2000ms);  // returns at once from here
                                out = "bye";
                                return RpcStatus::ok();
                              },
                              {.exec = exec})
                    .is_ok());
    start();
    RawRpc c = connected();
    Reply r;
    ASSERT_TRUE(c.call(44, 1, "", &r));
    EXPECT_EQ(r.body, "bye");
    Watchdog dog(10000ms, "the drain started from a handler");
    server_->wait();  // the drain ends: nothing waits for itself
    EXPECT_NE(c.socket().wait_end(5000ms), End::kData);
    server_.reset();
  }
}

TEST_P(RpcServerTest, AShutdownBeforeStartIsKeptForStart) {
  make(service_options());
  server_->shutdown(1000ms);  // a signal that came while starting
  start();
  Watchdog dog(10000ms, "a drain asked for before start");
  server_->wait();
  RawRpc c;
  EXPECT_FALSE(c.connect(addr()));  // it stopped listening
}

TEST_P(RpcServerTest, TheDrainEndsWhenTheLastCallsDeadlinePasses) {
  auto so = service_options();
  so.drain_limit = 5000ms;
  make(so);
  start();
  RawRpc c = connected();
  ASSERT_TRUE(c.send(kHang, 1, "x", 200u));
  ASSERT_TRUE(eventually([&] { return parked() == 1; }));
  const auto t0 = std::chrono::steady_clock::now();
  server_->shutdown(10000ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 3000ms);  // woken by the deadline, not by the 5 s drain limit
  Reply r;
  ASSERT_TRUE(c.read(&r));
  EXPECT_EQ(r.code(), RpcCode::kDeadlineExceeded);
}

// Two servers in one process: an answer completed on one server's loop thread for the
// other's call goes to the other's connection.
TEST_P(RpcServerTest, TwoServersNeverCrossTheirConnections) {
  make(service_options());
  start();
  proto::RpcServerOptions other_options;
  other_options.engine = test_options(GetParam(), 2);
  RpcServer other(other_options);
  RpcService& svc = other.add_service({.name = "other", .listen = {"tcp://127.0.0.1:0"}});
  ASSERT_TRUE(svc.add_unary("finish_parked", 1, [this](RpcCall&, std::string_view, std::string& out) {
    RpcCallPtr parked = take_parked();
    out = parked && parked->reply("for-main") ? "done" : "none";
    return RpcStatus::ok();
  }).is_ok());
  ASSERT_TRUE(other.start().is_ok());
  RawRpc main_client, other_client;
  ASSERT_TRUE(main_client.connect(addr()));
  ASSERT_TRUE(other_client.connect(svc.addrs().at(0)));
  ASSERT_TRUE(main_client.send(kHang, 7, "x"));
  ASSERT_TRUE(eventually([&] { return parked() == 1; }));
  Reply r;
  ASSERT_TRUE(other_client.call(1, 1, "", &r));
  EXPECT_EQ(r.body, "done");
  ASSERT_TRUE(main_client.read(&r));
  EXPECT_EQ(r.id, 7u);
  EXPECT_EQ(r.body, "for-main");
  other.shutdown(0ms);
}

// ringnet's own client against the server: the client's timeout travels as the budget,
// so the server ends the call at the same moment (its own timeout is 5 s); compressed
// calls round-trip; error codes arrive as codes.
TEST_P(RpcServerTest, RpcClientAndServerAgree) {
  make(service_options());
  start();
  proto::RpcClientHandler handler;
  Engine engine(handler, test_options(GetParam(), 1));
  proto::PeerPool pool(engine);
  proto::RpcClient rpc(pool, {.default_timeout = 5000ms,
                              .compression = {.codec = proto::RpcCompression::kLz4,
                                              .threshold = 512}});
  handler.attach(pool, rpc);
  ASSERT_TRUE(engine.start().is_ok());
  const std::string address = "tcp://" + addr().to_string();
  struct Result {
    std::promise<std::pair<proto::RpcStatus, std::string>> p;
    proto::RpcClient::Done done() {
      return [this](const proto::RpcStatus& s, std::string_view b) { p.set_value({s, std::string(b)}); };
    }
  };
  Result hang, big, status;
  const auto t0 = std::chrono::steady_clock::now();
  rpc.call(address, kHang, "x", {.timeout = 300ms}, hang.done());
  const std::string body = make_payload(100000, 9) + std::string(100000, 'q');
  rpc.call(address, kEcho, body, {}, big.done());
  rpc.call(address, kStatus, "5", {}, status.done());
  auto got = big.p.get_future().get();
  EXPECT_TRUE(got.first.is_ok()) << got.first.to_string();
  EXPECT_TRUE(same_bytes(body, got.second));
  got = status.p.get_future().get();
  EXPECT_EQ(got.first.code, RpcCode::kNotFound);
  EXPECT_EQ(got.first.message, "asked for 5");
  got = hang.p.get_future().get();
  EXPECT_EQ(got.first.code, RpcCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3000ms);
  // The server ended it by the budget the client sent, not by its own 5 s timeout.
  EXPECT_TRUE(eventually([&] { return server_->stats().deadline_exceeded == 1; }, 3000ms));
  MetricsWriter w;
  server_->write_metrics(w);
  // The echo came in compressed and went out compressed: fewer wire bytes than body bytes.
  const std::string& t = w.text();
  EXPECT_NE(t.find("method=\"echo\",direction=\"in\",stage=\"body\"} 200000"), std::string::npos) << t;
  EXPECT_EQ(t.find("method=\"echo\",direction=\"in\",stage=\"wire\"} 200000"), std::string::npos);
  engine.stop();
  engine.wait();
}

INSTANTIATE_TEST_SUITE_P(Backends, RpcServerTest, testing::ValuesIn(test_backends()),
                         backend_param_name);
INSTANTIATE_TEST_SUITE_P(Backends, RpcDeadlineTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
