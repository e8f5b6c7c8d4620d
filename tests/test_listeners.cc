// SPDX-License-Identifier: MIT
// Listen addresses and engine lifecycle: Unix-domain and IPv6 listeners serve, one engine
// serves several addresses, bad or busy addresses are refused at listen(), and stop() with
// 100 open connections is prompt and reports kShutdown for each of them.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// A private directory under /tmp for Unix socket files; removed with what is inside.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ringnet-test-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    for (const auto& f : files_) ::unlink(f.c_str());
    if (!path_.empty()) ::rmdir(path_.c_str());
  }
  bool ok() const { return !path_.empty(); }
  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

bool can_bind_ipv6_loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6)) == 0;
  ::close(fd);
  return ok;
}

class ListenerTest : public testing::TestWithParam<Backend> {};

// "unix:/path": a Unix-domain listener echoes.
TEST_P(ListenerTest, UnixSocketEchoes) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.file("echo.sock");
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start({"unix:" + path}));
  EXPECT_EQ(server.addr().family(), AF_UNIX);
  EXPECT_EQ(::access(path.c_str(), F_OK), 0) << "socket file not created";

  Client c;
  ASSERT_TRUE(c.connect(server.addr()));
  ASSERT_TRUE(c.echo(make_payload(256 * 1024, 1)));
  c.close();
  ASSERT_TRUE(handler.wait_closes(1));
  EXPECT_EQ(handler.close_records()[0].reason, CloseReason::kPeerClosed);
}

// "unix:///path" is the same as "unix:/path".
TEST_P(ListenerTest, UnixUrlFormWithTripleSlashEchoes) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.file("url.sock");
  ASSERT_EQ(path[0], '/');
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start({"unix://" + path}));
  EXPECT_EQ(::access(path.c_str(), F_OK), 0) << "socket file not created at " << path;

  SockAddr addr;
  ASSERT_TRUE(SockAddr::parse("unix:" + path, addr).is_ok());
  Client c;
  ASSERT_TRUE(c.connect(addr));
  ASSERT_TRUE(c.echo("over a unix socket"));
}

// "tcp://[::1]:0": an IPv6 loopback listener echoes and reports the peer as ::1.
TEST_P(ListenerTest, Ipv6LoopbackEchoes) {
  if (!can_bind_ipv6_loopback()) GTEST_SKIP() << "::1 cannot be bound here (no IPv6)";
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start({"tcp://[::1]:0"}));
  EXPECT_EQ(server.addr().family(), AF_INET6);

  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port(), "::1"));
  ASSERT_TRUE(c.echo(make_payload(100000, 2)));
  OpenRecord rec;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.remote_ip, "::1");
}

// The peer a connection reports (remote_addr()) for Unix clients, unnamed and bound to a
// path long enough that the engine keeps it on the heap, alternating on one loop so each
// slot is reused by the other kind; written by the server in on_open.
class PeerNameHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    c.write(c.remote_addr().to_string() + "\n").ignore();
    return EchoHandler::on_open(c);
  }
};

TEST_P(ListenerTest, UnixPeerAddressesUnnamedAndBound) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  PeerNameHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start({"unix:" + dir.file("peer.sock")}));
  for (int round = 0; round < 3; ++round) {
    Client unnamed;
    ASSERT_TRUE(unnamed.connect(server.addr()));
    std::string got;
    ASSERT_TRUE(unnamed.recv_exact(6, &got));
    EXPECT_EQ(got, "unix:\n");
    unnamed.close();

    const std::string path = dir.file("a-client-socket-named-long-enough-" +
                                      std::to_string(round) + ".sock");
    ASSERT_GT(path.size(), 28u);  // longer than the inline form holds
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    SockAddr self;
    ASSERT_TRUE(SockAddr::parse("unix:" + path, self).is_ok());
    ASSERT_EQ(::bind(fd, self.raw(), self.length()), 0) << std::strerror(errno);
    // A server that never answers fails the test, not hangs it. With a receive timeout
    // set, the kernel does not restart recv after an interruption: io_uring's teardown of
    // a ring this thread once used (the backend probes) interrupts it with EINTR.
    timeval limit{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ASSERT_EQ(::connect(fd, server.addr().raw(), server.addr().length()), 0)
        << std::strerror(errno);
    const std::string want = "unix:" + path + "\n";
    std::string line(want.size(), '\0');
    size_t have = 0;
    while (have < line.size()) {
      ssize_t n = ::recv(fd, line.data() + have, line.size() - have, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      have += static_cast<size_t>(n);
    }
    ::close(fd);
    EXPECT_EQ(line, want);
  }
  EXPECT_TRUE(handler.wait_closes(6));
}

// One engine, three addresses (two TCP, one Unix): every one of them serves.
TEST_P(ListenerTest, EveryListenAddressServes) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start(
      {"tcp://127.0.0.1:0", "tcp://127.0.0.2:0", "unix:" + dir.file("multi.sock")}));
  EXPECT_NE(server.port(0), server.port(1));
  EXPECT_EQ(server.addr(1).ip_string(), "127.0.0.2");
  for (size_t i = 0; i < 3; ++i) {
    Client c;
    ASSERT_TRUE(c.connect(server.addr(i))) << "listener " << i;
    ASSERT_TRUE(c.echo(make_payload(10000, 10 + i))) << "listener " << i;
  }
  EXPECT_TRUE(handler.wait_opens(3));
  EXPECT_EQ(server.engine().stats().accepted, 3u);
}

// listen() on an address another socket is listening on fails with an error.
TEST_P(ListenerTest, ListenOnBusyPortFails) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  const int port = ntohs(sin.sin_port);

  EchoHandler handler;
  Engine engine(handler, test_options(GetParam(), 1));
  Status s = engine.listen("tcp://127.0.0.1:" + std::to_string(port));
  ::close(fd);
  EXPECT_FALSE(s.is_ok()) << "listen on a busy port succeeded";
  EXPECT_EQ(s.code(), EADDRINUSE) << s.message();
}

// Malformed addresses are rejected by listen().
TEST_P(ListenerTest, ListenRejectsMalformedAddresses) {
  EchoHandler handler;
  Engine engine(handler, test_options(GetParam(), 1));
  for (const char* bad : {"", "nonsense", "tcp://999.1.1.1:80", "tcp://127.0.0.1:99999",
                          "tcp://[::1:0", "udp://127.0.0.1:0"}) {
    EXPECT_FALSE(engine.listen(bad).is_ok()) << "accepted '" << bad << "'";
  }
}

// stop() with 100 open connections returns (with wait()) within 2 s; on_close ran for every
// connection with kShutdown, on_shutdown once, and every client sees EOF.
TEST_P(ListenerTest, StopWithHundredOpenConnectionsIsPrompt) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 4));
  ASSERT_TRUE(server.start());
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), 100, &clients));
  std::vector<std::string> payloads;
  for (size_t i = 0; i < clients.size(); ++i) payloads.push_back(make_payload(100 + i, i));
  ASSERT_TRUE(echo_all(clients, payloads));
  ASSERT_TRUE(handler.wait_opens(100));

  auto t0 = Clock::now();
  server.stop();
  auto took = Clock::now() - t0;
  EXPECT_LT(took, std::chrono::seconds(2))
      << "stop()+wait() took "
      << std::chrono::duration_cast<Millis>(took).count() << " ms";
  EXPECT_EQ(handler.closes(), 100u);
  EXPECT_EQ(handler.closes_with(CloseReason::kShutdown), 100u);
  EXPECT_EQ(handler.shutdowns(), 1);
  // One deadline for all clients: they were all closed by the time wait() returned.
  auto deadline = Clock::now() + Millis(3000);
  size_t eofs = 0;
  for (auto& c : clients) {
    auto left = std::max(Millis(0), std::chrono::duration_cast<Millis>(deadline - Clock::now()));
    eofs += c.wait_end(left) == End::kEof;
  }
  EXPECT_EQ(eofs, 100u) << "clients that saw EOF after stop()";
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kShutdown)], 100u);
  EXPECT_EQ(st.open, 0u);
}

// After stop() the listener is closed: new connections are refused.
TEST_P(ListenerTest, StopClosesListeners) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  const uint16_t port = server.port();
  {
    Client c;
    ASSERT_TRUE(c.connect_tcp(port));
  }
  server.stop();
  Client late;
  EXPECT_FALSE(late.connect_tcp(port, "127.0.0.1", Millis(1000)))
      << "connection accepted by a stopped engine";
}

// stop() may be called from several threads and more than once; wait() returns once.
TEST_P(ListenerTest, StopIsIdempotentFromAnyThread) {
  EchoHandler handler;
  Engine engine(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(engine.listen("tcp://127.0.0.1:0").is_ok());
  ASSERT_TRUE(engine.start().is_ok());
  EXPECT_TRUE(engine.running());
  Watchdog watchdog(Millis(20000), "concurrent stop()+wait()");
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&] { engine.stop(); });
  for (auto& t : stoppers) t.join();
  engine.stop();
  engine.wait();
  engine.stop();
  EXPECT_FALSE(engine.running());
  EXPECT_EQ(handler.shutdowns(), 1);
}

// on_boot runs once, on the thread that called start(), before any loop runs (so before
// the first tick); on_shutdown runs once after stop.
class LifecycleHandler : public EchoHandler {
 public:
  Action on_boot(Engine&) override {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back("boot");
    boot_thread = std::this_thread::get_id();
    return Action::kNone;
  }
  TickResult on_tick() override {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back("tick");
    return {std::chrono::seconds(10), Action::kNone};
  }
  void on_shutdown(Engine& e) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back("shutdown");
    }
    EchoHandler::on_shutdown(e);
  }
  std::mutex mu;
  std::vector<std::string> events;
  std::thread::id boot_thread;
};

TEST_P(ListenerTest, OnBootRunsOnceOnStartingThreadBeforeLoops) {
  LifecycleHandler handler;
  Options o = test_options(GetParam(), 2);
  o.ticker = true;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(handler.mu);
        return handler.events.size() >= 2;
      },
      Millis(2000)));
  server.stop();
  std::lock_guard<std::mutex> lock(handler.mu);
  EXPECT_EQ(handler.events, (std::vector<std::string>{"boot", "tick", "shutdown"}));
  EXPECT_EQ(handler.boot_thread, std::this_thread::get_id());
}

// Action::kShutdown returned from on_traffic stops the whole engine: run() returns, the
// client sees EOF, its connection closes with kShutdown.
class StopCommandHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.peek() == "STOP") {
      c.discard();
      return Action::kShutdown;
    }
    echo(c);
    return Action::kNone;
  }
};

TEST_P(ListenerTest, ShutdownActionFromTrafficStopsEngine) {
  StopCommandHandler handler;
  Engine engine(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(engine.listen("tcp://127.0.0.1:0").is_ok());
  ASSERT_TRUE(engine.start().is_ok());
  const uint16_t port = engine.listen_addrs().at(0).port();
  Client c;
  ASSERT_TRUE(c.connect_tcp(port));
  ASSERT_TRUE(c.echo("hello"));
  ASSERT_TRUE(c.send_all("STOP"));
  EXPECT_EQ(c.wait_end(Millis(5000)), End::kEof);
  {
    Watchdog watchdog(Millis(20000), "wait() after Action::kShutdown");
    engine.wait();
  }
  EXPECT_FALSE(engine.running());
  EXPECT_EQ(handler.shutdowns(), 1);
  auto rec = handler.close_for_port(c.local_port());
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->reason, CloseReason::kShutdown);
}

INSTANTIATE_TEST_SUITE_P(Backends, ListenerTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
