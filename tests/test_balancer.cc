// SPDX-License-Identifier: MIT
// How accepted connections are spread over loops: round robin takes turns, least
// connections fills the emptiest loop, source hash keeps one source IP on one loop (the same
// one across engine runs), and SO_REUSEPORT mode serves from every loop.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

Options balancer_options(Backend backend, int loops, Balancer balancer) {
  Options o = test_options(backend, loops);
  o.balancer = balancer;
  return o;
}

// Connects one client and returns the loop its connection landed on (-1 on failure).
int connect_and_locate(TestServer& server, EchoHandler& handler, std::vector<Client>* keep,
                       const char* bind_ip = nullptr) {
  Client c;
  auto r = c.connect(server.addr(), kIoTimeout, bind_ip);
  EXPECT_TRUE(r);
  if (!r) return -1;
  OpenRecord rec;
  auto found = handler.wait_open_for(bind_ip != nullptr ? bind_ip : "127.0.0.1",
                                     c.local_port(), &rec);
  EXPECT_TRUE(found);
  if (!found) return -1;
  keep->push_back(std::move(c));
  return rec.loop;
}

uint64_t total_open(Engine& e) {
  uint64_t n = 0;
  for (int i = 0; i < e.loop_count(); ++i) n += e.loop_stats(i).open;
  return n;
}

class BalancerTest : public testing::TestWithParam<Backend> {};

// Round robin over 4 loops: 40 sequential connections go to the loops in turn, 10 each.
TEST_P(BalancerTest, RoundRobinTakesTurns) {
  EchoHandler handler;
  TestServer server(handler, balancer_options(GetParam(), 4, Balancer::kRoundRobin));
  ASSERT_TRUE(server.start());
  ASSERT_EQ(server.engine().loop_count(), 4);

  std::vector<Client> clients;
  std::vector<int> loops;
  for (int i = 0; i < 40; ++i) {
    int loop = connect_and_locate(server, handler, &clients);
    ASSERT_GE(loop, 0) << "connection " << i;
    ASSERT_LT(loop, 4);
    loops.push_back(loop);
  }
  for (size_t i = 1; i < loops.size(); ++i) {
    EXPECT_EQ(loops[i], (loops[i - 1] + 1) % 4) << "connection " << i << " broke the turn order";
  }
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(std::count(loops.begin(), loops.end(), l), 10) << "loop " << l;
    EXPECT_EQ(server.engine().loop_stats(l).accepted, 10u) << "loop " << l;
    EXPECT_EQ(server.engine().loop_stats(l).open, 10u) << "loop " << l;
  }
}

// Least connections over 2 loops: six connections split 3/3; after the three on loop 1
// close, the next three all go to loop 1.
TEST_P(BalancerTest, LeastConnectionsPicksEmptiestLoop) {
  EchoHandler handler;
  TestServer server(handler, balancer_options(GetParam(), 2, Balancer::kLeastConnections));
  ASSERT_TRUE(server.start());
  Engine& e = server.engine();

  std::vector<Client> clients;
  std::vector<int> loops;
  for (int i = 0; i < 6; ++i) {
    int loop = connect_and_locate(server, handler, &clients);
    ASSERT_GE(loop, 0);
    loops.push_back(loop);
    ASSERT_TRUE(wait_until([&] { return total_open(e) == size_t(i + 1); }, Millis(2000)));
  }
  ASSERT_EQ(e.loop_stats(0).open, 3u);
  ASSERT_EQ(e.loop_stats(1).open, 3u);

  for (size_t i = 0; i < clients.size(); ++i) {
    if (loops[i] == 1) clients[i].close();
  }
  ASSERT_TRUE(wait_until([&] { return e.loop_stats(1).open == 0; }, Millis(5000)))
      << "loop 1 still reports " << e.loop_stats(1).open << " open";
  ASSERT_EQ(e.loop_stats(0).open, 3u);

  for (int i = 0; i < 3; ++i) {
    int loop = connect_and_locate(server, handler, &clients);
    EXPECT_EQ(loop, 1) << "new connection " << i << " did not go to the emptier loop";
    ASSERT_TRUE(wait_until([&] { return total_open(e) == size_t(4 + i); }, Millis(2000)));
  }
  EXPECT_EQ(e.loop_stats(1).open, 3u);
}

// Source hash: which loop each source IP (127.0.0.2 .. 127.0.0.9, three connections each)
// lands on, in one engine run.
std::map<std::string, std::set<int>> source_hash_run(Backend backend) {
  std::map<std::string, std::set<int>> out;
  EchoHandler handler;
  TestServer server(handler, balancer_options(backend, 4, Balancer::kSourceHash));
  EXPECT_TRUE(server.start());
  std::vector<Client> clients;
  for (int round = 0; round < 3; ++round) {
    for (int host = 2; host <= 9; ++host) {
      std::string ip = "127.0.0." + std::to_string(host);
      int loop = connect_and_locate(server, handler, &clients, ip.c_str());
      if (loop < 0) return {};
      out[ip].insert(loop);
    }
  }
  return out;
}

// All connections from one source land on one loop, and the mapping is the same in a
// second engine.
TEST_P(BalancerTest, SourceHashIsStablePerSourceAndAcrossRuns) {
  auto first = source_hash_run(GetParam());
  ASSERT_EQ(first.size(), 8u);
  for (const auto& [ip, loops] : first) {
    EXPECT_EQ(loops.size(), 1u) << ip << " was spread over " << loops.size() << " loops";
  }
  auto second = source_hash_run(GetParam());
  ASSERT_EQ(second.size(), 8u);
  EXPECT_EQ(first, second) << "source -> loop mapping changed between engine runs";
}

// Eight sources over four loops do not all collapse onto one loop (a constant "hash" would).
TEST_P(BalancerTest, SourceHashSpreadsDistinctSources) {
  auto run = source_hash_run(GetParam());
  ASSERT_EQ(run.size(), 8u);
  std::set<int> used;
  for (const auto& [ip, loops] : run) used.insert(loops.begin(), loops.end());
  EXPECT_GE(used.size(), 2u);
}

// SO_REUSEPORT, 2 loops: 50 concurrent connections all echo, and both loops accepted some.
TEST_P(BalancerTest, ReusePortServesFromEveryLoop) {
  EchoHandler handler;
  Options o = test_options(GetParam(), 2);
  o.reuse_port = true;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());

  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), 50, &clients));
  std::vector<std::string> payloads;
  for (size_t i = 0; i < clients.size(); ++i) payloads.push_back(make_payload(5000 + i, 900 + i));
  ASSERT_TRUE(echo_all(clients, payloads));

  ASSERT_TRUE(handler.wait_opens(50));
  Engine& e = server.engine();
  EXPECT_EQ(e.loop_stats(0).accepted + e.loop_stats(1).accepted, 50u);
  EXPECT_GT(e.loop_stats(0).accepted, 0u);
  EXPECT_GT(e.loop_stats(1).accepted, 0u);
  std::set<int> loops;
  for (const auto& r : handler.open_records()) loops.insert(r.loop);
  EXPECT_EQ(loops, (std::set<int>{0, 1}));
}

// loops = 0 means one loop per online core.
TEST_P(BalancerTest, DefaultLoopCountIsOnlineCores) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 0));
  ASSERT_TRUE(server.start());
  EXPECT_EQ(server.engine().loop_count(), static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.echo("default loops"));
}

INSTANTIATE_TEST_SUITE_P(Backends, BalancerTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
