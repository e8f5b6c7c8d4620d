// SourceRegistry, the server side of the connection map by peer address, over loopback on
// both backends: connections are found by source IP and by ip:port, bytes pushed to one
// source reach only its connections, closing them by handle works, entries disappear when
// connections close, and a source over Options::max_connections_per_source is refused at
// accept before the registry ever sees it.
#include <gtest/gtest.h>
#include <ringnet/proto/source_registry.h>

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
  EXPECT_EQ(server.engine().stats().refused_source_limit, 1u);
}

INSTANTIATE_TEST_SUITE_P(Backends, SourceRegistryTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
