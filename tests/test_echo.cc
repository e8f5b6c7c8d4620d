// SPDX-License-Identifier: MIT
// Echo over real loopback sockets: every byte sent comes back intact and in order, for
// payloads from 1 byte to 4 MiB, on one loop and on four, for 1,000 connections at once,
// for many messages in one write and for one message dribbled out a byte at a time.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// ---- payload sizes x loop counts --------------------------------------------------------

using EchoParam = std::tuple<Backend, int /*loops*/, size_t /*payload bytes*/>;

class EchoSizeTest : public testing::TestWithParam<EchoParam> {};

// One client sends the payload (while reading) and must get back exactly the same bytes.
TEST_P(EchoSizeTest, PayloadComesBackIntact) {
  auto [backend, loops, size] = GetParam();
  EchoHandler handler;
  TestServer server(handler, test_options(backend, loops));
  ASSERT_TRUE(server.start());

  const std::string payload = make_payload(size, size * 31 + loops);
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  std::string got;
  ASSERT_TRUE(c.exchange(payload, payload.size(), &got, Millis(30000)));
  EXPECT_EQ(checksum(got), checksum(payload));
  EXPECT_TRUE(same_bytes(payload, got));
  // Nothing extra arrives after the echo.
  EXPECT_FALSE(c.readable_within(Millis(50)));
}

std::string echo_param_name(const testing::TestParamInfo<EchoParam>& info) {
  auto [backend, loops, size] = info.param;
  return backend_label(backend) + "_loops" + std::to_string(loops) + "_bytes" +
         std::to_string(size);
}

INSTANTIATE_TEST_SUITE_P(Sizes, EchoSizeTest,
                         testing::Combine(testing::ValuesIn(test_backends()),
                                          testing::Values(1, 4),
                                          testing::Values(size_t{1}, size_t{1024},
                                                          size_t{64 * 1024},
                                                          size_t{4 * 1024 * 1024})),
                         echo_param_name);

// ---- many connections, pipelining, tiny writes --------------------------------------------

class EchoTest : public testing::TestWithParam<Backend> {};

// 1,000 connections at once, each echoing its own payload, driven by one poll() loop.
TEST_P(EchoTest, ThousandConcurrentConnectionsEchoDistinctPayloads) {
  constexpr size_t kConns = 1000;
  ASSERT_TRUE(ensure_fd_limit(2 * kConns + 200)) << "cannot raise RLIMIT_NOFILE";
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 4));
  ASSERT_TRUE(server.start());

  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), kConns, &clients));
  std::vector<std::string> payloads;
  for (size_t i = 0; i < kConns; ++i) payloads.push_back(make_payload(1000 + (i * 37) % 3000, i));
  ASSERT_TRUE(echo_all(clients, payloads, Millis(60000)));

  EXPECT_TRUE(handler.wait_opens(kConns, Millis(5000)));
  EXPECT_EQ(handler.opens(), kConns);
  EXPECT_EQ(server.engine().stats().accepted, kConns);
}

// Many messages sent in one write come back as the same byte stream, in order.
TEST_P(EchoTest, PipelinedMessagesInOneWriteComeBackInOrder) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());

  std::string batch;
  for (int i = 0; i < 2000; ++i) {
    batch += "request " + std::to_string(i) + " " + make_payload(i % 50, i) + "\n";
  }
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all(batch));  // one write
  std::string got;
  ASSERT_TRUE(c.recv_exact(batch.size(), &got));
  EXPECT_TRUE(same_bytes(batch, got));
}

// One message written one byte per send (TCP_NODELAY, so separate segments) is echoed
// intact.
TEST_P(EchoTest, MessageSplitIntoOneByteWritesEchoesIntact) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());

  const std::string msg = make_payload(1500, 99);
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  c.set_nodelay();
  for (char ch : msg) ASSERT_TRUE(c.send_all(std::string_view(&ch, 1)));
  std::string got;
  ASSERT_TRUE(c.recv_exact(msg.size(), &got));
  EXPECT_TRUE(same_bytes(msg, got));
  EXPECT_FALSE(c.readable_within(Millis(50)));
}

// Several sequential round trips on one connection: each reply matches its request only.
TEST_P(EchoTest, SequentialRoundTripsOnOneConnection) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());

  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  for (int i = 0; i < 200; ++i) {
    std::string msg = make_payload(1 + (i * 97) % 9000, 500 + i);
    ASSERT_TRUE(c.echo(msg)) << "round trip " << i;
  }
  EXPECT_EQ(handler.opens(), 1u);
}

// Engine byte counters see every byte in and out.
TEST_P(EchoTest, StatsCountBytesBothWays) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());

  const std::string payload = make_payload(300000, 5);
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.echo(payload));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_out >= payload.size(); },
                         Millis(2000)));
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.bytes_in, payload.size());
  EXPECT_EQ(st.bytes_out, payload.size());
  EXPECT_EQ(st.accepted, 1u);
  EXPECT_EQ(st.open, 1u);
}

INSTANTIATE_TEST_SUITE_P(Backends, EchoTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
