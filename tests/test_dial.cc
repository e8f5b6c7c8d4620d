// SPDX-License-Identifier: MIT
// Engine::dial over loopback on both backends: a dialed connection gets on_open with
// Conn::dialed() and its context, and then behaves like an accepted one (the same handler
// echoes on the server side of the same engine); a refused dial, a dial to a listener
// whose accept queue is full (SYNs dropped: the connect times out), a connection reset
// right after it was accepted, IPv6, a Unix socket, and dials cancelled by stop() all reach
// on_close with the right reason and errno; counters and /metrics agree.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// Server side: echoes. Client side (dialed): on_open sends "hello <n>\n" where n is the
// context, collects what comes back, closes once the echo is complete.
class DialHandler : public EchoHandler {
 public:
  struct Result {
    std::string echoed;
    bool opened = false;
    bool closed = false;
    CloseInfo close{CloseReason::kError, 0};
    bool dialed_flag = false;
    int loop = -1;
  };

  Action on_open(Conn& c) override {
    if (!c.dialed()) return EchoHandler::on_open(c);
    std::lock_guard lock(mu_);
    Result& r = results_[key(c)];
    r.opened = true;
    r.dialed_flag = c.dialed();
    r.loop = c.loop_index();
    return c.write(greeting(key(c))).is_ok() ? Action::kNone : Action::kClose;
  }
  Action on_traffic(Conn& c) override {
    if (!c.dialed()) return EchoHandler::on_traffic(c);
    std::lock_guard lock(mu_);
    Result& r = results_[key(c)];
    r.echoed += c.next();
    return r.echoed.size() >= greeting(key(c)).size() ? Action::kClose : Action::kNone;
  }
  void on_close(Conn& c, CloseInfo info) override {
    if (!c.dialed()) return EchoHandler::on_close(c, info);
    {
      std::lock_guard lock(mu_);
      Result& r = results_[key(c)];
      r.closed = true;
      r.close = info;
    }
    dial_closes_.fetch_add(1);
  }

  static std::string greeting(size_t n) { return "hello " + std::to_string(n) + "\n"; }
  static void* ctx(size_t n) { return reinterpret_cast<void*>(n); }
  Result result(size_t n) {
    std::lock_guard lock(mu_);
    return results_[n];
  }
  bool wait_dial_closes(int n, Millis timeout = 5000ms) {
    return wait_until([&] { return dial_closes_.load() >= n; }, timeout);
  }

 private:
  static size_t key(const Conn& c) { return reinterpret_cast<size_t>(c.context()); }
  std::mutex mu_;
  std::map<size_t, Result> results_;
  std::atomic<int> dial_closes_{0};
};

class DialTest : public testing::TestWithParam<Backend> {};

TEST_P(DialTest, DialedConnectionsTalkToTheSameEnginesListener) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  const std::string addr = "tcp://127.0.0.1:" + std::to_string(server.port());
  constexpr size_t kDials = 20;
  for (size_t i = 1; i <= kDials; ++i) {
    ASSERT_TRUE(server.engine().dial(addr, {.context = DialHandler::ctx(i)}));
  }
  ASSERT_TRUE(handler.wait_dial_closes(kDials));
  int per_loop[2] = {0, 0};
  for (size_t i = 1; i <= kDials; ++i) {
    DialHandler::Result r = handler.result(i);
    EXPECT_TRUE(r.opened) << i;
    EXPECT_TRUE(r.dialed_flag) << i;
    EXPECT_EQ(r.echoed, DialHandler::greeting(i)) << i;
    EXPECT_EQ(r.close.reason, CloseReason::kLocalClose) << i;
    if (r.loop >= 0 && r.loop < 2) ++per_loop[r.loop];
  }
  EXPECT_EQ(per_loop[0], 10);  // round-robin over the loops
  EXPECT_EQ(per_loop[1], 10);
  ASSERT_TRUE(handler.wait_closes(kDials));  // the accepted sides saw the close as EOF
  EXPECT_EQ(handler.closes_with(CloseReason::kPeerClosed), kDials);
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().open == 0; }, 2000ms));
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.dials, kDials);
  EXPECT_EQ(st.dialed, kDials);
  EXPECT_EQ(st.dial_failures, 0u);
  EXPECT_EQ(st.accepted, kDials);
}

TEST_P(DialTest, RefusedDialClosesWithConnectFailed) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(server.engine().dial("tcp://127.0.0.1:" + std::to_string(unused_port()),
                                   {.context = DialHandler::ctx(1)}));
  ASSERT_TRUE(handler.wait_dial_closes(1));
  DialHandler::Result r = handler.result(1);
  EXPECT_FALSE(r.opened);
  EXPECT_EQ(r.close.reason, CloseReason::kConnectFailed);
  EXPECT_EQ(r.close.error, ECONNREFUSED);
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().dial_failures == 1; }, 1000ms));
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.dialed, 0u);
  EXPECT_EQ(st.open, 0u);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kConnectFailed)], 1u);
}

// A listener that never accepts, with its accept queue full: Linux drops further SYNs, so
// a connect neither succeeds nor fails until the dial's own timeout.
TEST_P(DialTest, DialToAFullBacklogTimesOut) {
  uint16_t port = 0;
  int lfd = raw_listener(0, &port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(port);
  DialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(server.engine().dial("127.0.0.1:" + std::to_string(port),
                                   {.timeout = 300ms, .context = DialHandler::ctx(7)}));
  ASSERT_TRUE(handler.wait_dial_closes(1, 5000ms));
  Millis took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
  DialHandler::Result r = handler.result(7);
  EXPECT_FALSE(r.opened);
  EXPECT_EQ(r.close.reason, CloseReason::kConnectFailed);
  EXPECT_EQ(r.close.error, ETIMEDOUT);
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 1500ms);
  ::close(lfd);
}

// Accepts and resets at once (SO_LINGER 0): the dial connected, so on_open, then kReset.
TEST_P(DialTest, ResetRightAfterConnectIsAReset) {
  uint16_t port = 0;
  int lfd = raw_listener(16, &port);
  ASSERT_GE(lfd, 0);
  std::thread resetter([lfd] {
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    ::close(fd);
  });
  // Silent client: it writes nothing, so it learns of the reset by reading.
  class Silent : public DialHandler {
   public:
    Action on_open(Conn& c) override {
      opened.store(true);
      (void)c;
      return Action::kNone;
    }
    std::atomic<bool> opened{false};
  } handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(server.engine().dial("127.0.0.1:" + std::to_string(port),
                                   {.context = DialHandler::ctx(3)}));
  ASSERT_TRUE(handler.wait_dial_closes(1));
  resetter.join();
  EXPECT_TRUE(handler.opened.load());
  DialHandler::Result r = handler.result(3);
  EXPECT_EQ(r.close.reason, CloseReason::kReset);
  EXPECT_EQ(r.close.error, ECONNRESET);
  ::close(lfd);
}

TEST_P(DialTest, UnixSocketDial) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  std::string path = "/tmp/ringnet-dial-" + std::to_string(::getpid()) + ".sock";
  ASSERT_TRUE(server.start({"unix:" + path}));
  ASSERT_TRUE(server.engine().dial("unix:" + path, {.context = DialHandler::ctx(5)}));
  ASSERT_TRUE(handler.wait_dial_closes(1));
  DialHandler::Result r = handler.result(5);
  EXPECT_TRUE(r.opened);
  EXPECT_EQ(r.echoed, DialHandler::greeting(5));
  EXPECT_EQ(r.close.reason, CloseReason::kLocalClose);
}

TEST_P(DialTest, Ipv6Dial) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start({"tcp://[::1]:0"}));
  ASSERT_TRUE(server.engine().dial("tcp://[::1]:" + std::to_string(server.port()),
                                   {.context = DialHandler::ctx(6)}));
  ASSERT_TRUE(handler.wait_dial_closes(1));
  DialHandler::Result r = handler.result(6);
  EXPECT_TRUE(r.opened);
  EXPECT_EQ(r.echoed, DialHandler::greeting(6));
  EXPECT_EQ(r.close.reason, CloseReason::kLocalClose);
}

// Host names: the engine listens on "localhost" (looked up at listen) and dials it (looked
// up off the loops); the connection is to 127.0.0.1 and echoes.
TEST_P(DialTest, ListenAndDialByHostName) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start({"tcp://localhost:0"}));
  EXPECT_EQ(server.engine().listen_addrs().at(0).ip_string(), "127.0.0.1");
  for (size_t i = 1; i <= 4; ++i) {
    ASSERT_TRUE(server.engine().dial("tcp://localhost:" + std::to_string(server.port()),
                                     {.context = DialHandler::ctx(i)}));
  }
  ASSERT_TRUE(handler.wait_dial_closes(4));
  for (size_t i = 1; i <= 4; ++i) {
    DialHandler::Result r = handler.result(i);
    EXPECT_TRUE(r.opened) << i;
    EXPECT_EQ(r.echoed, DialHandler::greeting(i)) << i;
    EXPECT_EQ(r.close.reason, CloseReason::kLocalClose) << i;
  }
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().open == 0; }, 2000ms));
  EXPECT_EQ(server.engine().stats().dialed, 4u);
}

// A name that does not resolve: dial() accepts it (the lookup is not done on the caller's
// thread), and the dial ends in on_close with kResolveFailed, its context and the
// getaddrinfo code, counted as a dial failure. listen() says so at once.
TEST_P(DialTest, ANameThatDoesNotResolveEndsInResolveFailed) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  Status bad_listen = server.engine().listen("tcp://nosuch.invalid:0");
  EXPECT_FALSE(bad_listen);
  EXPECT_NE(bad_listen.message().find("cannot resolve 'nosuch.invalid'"), std::string::npos)
      << bad_listen.message();
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(server.engine().dial("tcp://nosuch.invalid:9", {.context = DialHandler::ctx(3)}));
  ASSERT_TRUE(handler.wait_dial_closes(1, 20000ms));
  DialHandler::Result r = handler.result(3);
  EXPECT_FALSE(r.opened);
  EXPECT_EQ(r.close.reason, CloseReason::kResolveFailed);
  EXPECT_NE(r.close.error, 0);
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().dial_failures == 1; }, 1000ms));
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.open, 0u);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kResolveFailed)], 1u);
}

TEST_P(DialTest, BadDialsAreRefusedAtOnce) {
  DialHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  EXPECT_FALSE(server.engine().dial("127.0.0.1:1"));  // not started
  ASSERT_TRUE(server.start());
  EXPECT_FALSE(server.engine().dial("nonsense"));
  // Not numeric addresses and not names either (no top-level domain is all digits):
  // refused here, never handed to getaddrinfo's inet_aton reading or to DNS.
  EXPECT_FALSE(server.engine().dial("tcp://999.1.1.1:80"));
  EXPECT_FALSE(server.engine().dial("tcp://127.1:80"));
  EXPECT_FALSE(server.engine().dial("tcp://0x7f.1:80"));
  EXPECT_FALSE(server.engine().dial("127.0.0.1:1", {.loop = 2}));
  server.stop();
  EXPECT_FALSE(server.engine().dial("127.0.0.1:1"));  // stopped
}

// Dials still connecting when the engine stops are closed, not leaked: on_close with
// kConnectFailed / ECANCELED, and the engine stops on time.
TEST_P(DialTest, StopCancelsDialsInProgress) {
  uint16_t port = 0;
  int lfd = raw_listener(0, &port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(port);
  DialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  for (size_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(server.engine().dial("127.0.0.1:" + std::to_string(port),
                                     {.timeout = 10s, .context = DialHandler::ctx(i)}));
  }
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().dials == 5; }, 2000ms));
  Clock::time_point t0 = Clock::now();
  server.stop();
  EXPECT_LT(Clock::now() - t0, 3s);
  EXPECT_TRUE(handler.wait_dial_closes(5, 100ms));
  for (size_t i = 1; i <= 5; ++i) {
    DialHandler::Result r = handler.result(i);
    EXPECT_EQ(r.close.reason, CloseReason::kConnectFailed) << i;
    EXPECT_EQ(r.close.error, ECANCELED) << i;
  }
  EXPECT_EQ(server.engine().stats().open, 0u);
  ::close(lfd);
}

// A graceful drain still lets the engine dial out (a draining proxy must reach its
// backends to finish what it took in): dials connect and talk while an accepted
// connection is still being served, on its loop and on a loop that has nothing left to
// serve (it stays up until every loop is done).
TEST_P(DialTest, DialsWorkDuringAGracefulDrain) {
  EchoHandler backend_handler;
  TestServer backend(backend_handler, test_options(GetParam()));
  ASSERT_TRUE(backend.start());
  DialHandler handler;
  Options o = test_options(GetParam(), 2);
  o.send_buffer = 4096;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  // An accepted connection kept busy: 2 MiB read, echoed to a client that does not read
  // yet, so the answer waits in the engine.
  Client busy;
  ASSERT_TRUE(busy.connect_tcp(server.port()));
  const std::string payload = make_payload(2u << 20, 3);
  ASSERT_TRUE(busy.send_all(payload, 10000ms));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_in == payload.size(); },
                         5000ms));
  server.engine().shutdown(10000ms);
  std::this_thread::sleep_for(100ms);  // the idle loop would have left by now
  for (int loop = 0; loop < 2; ++loop) {
    EXPECT_TRUE(server.engine().dial("127.0.0.1:" + std::to_string(backend.port()),
                                     {.loop = loop, .context = DialHandler::ctx(loop + 1)}));
  }
  EXPECT_TRUE(handler.wait_dial_closes(2));
  for (size_t n = 1; n <= 2; ++n) {
    DialHandler::Result r = handler.result(n);
    EXPECT_TRUE(r.opened) << n;
    EXPECT_EQ(r.echoed, DialHandler::greeting(n)) << n;
    EXPECT_EQ(r.close.reason, CloseReason::kLocalClose) << n;
    EXPECT_EQ(r.loop, static_cast<int>(n) - 1);
  }
  // The accepted connection is still served to the end.
  std::string got;
  EXPECT_EQ(busy.wait_end(20000ms, &got), End::kEof);
  EXPECT_TRUE(same_bytes(payload, got));
  busy.close();
  server.engine().wait();
  EXPECT_EQ(server.engine().stats().drain_deadline_closed, 0u);
}

// Accepted connections: echo complete lines; a line-less "SLEEP..." blocks the loop for
// 300 ms and stays unread (over a small max_inbound_buffer it then closes the connection
// at once). Dialed connections stay open, drop their input and record how they closed.
class KeepDialsHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    if (!c.dialed()) return EchoHandler::on_open(c);
    dial_opens.fetch_add(1);
    return Action::kNone;
  }
  Action on_traffic(Conn& c) override {
    if (c.dialed()) {
      c.discard();
      return Action::kNone;
    }
    if (c.peek().substr(0, 5) == "SLEEP") {
      sleeping.store(true);
      std::this_thread::sleep_for(300ms);
      return Action::kNone;
    }
    return EchoHandler::on_traffic(c);
  }
  void on_close(Conn& c, CloseInfo info) override {
    if (!c.dialed()) return EchoHandler::on_close(c, info);
    std::lock_guard lock(mu_);
    dial_closes_.push_back(info);
  }
  std::vector<CloseInfo> dial_closes() {
    std::lock_guard lock(mu_);
    return dial_closes_;
  }
  std::atomic<int> dial_opens{0};
  std::atomic<bool> sleeping{false};

 private:
  std::mutex mu_;
  std::vector<CloseInfo> dial_closes_;
};

// An engine that only dials (no accepted connection): a graceful shutdown closes its
// dialed connections at once (kShutdown) instead of keeping them to the deadline.
TEST_P(DialTest, GracefulShutdownOfAClientOnlyEngineEndsPromptly) {
  EchoHandler backend_handler;
  TestServer backend(backend_handler, test_options(GetParam()));
  ASSERT_TRUE(backend.start());
  KeepDialsHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  for (int loop = 0; loop < 2; ++loop) {
    ASSERT_TRUE(server.engine().dial("127.0.0.1:" + std::to_string(backend.port()),
                                     {.loop = loop}));
  }
  ASSERT_TRUE(wait_until([&] { return handler.dial_opens.load() == 2; }, 5000ms));
  Clock::time_point t0 = Clock::now();
  server.engine().shutdown(5000ms);
  server.engine().wait();
  EXPECT_LT(Clock::now() - t0, 2000ms);  // not the 5 s deadline
  std::vector<CloseInfo> closes = handler.dial_closes();
  ASSERT_EQ(closes.size(), 2u);
  for (const CloseInfo& info : closes) EXPECT_EQ(info.reason, CloseReason::kShutdown);
  EXPECT_EQ(server.engine().stats().drain_deadline_closed, 0u);
}

// The engine's last accepted connection closes on a loop that has not begun its own drain
// yet (its loop was busy in a callback when the shutdown came), while the other loop holds
// a dialed connection and waits: that loop is still told, and the engine ends promptly.
TEST_P(DialTest, LastAcceptedCloseBeforeItsLoopDrainsStillEndsTheDrain) {
  EchoHandler backend_handler;
  TestServer backend(backend_handler, test_options(GetParam()));
  ASSERT_TRUE(backend.start());
  KeepDialsHandler handler;
  Options o = test_options(GetParam(), 2);
  o.max_inbound_buffer = 4;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  OpenRecord rec;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &rec));
  ASSERT_TRUE(server.engine().dial("127.0.0.1:" + std::to_string(backend.port()),
                                   {.loop = 1 - rec.loop}));
  ASSERT_TRUE(wait_until([&] { return handler.dial_opens.load() == 1; }, 5000ms));
  ASSERT_TRUE(c.send_all("SLEEP-0123456789"));  // over the limit once on_traffic returns
  ASSERT_TRUE(wait_until([&] { return handler.sleeping.load(); }, 5000ms));
  Clock::time_point t0 = Clock::now();
  server.engine().shutdown(5000ms);
  server.engine().wait();
  EXPECT_LT(Clock::now() - t0, 2000ms);  // not the 5 s deadline
  std::vector<CloseInfo> closes = handler.dial_closes();
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].reason, CloseReason::kShutdown);
}

// DialHandler whose accepted connections' on_close blocks for 300 ms: the loop is then
// inside its final close-down, past the point where it still dials.
class SlowCloseDialHandler : public DialHandler {
 public:
  void on_close(Conn& c, CloseInfo info) override {
    if (!c.dialed()) {
      closing.store(true);
      std::this_thread::sleep_for(300ms);
    }
    DialHandler::on_close(c, info);
  }
  std::atomic<bool> closing{false};
};

// A dial the engine accepted (during a graceful drain) that reaches its loop only as the
// loop ends still ends in on_close: kConnectFailed with ECANCELED, and its context.
TEST_P(DialTest, ADialThatReachesItsLoopAsTheLoopEndsGetsOnClose) {
  SlowCloseDialHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Client partial;  // a request that never completes: closed at the drain's deadline
  ASSERT_TRUE(partial.connect_tcp(server.port()));
  ASSERT_TRUE(partial.send_all("x"));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_in == 1; }, 5000ms));
  server.engine().shutdown(100ms);
  ASSERT_TRUE(wait_until([&] { return handler.closing.load(); }, 5000ms));
  int accepted = 0;
  for (size_t i = 1; i <= 10; ++i) {
    if (server.engine().dial("127.0.0.1:1", {.context = DialHandler::ctx(i)})) ++accepted;
  }
  server.engine().wait();
  EXPECT_EQ(accepted, 10);
  EXPECT_TRUE(handler.wait_dial_closes(accepted, 2000ms)) << describe(server.engine().stats());
  for (size_t i = 1; i <= 10; ++i) {
    DialHandler::Result r = handler.result(i);
    EXPECT_FALSE(r.opened) << i;
    EXPECT_EQ(r.close.reason, CloseReason::kConnectFailed) << i;
    EXPECT_EQ(r.close.error, ECANCELED) << i;
  }
  EXPECT_EQ(server.engine().stats().open, 0u);
  EXPECT_FALSE(server.engine().dial("127.0.0.1:1"));  // refused at once from now on
}

INSTANTIATE_TEST_SUITE_P(Backends, DialTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
