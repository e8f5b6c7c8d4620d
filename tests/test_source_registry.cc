// SPDX-License-Identifier: MIT
// SourceRegistry, the server side of the connection map by peer address, over loopback on
// both backends: connections are found by source IP and by ip:port, bytes pushed to one
// source reach only its connections, closing them by handle works, entries disappear when
// connections close, and a source over Options::max_connections_per_source is refused at
// accept before the registry ever sees it.
#include <gtest/gtest.h>
#include <ringnet/proto/source_registry.h>

#include <atomic>
#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

using proto::SourceRegistry;

class RegistryHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    registry.on_open(c);
    return EchoHandler::on_open(c);
  }
  void on_close(Conn& c, CloseInfo info) override {
    registry.on_close(c);
    EchoHandler::on_close(c, info);
  }
  SourceRegistry registry;
};

class SourceRegistryTest : public testing::TestWithParam<Backend> {};

TEST_P(SourceRegistryTest, FindsPushesAndClosesOneSourcesConnections) {
  RegistryHandler handler;
  Options o = test_options(GetParam(), 2);
  o.max_connections_per_source = 3;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  std::vector<Client> local(3), other(2);
  for (Client& c : local) ASSERT_TRUE(c.connect(server.addr(), kIoTimeout, "127.0.0.1"));
  for (Client& c : other) ASSERT_TRUE(c.connect(server.addr(), kIoTimeout, "127.0.0.2"));
  ASSERT_TRUE(handler.wait_opens(5));
  Client over;  // a fourth from 127.0.0.1: refused at accept, never registered
  ASSERT_TRUE(over.connect(server.addr(), kIoTimeout, "127.0.0.1"));
  EXPECT_EQ(over.wait_end(3000ms), End::kEof);
  SourceRegistry& r = handler.registry;
  EXPECT_EQ(r.count("127.0.0.1"), 3u);
  EXPECT_EQ(r.count("127.0.0.2"), 2u);
  EXPECT_EQ(r.count("127.0.0.3"), 0u);
  EXPECT_EQ(r.sources(), 2u);
  EXPECT_TRUE(r.connection_at("127.0.0.2", other[1].local_port()).has_value());
  EXPECT_FALSE(r.connection_at("127.0.0.2", 1).has_value());

  // Push to one source: only its connections get the bytes.
  EXPECT_EQ(r.broadcast("127.0.0.2", "push\n"), 2u);
  for (Client& c : other) {
    std::string got;
    ASSERT_TRUE(c.recv_exact(5, &got));
    EXPECT_EQ(got, "push\n");
  }
  for (Client& c : local) EXPECT_FALSE(c.readable_within(200ms));

  // Entries leave with their connections.
  uint16_t port = local[0].local_port();
  local[0].close();
  ASSERT_TRUE(handler.wait_close_for_port(port, nullptr));
  EXPECT_EQ(r.count("127.0.0.1"), 2u);
  EXPECT_FALSE(r.connection_at("127.0.0.1", port).has_value());

  // Close a whole source by handle.
  for (const ConnHandle& h : r.connections_of("127.0.0.1")) h.close();
  for (size_t i = 1; i < local.size(); ++i) EXPECT_EQ(local[i].wait_end(3000ms), End::kEof);
  ASSERT_TRUE(wait_until([&] { return r.count("127.0.0.1") == 0; }, 2000ms));
  EXPECT_EQ(r.sources(), 1u);
  for (Client& c : other) EXPECT_TRUE(c.echo("still here"));
  EXPECT_TRUE(eventually([&] { return server.engine().stats().refused_source_limit == 1; }));
}

// Broadcasts to a source whose client never reads: once that connection's queued output
// is over the high watermark, further pushes to it are refused (EAGAIN), reported to the
// caller and counted, so its memory stays bounded; a reading client of the same source
// gets every push.
TEST_P(SourceRegistryTest, BroadcastToAClientThatNeverReadsIsRefusedOverTheWatermark) {
  RegistryHandler handler;
  Options o = test_options(GetParam(), 1);
  o.outbound_high_watermark = 128u << 10;
  o.outbound_low_watermark = 32u << 10;
  o.send_buffer = 4096;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  Client stalled, reader;
  ASSERT_TRUE(stalled.connect(server.addr(), kIoTimeout, "127.0.0.3"));
  ASSERT_TRUE(reader.connect(server.addr(), kIoTimeout, "127.0.0.4"));
  ASSERT_TRUE(handler.wait_opens(2));
  const std::string chunk = make_payload(8u << 10, 9);
  std::atomic<int> ok{0}, refused{0}, other{0};
  auto count = [&](const Status& s) {
    (s ? ok : s.code() == EAGAIN ? refused : other).fetch_add(1);
  };
  constexpr int kPushes = 500;  // 4 MiB
  for (int i = 0; i < kPushes; ++i) {
    EXPECT_EQ(handler.registry.broadcast("127.0.0.3", chunk, count), 1u);
  }
  ASSERT_TRUE(wait_until([&] { return ok + refused + other == kPushes; }, 10000ms));
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused.load(), 0);
  EXPECT_LT(static_cast<size_t>(ok.load()) * chunk.size(), 2u << 20);
  EXPECT_TRUE(wait_until(
      [&] { return server.engine().stats().writes_refused == static_cast<uint64_t>(refused); },
      2000ms));
  std::string got;
  EXPECT_TRUE(stalled.recv_exact(static_cast<size_t>(ok.load()) * chunk.size(), &got));
  // Under the watermark (80 KiB in all, not yet read): every push is taken.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(handler.registry.broadcast("127.0.0.4", chunk), 1u);
  got.clear();
  EXPECT_TRUE(reader.recv_exact(10 * chunk.size(), &got));
}

INSTANTIATE_TEST_SUITE_P(Backends, SourceRegistryTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
