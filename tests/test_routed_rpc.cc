// SPDX-License-Identifier: MIT
// RoutedRpcClient over three real RpcServers on loopback, both backends: a key keeps its
// node; a dead node's keys move to their next node and come back when probes readmit it;
// bounded load spreads a hot key; the destructor ends every call once.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ringnet/proto/hash_router.h"
#include "ringnet/proto/routed_rpc.h"
#include "ringnet/proto/rpc_server.h"
#include "test_support.h"

namespace ringnet::test {

using namespace std::chrono_literals;
using proto::HashRouter;
using proto::RoutedRpcClient;
using proto::RpcCallPtr;
using proto::RpcCode;
using proto::RpcServer;
using proto::RpcStatus;

namespace {

constexpr uint16_t kWho = 1;   // answers the server's name
constexpr uint16_t kHold = 2;  // parked until the test releases it, then answers the name

// One RpcServer named `name`, on `listen` (127.0.0.1:0 the first time).
struct RpcNode {
  RpcNode(Backend backend, std::string n, std::string listen = "tcp://127.0.0.1:0") : name(std::move(n)) {
    proto::RpcServerOptions options;
    options.engine = test_options(backend, 1);
    server = std::make_unique<RpcServer>(options);
    auto& svc = server->add_service({.name = "node", .listen = {listen}});
    EXPECT_TRUE(svc.add_unary("who", kWho, [this](proto::RpcCall&, std::string_view, std::string& out) {
      out = name;
      return RpcStatus::ok();
    }));
    EXPECT_TRUE(svc.add_async("hold", kHold, [this](RpcCallPtr call) {
      std::lock_guard lock(mu);
      held.push_back(std::move(call));
    }));
    EXPECT_TRUE(server->start());
    address = "tcp://" + server->service("node")->addrs().at(0).to_string();
  }
  ~RpcNode() { stop(); }
  void stop() {
    if (!server) return;
    release();
    server->shutdown(0ms);
    server->wait();
    server.reset();
  }
  size_t holding() {
    std::lock_guard lock(mu);
    return held.size();
  }
  void release() {
    std::lock_guard lock(mu);
    for (auto& c : held) c->reply(name);
    held.clear();
  }
  std::string name, address;
  std::unique_ptr<RpcServer> server;
  std::mutex mu;
  std::vector<RpcCallPtr> held;
};

// The client side: engine, pool, RpcClient, a router over the nodes, the routed client.
struct RoutedClient {
  RoutedClient(Backend backend, proto::HashRouterOptions ro, proto::RoutedRpcOptions o)
      : engine(handler, test_options(backend, 1)), pool(engine), rpc(pool, {.max_attempts = 1}),
        router(ro) {
    handler.attach(pool, rpc);
    EXPECT_TRUE(engine.start());
    routed = std::make_unique<RoutedRpcClient>(rpc, router, o);
  }
  ~RoutedClient() {
    routed.reset();
    engine.stop();
    engine.wait();
  }
  proto::RpcClientHandler handler;
  Engine engine;
  proto::PeerPool pool;
  proto::RpcClient rpc;
  HashRouter router;
  std::unique_ptr<RoutedRpcClient> routed;
};

// Outcomes of many calls, by index.
struct Results {
  struct One {
    int ends = 0;
    RpcCode code = RpcCode::kOk;
    std::string body, node;
  };
  std::mutex mu;
  std::map<size_t, One> by;
  proto::RoutedRpcClient::Done done(size_t i) {
    return [this, i](const RpcStatus& s, std::string_view b, const std::string& node) {
      std::lock_guard lock(mu);
      One& o = by[i];
      ++o.ends;
      o.code = s.code;
      o.body = std::string(b);
      o.node = node;
    };
  }
  bool all_ended(size_t n) {
    return eventually([&] {
      std::lock_guard lock(mu);
      if (by.size() < n) return false;
      for (auto& [i, o] : by)
        if (o.ends == 0) return false;
      return true;
    });
  }
  One get(size_t i) {
    std::lock_guard lock(mu);
    return by[i];
  }
};

std::string key(size_t i) { return "key-" + std::to_string(i); }

class RoutedRpc : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    for (const char* n : {"a", "b", "c"}) nodes_.push_back(std::make_unique<RpcNode>(GetParam(), n));
  }
  std::vector<std::string> addresses() {
    std::vector<std::string> out;
    for (auto& n : nodes_) out.push_back(n->address);
    return out;
  }
  std::string name_of(const std::string& address) {
    for (auto& n : nodes_)
      if (n->address == address) return n->name;
    return "?";
  }
  std::vector<std::unique_ptr<RpcNode>> nodes_;
};

}  // namespace

// Each key is answered by the node the router picks for it, every time; keys use all nodes.
TEST_P(RoutedRpc, AKeyKeepsItsNode) {
  RoutedClient c(GetParam(), {}, {});
  c.router.set_nodes(addresses());
  Results r;
  constexpr size_t kKeys = 40;
  for (size_t i = 0; i < 2 * kKeys; ++i) c.routed->call(key(i % kKeys), kWho, "", {}, r.done(i));
  ASSERT_TRUE(r.all_ended(2 * kKeys));
  std::map<std::string, int> per_node;
  for (size_t i = 0; i < 2 * kKeys; ++i) {
    auto o = r.get(i);
    ASSERT_EQ(o.code, RpcCode::kOk) << i;
    ASSERT_EQ(o.body, name_of(c.router.pick(key(i % kKeys)))) << key(i % kKeys);
    ASSERT_EQ(o.node, c.router.pick(key(i % kKeys)));
    ++per_node[o.body];
  }
  EXPECT_EQ(per_node.size(), 3u);
  EXPECT_EQ(c.routed->stats().calls, 2 * kKeys);
  EXPECT_EQ(c.routed->stats().in_flight, 0u);
}

// A node that stops: its keys' idempotent calls go to their next node at once, the node is
// ejected, other keys stay put; back on the same port, probes readmit it and its keys return.
TEST_P(RoutedRpc, ADeadNodesKeysMoveAndComeBack) {
  std::string dead_address = nodes_[1]->address;
  nodes_[1]->stop();
  // The first probe comes 300 ms after the client starts: the calls below meet the dead
  // node before any probe could eject it.
  RoutedClient c(GetParam(), {.eject_after = 3, .readmit_after = 1},
                 {.probe_interval = 300ms, .probe_timeout = 500ms});
  c.router.set_nodes(addresses());
  std::map<std::string, std::string> home;  // key -> node name before
  for (size_t i = 0; i < 60; ++i) home[key(i)] = name_of(c.router.pick(key(i)));

  Results r;
  // One call that may not move (not idempotent): it fails, it is not sent elsewhere.
  size_t first_b = 0;
  while (home[key(first_b)] != "b") ++first_b;
  c.routed->call(key(first_b), kWho, "", {}, r.done(1000));
  ASSERT_TRUE(r.all_ended(1));
  EXPECT_EQ(r.get(1000).code, RpcCode::kUnavailable);
  EXPECT_EQ(r.get(1000).node, dead_address);

  for (size_t i = 0; i < 60; ++i)
    c.routed->call(key(i), kWho, "", {.timeout = 2000ms, .idempotent = true}, r.done(i));
  ASSERT_TRUE(r.all_ended(61));
  for (size_t i = 0; i < 60; ++i) {
    auto o = r.get(i);
    ASSERT_EQ(o.code, RpcCode::kOk) << key(i);
    if (home[key(i)] != "b") EXPECT_EQ(o.body, home[key(i)]) << "a healthy node's key moved";
    else EXPECT_NE(o.body, "b");
  }
  EXPECT_TRUE(c.router.ejected(dead_address));
  EXPECT_GT(c.routed->stats().rerouted, 0u);

  // Back on the same address: the probes (every 50 ms) bring it back.
  nodes_[1] = std::make_unique<RpcNode>(GetParam(), "b", dead_address);
  ASSERT_TRUE(eventually([&] { return !c.router.ejected(dead_address); }));
  Results back;
  for (size_t i = 0; i < 60; ++i) c.routed->call(key(i), kWho, "", {}, back.done(i));
  ASSERT_TRUE(back.all_ended(60));
  for (size_t i = 0; i < 60; ++i) EXPECT_EQ(back.get(i).body, home[key(i)]) << key(i);
  EXPECT_GT(c.routed->stats().probes, 0u);
}

// One hot key with every call held by its server: bounded load (eps 0.5) spills it, so no
// node holds more than ceil(1.5 * 12 / 3) = 6 calls.
TEST_P(RoutedRpc, BoundedLoadSpreadsAHotKey) {
  RoutedClient c(GetParam(), {.load_epsilon = 0.5}, {});
  c.router.set_nodes(addresses());
  Results r;
  constexpr size_t kCalls = 12;
  for (size_t i = 0; i < kCalls; ++i) c.routed->call("hot", kHold, "", {.timeout = 5000ms}, r.done(i));
  ASSERT_TRUE(eventually([&] {
    size_t sum = 0;
    for (auto& n : nodes_) sum += n->holding();
    return sum == kCalls;
  }));
  size_t used = 0;
  for (auto& n : nodes_) {
    EXPECT_LE(n->holding(), 6u) << n->name;
    used += n->holding() > 0;
  }
  EXPECT_GE(used, 2u);
  for (const auto& n : c.router.nodes()) EXPECT_LE(n.in_flight, 6u);
  EXPECT_GT(c.router.stats().spills, 0u);
  for (auto& n : nodes_) n->release();
  ASSERT_TRUE(r.all_ended(kCalls));
  for (size_t i = 0; i < kCalls; ++i) EXPECT_EQ(r.get(i).code, RpcCode::kOk);
  for (const auto& n : c.router.nodes()) EXPECT_EQ(n.in_flight, 0u);
}

// Destroying the routed client with calls held by the servers ends each once, cancelled,
// and gives their load back to the router; with no node a call fails at once.
TEST_P(RoutedRpc, DestructorEndsCallsInFlightOnce) {
  RoutedClient c(GetParam(), {}, {.probe_interval = 20ms});
  c.router.set_nodes(addresses());
  Results r;
  for (size_t i = 0; i < 8; ++i) c.routed->call(key(i), kHold, "", {}, r.done(i));
  ASSERT_TRUE(eventually([&] {
    size_t sum = 0;
    for (auto& n : nodes_) sum += n->holding();
    return sum == 8;
  }));
  c.routed.reset();
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(r.get(i).ends, 1);
    EXPECT_EQ(r.get(i).code, RpcCode::kCancelled);
  }
  for (const auto& n : c.router.nodes()) EXPECT_EQ(n.in_flight, 0u);

  HashRouter empty;
  RoutedRpcClient none(c.rpc, empty);
  Results e;
  none.call("k", kWho, "", {}, e.done(0));
  EXPECT_EQ(e.get(0).ends, 1);
  EXPECT_EQ(e.get(0).code, RpcCode::kUnavailable);
  EXPECT_EQ(none.stats().no_node, 1u);
}

// A `done` may destroy the client that runs it (on a loop thread): the destructor does not
// wait for its own caller.
TEST_P(RoutedRpc, DoneMayDestroyItsClient) {
  RoutedClient c(GetParam(), {}, {.probe_interval = 20ms});
  c.router.set_nodes(addresses());
  std::atomic<int> ends{0};
  c.routed->call("k", kWho, "", {}, [&](const RpcStatus& s, std::string_view, const std::string&) {
    EXPECT_EQ(s.code, RpcCode::kOk);
    c.routed.reset();
    ends.fetch_add(1);
  });
  ASSERT_TRUE(eventually([&] { return ends.load() == 1; }));
}

INSTANTIATE_TEST_SUITE_P(Backends, RoutedRpc, testing::ValuesIn(test_backends()), backend_param_name);

}  // namespace ringnet::test
