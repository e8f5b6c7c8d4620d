// SPDX-License-Identifier: MIT
// Closing, from every side: the server closes after flushing (even megabytes to a reader
// that is not reading yet), the client half-closes or resets, a ConnHandle closes from
// another thread, the engine stops. Each case checks what the client receives and the
// CloseReason that on_close reported.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <future>
#include <thread>
#include <string>
#include <vector>

#include <ringnet/worker_pool.h>
#include <poll.h>
#include <sys/socket.h>

#include "test_support.h"

namespace ringnet::test {
namespace {

constexpr size_t kMiB = 1024 * 1024;

// Commands, each one line:
//   "BIG <n> CLOSE\n"  write n deterministic bytes (seed n), return Action::kClose
//   "BIG <n> CALL\n"   write n bytes, flush, then Conn::close(); return kNone
//   "QUIT\n"           return Action::kClose with nothing written
// Anything else is echoed. Partial lines stay buffered.
class CommandHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    for (;;) {
      std::string_view all = c.peek();
      if (all.empty()) return Action::kNone;
      if (all[0] != 'B' && all[0] != 'Q') {
        echo(c);
        return Action::kNone;
      }
      size_t nl = all.find('\n');
      if (nl == std::string_view::npos) return Action::kNone;  // wait for the whole line
      std::string line(all.substr(0, nl));
      c.discard(nl + 1);
      if (line == "QUIT") return Action::kClose;
      size_t n = 0;
      char mode[8] = {};
      if (std::sscanf(line.c_str(), "BIG %zu %7s", &n, mode) != 2) return Action::kClose;
      c.write(make_payload(n, n)).ignore();
      if (std::string(mode) == "CLOSE") return Action::kClose;
      c.flush().ignore();
      pending_at_close.store(c.outbound_buffered());
      c.close();
      return Action::kNone;
    }
  }
  std::atomic<size_t> pending_at_close{0};
};

class CloseTest : public testing::TestWithParam<Backend> {};

// Server writes 1 MiB then returns kClose: the client gets every byte, then EOF; the
// reason is kLocalClose.
TEST_P(CloseTest, ServerCloseFlushesResponseFirst) {
  CommandHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("BIG 1048576 CLOSE\n"));
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got, Millis(20000)));
  EXPECT_TRUE(same_bytes(make_payload(1 * kMiB, 1 * kMiB), got));
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
  EXPECT_EQ(rec.error, 0);
}

// Conn::close() with 8 MiB still queued for a client that is not reading: once the client
// reads, it gets all 8 MiB intact and then EOF.
TEST_P(CloseTest, CloseWithPendingOutputDeliversEverything) {
  CommandHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("BIG 8388608 CALL\n"));
  std::this_thread::sleep_for(Millis(300));  // not reading: output piles up on the server
  EXPECT_GT(handler.pending_at_close.load(), 0u)
      << "close() found nothing pending; the test did not exercise pending output";
  EXPECT_FALSE(handler.close_for_port(c.local_port()).has_value())
      << "on_close ran before the pending output could have been flushed";
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got, Millis(30000)));
  EXPECT_EQ(got.size(), 8 * kMiB);
  EXPECT_EQ(checksum(got), checksum(make_payload(8 * kMiB, 8 * kMiB)));
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
}

// Action::kClose returned from on_open after a write: the client gets the bytes, then EOF.
class GreetAndCloseHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    EchoHandler::on_open(c);
    c.write("bye\n").ignore();
    return Action::kClose;
  }
};

TEST_P(CloseTest, CloseFromOnOpenFlushesGreeting) {
  GreetAndCloseHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got));
  EXPECT_EQ(got, "bye\n");
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
}

// The client sends, then shuts down its write side before reading: the echo still comes
// back in full, then EOF; the reason is kPeerClosed.
TEST_P(CloseTest, HalfCloseGetsFullEchoThenEof) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const std::string payload = make_payload(64 * 1024, 77);
  ASSERT_TRUE(c.send_all(payload));
  ASSERT_TRUE(c.shutdown_write());
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got));
  EXPECT_TRUE(same_bytes(payload, got));
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kPeerClosed);
}

// EOF arrives while megabytes of echo are still queued on the server: the server finishes
// the echo before closing (kClosing path), and the reason is still kPeerClosed.
TEST_P(CloseTest, HalfCloseWithLargePendingEchoCompletes) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const std::string payload = make_payload(4 * kMiB, 78);
  // Read on another thread while this one sends, so neither side stalls.
  auto reader = std::async(std::launch::async, [&] {
    std::string got;
    auto r = c.recv_until_eof(&got, Millis(30000));
    return std::make_pair(static_cast<bool>(r), std::move(got));
  });
  ASSERT_TRUE(c.send_all(payload, Millis(30000)));
  ASSERT_TRUE(c.shutdown_write());
  auto [ok, got] = reader.get();
  ASSERT_TRUE(ok) << "no orderly EOF after " << got.size() << " bytes; on_close "
                  << (handler.close_for_port(c.local_port()) ? "ran" : "never ran")
                  << "; server: " << describe(server.engine().stats());
  EXPECT_TRUE(same_bytes(payload, got));
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kPeerClosed);
}

// A frame header promising 100,000 bytes, 500 of them sent, then RST: kReset with an errno.
class FrameWaitHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.inbound_buffered() < 4) return Action::kNone;
    std::string_view h = c.peek(4);
    uint32_t len = (uint32_t(uint8_t(h[0])) << 24) | (uint32_t(uint8_t(h[1])) << 16) |
                   (uint32_t(uint8_t(h[2])) << 8) | uint32_t(uint8_t(h[3]));
    buffered.store(c.inbound_buffered());
    if (c.inbound_buffered() < 4 + size_t{len}) return Action::kNone;
    c.discard(4 + size_t{len});
    c.write("done").ignore();
    return Action::kNone;
  }
  std::atomic<size_t> buffered{0};
};

TEST_P(CloseTest, ClientResetMidMessageIsReset) {
  FrameWaitHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const uint16_t port = c.local_port();
  std::string msg = {'\0', '\x01', '\x86', '\xA0'};  // 100000
  msg += make_payload(500, 3);
  ASSERT_TRUE(c.send_all(msg));
  ASSERT_TRUE(wait_until([&] { return handler.buffered.load() == msg.size(); }, Millis(5000)))
      << "server never buffered the partial message";
  c.reset();
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(port, &rec));
  EXPECT_EQ(rec.reason, CloseReason::kReset);
  EXPECT_TRUE(rec.error == ECONNRESET || rec.error == EPIPE) << "error " << rec.error;
}

// After Conn::close(), write() is refused and nothing more reaches the client.
class CloseThenWriteHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    c.discard();
    c.write("last").ignore();
    c.close();
    late_write_ok.store(c.write("late").is_ok() ? 1 : 0);
    return Action::kNone;
  }
  std::atomic<int> late_write_ok{-1};
};

TEST_P(CloseTest, WriteAfterCloseIsRefused) {
  CloseThenWriteHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("go"));
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got));
  EXPECT_EQ(got, "last");
  EXPECT_EQ(handler.late_write_ok.load(), 0) << "write() after close() was accepted";
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
}

// ConnHandle::close() from a non-loop thread closes the connection (kLocalClose).
TEST_P(CloseTest, HandleCloseFromOtherThread) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.echo("before"));
  OpenRecord open;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &open));
  open.handle.close();
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got));
  EXPECT_EQ(got, "");
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
}

// Engine::stop() with a connection open: the client sees EOF; the reason is kShutdown.
TEST_P(CloseTest, StopClosesWithShutdownReason) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.echo("ping"));
  const uint16_t port = c.local_port();
  server.stop();
  EXPECT_EQ(c.wait_end(Millis(5000)), End::kEof);
  auto rec = handler.close_for_port(port);
  ASSERT_TRUE(rec.has_value()) << "on_close did not run before stop()/wait() returned";
  EXPECT_EQ(rec->reason, CloseReason::kShutdown);
  EXPECT_EQ(handler.shutdowns(), 1);
}

// on_close runs exactly once per connection and the engine counts each reason:
// 10 peer closes, 5 resets, 5 local closes.
TEST_P(CloseTest, StatsCountEveryCloseReason) {
  CommandHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  for (int i = 0; i < 10; ++i) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.echo("x"));
    c.close();
  }
  for (int i = 0; i < 5; ++i) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.echo("y"));
    c.reset();
  }
  for (int i = 0; i < 5; ++i) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.send_all("QUIT\n"));
    std::string got;
    ASSERT_TRUE(c.recv_until_eof(&got));
  }
  ASSERT_TRUE(handler.wait_closes(20));
  // on_close runs before the engine's counters move: wait for those too.
  ASSERT_TRUE(wait_until(
      [&] {
        EngineStats st = server.engine().stats();
        uint64_t by_reason = 0;
        for (uint64_t n : st.closed_by_reason) by_reason += n;
        return st.closed >= 20 && by_reason >= 20 && st.open == 0;
      },
      Millis(2000)));
  std::this_thread::sleep_for(Millis(20));
  EXPECT_EQ(handler.closes(), 20u);
  EXPECT_EQ(handler.closes_with(CloseReason::kPeerClosed), 10u);
  EXPECT_EQ(handler.closes_with(CloseReason::kReset), 5u);
  EXPECT_EQ(handler.closes_with(CloseReason::kLocalClose), 5u);
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.accepted, 20u);
  EXPECT_EQ(st.closed, 20u);
  EXPECT_EQ(st.open, 0u);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kPeerClosed)], 10u);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kReset)], 5u);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kLocalClose)], 5u);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kShutdown)], 0u);
}

// "bye\n" -> "ok\n", then Conn::close_lingering(300 ms).
class LingerHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.peek().find('\n') == std::string_view::npos) return Action::kNone;
    c.discard();
    c.write("ok\n").ignore();
    c.close_lingering(300ms);
    return Action::kNone;
  }
};

// The reply and our FIN reach the client at once; what the client still sends is read and
// dropped (no RST); the server closes when the client closes, or when the linger runs out.
TEST_P(CloseTest, LingeringCloseSendsFinDropsInputClosesOnPeerEofOrDeadline) {
  LingerHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  // 1. The client closes first: the server follows at once (well before the deadline).
  Client quick;
  ASSERT_TRUE(quick.connect_tcp(server.port()));
  ASSERT_TRUE(quick.send_all("bye\n"));
  std::string got;
  ASSERT_TRUE(quick.recv_until_eof(&got, 2000ms));  // FIN right after the reply
  EXPECT_EQ(got, "ok\n");
  ASSERT_TRUE(quick.send_all(std::string(256 * 1024, 'x')));  // dropped, not refused
  uint16_t quick_port = quick.local_port();
  Clock::time_point t0 = Clock::now();
  quick.close();
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(quick_port, &rec, 2000ms));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
  EXPECT_LT(Clock::now() - t0, 250ms);
  // 2. The client never closes: the linger deadline does.
  Client slow;
  ASSERT_TRUE(slow.connect_tcp(server.port()));
  ASSERT_TRUE(slow.send_all("bye\n"));
  got.clear();
  ASSERT_TRUE(slow.recv_until_eof(&got, 2000ms));
  EXPECT_EQ(got, "ok\n");
  t0 = Clock::now();
  ASSERT_TRUE(handler.wait_close_for_port(slow.local_port(), &rec, 3000ms));
  EXPECT_EQ(rec.reason, CloseReason::kLocalClose);
  EXPECT_GE(Clock::now() - t0, 150ms);  // it did wait (300 ms from the reply)
  // Counted just after on_close returns.
  EXPECT_TRUE(wait_until([&] { return server.engine().stats().closed == 2; }, 1000ms));
}

// The peer sends its requests and then its FIN (shutdown(SHUT_WR)): the connection stays
// open for writing while the answers are computed off the loop, and closes once they are
// out (kPeerClosed).
TEST_P(CloseTest, HalfClosedConnectionStaysOpenForAnswersFromThePool) {
  WorkerPool pool({.threads = 2});
  ASSERT_TRUE(pool.start());
  PoolLineHandler handler(pool, 100ms);
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("1\n2\n"));
  ASSERT_TRUE(c.shutdown_write());
  std::string got;
  ASSERT_TRUE(c.recv_until_eof(&got, 5000ms));
  EXPECT_TRUE(got == "done 1\ndone 2\n" || got == "done 2\ndone 1\n") << got;
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kPeerClosed);
  server.stop();
  pool.shutdown();
  EXPECT_EQ(pool.stats().results_delivered, 2u);
  EXPECT_EQ(pool.stats().results_discarded, 0u);
}

// The server answers one request and closes (as HTTP does with "Connection: close")
// while the client goes on sending behind it. Closing with that input unread would make
// the kernel send RST, which destroys the tail of the answer at the client; the engine
// sends FIN after the answer and reads the rest away instead, so the client gets every
// byte of the answer and then EOF.
TEST_P(CloseTest, CloseWithInputStillComingDeliversTheWholeReply) {
  CommandHandler handler;
  Options o = test_options(GetParam());
  o.send_buffer = 64 * 1024;  // the reply waits in the engine while the client sends
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  for (int round = 0; round < 5; ++round) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    const size_t reply = 2 * kMiB;
    ASSERT_TRUE(c.send_all("BIG " + std::to_string(reply) + " CLOSE\n"));
    // A second thread keeps sending until the answer has been read.
    std::atomic<bool> stop{false};
    std::thread sender([&] {
      std::string junk(4096, 'j');
      while (!stop.load()) {
        pollfd p{c.fd(), POLLOUT, 0};
        if (::poll(&p, 1, 20) <= 0) continue;
        if (::send(c.fd(), junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
            errno != EAGAIN && errno != EINTR) {
          return;  // the server is gone
        }
      }
    });
    std::string got;
    End end = c.wait_end(10000ms, &got);
    stop.store(true);
    sender.join();
    EXPECT_EQ(end, End::kEof) << "round " << round << ": " << end_name(end) << " after "
                              << got.size() << " bytes";
    EXPECT_TRUE(same_bytes(make_payload(reply, reply), got))
        << "round " << round << "; " << describe(server.engine().stats());
  }
}

// Echoes; "SLEEP\n" blocks the loop for 300 ms first (so input can pile up meanwhile).
class SleepyEcho : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.peek() == "SLEEP\n") {
      c.discard();
      sleeping.store(true);
      std::this_thread::sleep_for(300ms);
      return Action::kNone;
    }
    echo(c);
    return Action::kNone;
  }
  std::atomic<bool> sleeping{false};
};

// TCP urgent data ("abc", then "X" sent with MSG_OOB, then "def", all queued before the
// server reads): the receive stops at the urgent mark with bytes still queued behind it,
// and no new readiness edge comes for them. The stream goes on all the same; the urgent
// byte itself is not part of it (SO_OOBINLINE is off).
TEST_P(CloseTest, UrgentDataDoesNotStallTheStream) {
  SleepyEcho handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Client c, blocker;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(blocker.connect_tcp(server.port()));
  ASSERT_TRUE(c.echo("warm-up"));
  ASSERT_TRUE(blocker.send_all("SLEEP\n"));
  ASSERT_TRUE(wait_until([&] { return handler.sleeping.load(); }, 5000ms));
  ASSERT_EQ(::send(c.fd(), "abc", 3, MSG_NOSIGNAL), 3);
  ASSERT_EQ(::send(c.fd(), "X", 1, MSG_NOSIGNAL | MSG_OOB), 1);
  ASSERT_EQ(::send(c.fd(), "def", 3, MSG_NOSIGNAL), 3);
  std::string got;
  ASSERT_TRUE(c.recv_exact(6, &got, 3000ms)) << "got '" << got << "'";
  EXPECT_EQ(got, "abcdef");
  EXPECT_TRUE(c.echo("after"));  // and the stream goes on
}

INSTANTIATE_TEST_SUITE_P(Backends, CloseTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
