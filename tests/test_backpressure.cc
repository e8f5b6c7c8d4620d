// SPDX-License-Identifier: MIT
// Backpressure and limits over real sockets: a client that sends requests and never reads
// the answers is held back by TCP once the connection's queued output passes the high
// watermark (the server stops reading it), so server memory stays bounded; when the
// client reads again everything flows, intact; the handler hears both edges. A peer that
// sends an endless partial frame is cut off at max_inbound_buffer. Connections over
// max_connections / max_connections_per_loop are refused at accept and counted, and the
// engine keeps serving the others.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <fstream>
#include <vector>
#include <string>

#include "test_support.h"

namespace ringnet::test {
namespace {

// Resident set size of this process, in bytes.
size_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

class PressureHandler : public EchoHandler {
 public:
  void on_backpressure(Conn& c, bool paused) override {
    (paused ? pauses_ : resumes_).fetch_add(1);
    if (paused) max_queued_at_pause_.store(c.outbound_buffered());
  }
  std::atomic<int> pauses_{0}, resumes_{0};
  std::atomic<size_t> max_queued_at_pause_{0};
};

class BackpressureTest : public testing::TestWithParam<Backend> {};

// Sends from `chunk` repeatedly until `total` bytes went out or nothing moved for `stall`.
size_t send_until_stalled(Client& c, const std::string& chunk, size_t total, Millis stall) {
  size_t sent = 0;
  while (sent < total) {
    pollfd p{c.fd(), POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(stall.count())) <= 0) break;  // stalled
    size_t want = std::min(chunk.size(), total - sent);
    ssize_t n = ::send(c.fd(), chunk.data(), want, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) sent += static_cast<size_t>(n);
    else if (errno != EAGAIN && errno != EINTR) break;
  }
  return sent;
}

TEST_P(BackpressureTest, AClientThatNeverReadsCannotGrowServerMemory) {
  PressureHandler handler;
  Options o = test_options(GetParam(), 1);
  o.outbound_high_watermark = 4u << 20;
  o.outbound_low_watermark = 1u << 20;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));

  const size_t total = 100u << 20;
  std::string chunk = make_payload(1u << 20, 42);
  const size_t rss_before = rss_bytes();
  size_t sent = send_until_stalled(c, chunk, total, 500ms);
  const size_t rss_stalled = rss_bytes();
  EngineStats st = server.engine().stats();
  // Without backpressure the server would read all 100 MiB and queue it as output.
  EXPECT_LT(sent, 32u << 20) << "the client was never held back";
  EXPECT_LT(rss_stalled - std::min(rss_stalled, rss_before), 48u << 20)
      << "rss grew from " << rss_before << " to " << rss_stalled;
  EXPECT_GE(st.read_pauses, 1u) << describe(st);
  EXPECT_EQ(handler.pauses_.load(), 1);
  EXPECT_GT(handler.max_queued_at_pause_.load(), o.outbound_high_watermark);

  // Now read: every byte comes back in order, and the rest of the 100 MiB goes through.
  size_t received = 0;
  uint64_t want_sum = 0, got_sum = 0;  // position-weighted sums over the byte stream
  std::string buf(1u << 20, '\0');
  size_t pos_sent = 0;
  auto account_sent = [&](size_t upto) {
    for (; pos_sent < upto; ++pos_sent) {
      want_sum += static_cast<unsigned char>(chunk[pos_sent % chunk.size()]) * (pos_sent % 251 + 1);
    }
  };
  account_sent(sent);
  Clock::time_point deadline = Clock::now() + 60s;
  while (received < total && Clock::now() < deadline) {
    pollfd p{c.fd(), static_cast<short>(POLLIN | (sent < total ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 1000) < 0) break;
    if (p.revents & POLLIN) {
      ssize_t n = ::recv(c.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
      ASSERT_GT(n, 0) << "server closed the connection";
      for (ssize_t i = 0; i < n; ++i) {
        size_t at = received + static_cast<size_t>(i);
        got_sum += static_cast<unsigned char>(buf[static_cast<size_t>(i)]) * (at % 251 + 1);
        ASSERT_EQ(buf[static_cast<size_t>(i)], chunk[at % chunk.size()]) << "at byte " << at;
      }
      received += static_cast<size_t>(n);
    }
    if ((p.revents & POLLOUT) && sent < total) {
      size_t off = sent % chunk.size();
      size_t want = std::min(chunk.size() - off, total - sent);
      ssize_t n = ::send(c.fd(), chunk.data() + off, want, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        account_sent(sent);
      }
    }
  }
  EXPECT_EQ(received, total);
  EXPECT_EQ(got_sum, want_sum);
  EXPECT_TRUE(wait_until([&] { return handler.resumes_.load() >= 1; }, 2000ms));
  EXPECT_EQ(handler.closes(), 0u);
}

// Echoes complete lines ('\n'-terminated) and leaves a partial line buffered; after
// each write it asks to be called again (Conn::wake), as a handler that answers in
// several steps would. With a tiny high watermark it is paused after almost every write,
// so input keeps arriving while reading is paused.
class WakingLineEcho : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    std::string_view in = c.peek();
    size_t end = in.rfind('\n');
    if (end == std::string_view::npos) return Action::kNone;
    if (!c.write(in.substr(0, end + 1))) return Action::kClose;
    c.discard(end + 1);
    c.wake();
    return Action::kNone;
  }
};

// Lines of varied lengths, so reads end in the middle of a line.
std::string numbered_lines(size_t total_bytes) {
  std::string out;
  for (uint64_t i = 0; out.size() < total_bytes; ++i) {
    std::string line = std::to_string(i) + ":" + make_payload(i * 37 % 700, i);
    for (char& ch : line) {
      if (ch == '\n') ch = '.';
    }
    out += line + "\n";
  }
  return out;
}

Options tiny_watermarks(Backend backend) {
  Options o = test_options(backend, 1);
  o.outbound_high_watermark = 8u << 10;
  o.outbound_low_watermark = 4u << 10;
  o.send_buffer = 4096;  // the kernel takes little, so output queues up in the engine
  return o;
}

// Every byte the server read while its reading was paused reaches the handler: the
// client sends everything before reading anything and must get all of it back.
TEST_P(BackpressureTest, InputArrivingWhileReadingIsPausedReachesTheHandler) {
  WakingLineEcho handler;
  TestServer server(handler, tiny_watermarks(GetParam()));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const std::string wire = numbered_lines(256u << 10);
  ASSERT_TRUE(c.send_all(wire));
  std::string got;
  ASSERT_TRUE(c.recv_exact(wire.size(), &got, 20000ms)) << describe(server.engine().stats());
  EXPECT_TRUE(same_bytes(wire, got));
  EXPECT_TRUE(wait_until([&] { return server.engine().stats().read_pauses >= 1; }, 2000ms));
  EXPECT_EQ(handler.closes(), 0u);
}

// The same with the peer's EOF right behind the input: everything sent before the FIN is
// answered, then the server closes (kPeerClosed).
TEST_P(BackpressureTest, EofWhilePausedStillAnswersEverythingSentBeforeIt) {
  WakingLineEcho handler;
  TestServer server(handler, tiny_watermarks(GetParam()));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const std::string wire = numbered_lines(256u << 10);
  ASSERT_TRUE(c.send_all(wire));
  ASSERT_TRUE(c.shutdown_write());
  std::string got;
  EXPECT_TRUE(c.recv_until_eof(&got, 20000ms)) << describe(server.engine().stats());
  EXPECT_TRUE(same_bytes(wire, got));
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(c.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kPeerClosed);
}

// Answers complete lines only while its output is not paused, leaving the rest for later
// (a handler that holds back while the peer is not reading).
class PoliteLineEcho : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    while (!c.read_paused()) {
      size_t nl = c.peek().find('\n');
      if (nl == std::string_view::npos) break;
      if (!c.write(c.peek().substr(0, nl + 1))) return Action::kClose;
      c.discard(nl + 1);
    }
    return Action::kNone;
  }
};

// Input a handler left while reading was paused is shown to it again once the output
// drained and reading resumed, though no new byte arrives.
TEST_P(BackpressureTest, InputLeftWhilePausedIsShownAgainOnResume) {
  PoliteLineEcho handler;
  TestServer server(handler, tiny_watermarks(GetParam()));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const std::string wire = numbered_lines(256u << 10);
  ASSERT_TRUE(c.send_all(wire));
  std::string got;
  ASSERT_TRUE(c.recv_exact(wire.size(), &got, 20000ms)) << describe(server.engine().stats());
  EXPECT_TRUE(same_bytes(wire, got));
}

// Many connections at once, each paused and resumed many times: every byte intact.
TEST_P(BackpressureTest, PausedConnectionsUnderConcurrentLoadLoseNothing) {
  WakingLineEcho handler;
  TestServer server(handler, tiny_watermarks(GetParam()));
  ASSERT_TRUE(server.start());
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), 16, &clients));
  std::vector<std::string> payloads;
  for (size_t i = 0; i < clients.size(); ++i) payloads.push_back(numbered_lines((64u << 10) + i * 999));
  EXPECT_TRUE(echo_all(clients, payloads, 30000ms)) << describe(server.engine().stats());
}

// Keeps every byte unread (a frame that never completes).
class HoardHandler : public EchoHandler {
 public:
  Action on_traffic(Conn&) override { return Action::kNone; }
};

TEST_P(BackpressureTest, InboundOverTheLimitClosesTheConnection) {
  HoardHandler handler;
  Options o = test_options(GetParam(), 1);
  o.max_inbound_buffer = 1u << 20;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  Client hoarder, other;
  ASSERT_TRUE(hoarder.connect_tcp(server.port()));
  ASSERT_TRUE(other.connect_tcp(server.port()));
  std::string chunk = make_payload(64u << 10, 7);
  size_t sent = send_until_stalled(hoarder, chunk, 8u << 20, 500ms);
  EXPECT_GT(sent, 1u << 20);
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(hoarder.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kError);
  EXPECT_EQ(rec.error, EMSGSIZE);
  EXPECT_TRUE(wait_until([&] { return server.engine().stats().inbound_overflows == 1; }, 2000ms));
  EXPECT_EQ(handler.closes(), 1u);  // the other connection is untouched
}

// Partial frames, each under max_inbound_buffer, cannot add up past max_inbound_total:
// when they pass the loop's share, the connection holding the most is closed (ENOBUFS,
// counted), not the small one whose bytes crossed the line (else one peer parked under the
// share could get everyone else closed); the others keep their input, and the gauge of held
// bytes follows every close back to zero.
TEST_P(BackpressureTest, PartialFramesOverTheTotalBudgetCloseTheLargestHolder) {
  HoardHandler handler;
  Options o = test_options(GetParam(), 1);
  o.max_inbound_buffer = 1u << 20;
  o.max_inbound_total = 1u << 20;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  const size_t big = 800u << 10, small = 150u << 10;
  auto held = [&](size_t want) {
    return eventually([&] { return server.engine().stats().inbound_held == want; }, 5000ms);
  };
  Client hog;
  std::vector<Client> smalls(2);
  ASSERT_TRUE(hog.connect_tcp(server.port()));
  ASSERT_TRUE(hog.send_all(make_payload(big, 3)));
  EXPECT_TRUE(held(big)) << describe(server.engine().stats());
  ASSERT_TRUE(smalls[0].connect_tcp(server.port()));
  ASSERT_TRUE(smalls[0].send_all(make_payload(small, 4)));
  EXPECT_TRUE(held(big + small)) << describe(server.engine().stats());
  ASSERT_TRUE(smalls[1].connect_tcp(server.port()));
  ASSERT_TRUE(smalls[1].send_all(make_payload(small, 5)));  // crosses 1 MiB
  CloseRecord rec;
  ASSERT_TRUE(handler.wait_close_for_port(hog.local_port(), &rec));
  EXPECT_EQ(rec.reason, CloseReason::kError);
  EXPECT_EQ(rec.error, ENOBUFS);
  EXPECT_TRUE(eventually([&] { return server.engine().stats().inbound_budget_closed == 1; }, 2000ms));
  EXPECT_EQ(server.engine().stats().inbound_overflows, 0u);
  EXPECT_TRUE(held(2 * small)) << describe(server.engine().stats());
  EXPECT_EQ(handler.closes(), 1u);  // the small ones keep their input
  for (Client& c : smalls) c.close();
  EXPECT_TRUE(eventually([&] { return handler.closes() == 3u; }, 5000ms));
  EXPECT_TRUE(held(0)) << describe(server.engine().stats());
}

TEST_P(BackpressureTest, ConnectionsOverMaxConnectionsAreRefusedAndCounted) {
  EchoHandler handler;
  Options o = test_options(GetParam(), 2);
  o.max_connections = 5;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  std::vector<Client> admitted(5);
  for (Client& c : admitted) {
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.echo("in"));
  }
  for (int i = 0; i < 3; ++i) {
    Client extra;
    ASSERT_TRUE(extra.connect_tcp(server.port()));  // the kernel completes the handshake
    EXPECT_EQ(extra.wait_end(3000ms), End::kEof) << i;
  }
  EXPECT_TRUE(wait_until([&] { return server.engine().stats().refused_limit == 3; }, 2000ms))
      << describe(server.engine().stats());
  for (Client& c : admitted) EXPECT_TRUE(c.echo("still served"));
  // Room again once two leave.
  for (int i = 0; i < 2; ++i) {
    uint16_t port = admitted[i].local_port();
    admitted[i].close();
    ASSERT_TRUE(handler.wait_close_for_port(port, nullptr));
  }
  std::vector<Client> more(2);
  for (Client& c : more) {
    ASSERT_TRUE(c.connect_tcp(server.port()));
    EXPECT_TRUE(c.echo("admitted again"));
  }
  EXPECT_EQ(handler.opens(), 7u);
}

TEST_P(BackpressureTest, ConnectionsOverThePerLoopLimitAreRefused) {
  EchoHandler handler;
  Options o = test_options(GetParam(), 2);
  o.max_connections_per_loop = 2;
  o.balancer = Balancer::kLeastConnections;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  std::vector<Client> clients(6);
  size_t served = 0, refused = 0;
  for (Client& c : clients) {
    ASSERT_TRUE(c.connect_tcp(server.port()));
    std::string got;
    if (c.exchange("x", 1, &got, 2000ms)) {
      ++served;
    } else {
      ++refused;
    }
  }
  EXPECT_EQ(served, 4u);
  EXPECT_EQ(refused, 2u);
  // The client may see its close before the server has counted it (another thread).
  EXPECT_TRUE(eventually([&] { return server.engine().stats().refused_limit == 2; }))
      << describe(server.engine().stats());
}

// Per source IP: 127.0.0.1 may hold 3 connections, the rest are closed at accept and
// counted; another source (127.0.0.2) is not affected; a slot frees when one leaves.
TEST_P(BackpressureTest, PerSourceCapRefusesTheExcessOfOneSourceOnly) {
  EchoHandler handler;
  Options o = test_options(GetParam(), 2);
  o.max_connections_per_source = 3;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  std::vector<Client> admitted(3);
  for (Client& c : admitted) {
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.echo("in"));
  }
  for (int i = 0; i < 2; ++i) {
    Client extra;
    ASSERT_TRUE(extra.connect_tcp(server.port()));
    EXPECT_EQ(extra.wait_end(3000ms), End::kEof) << i;
  }
  EXPECT_TRUE(wait_until([&] { return server.engine().stats().refused_source_limit == 2; },
                         2000ms))
      << describe(server.engine().stats());
  std::vector<Client> other(3);  // a different source has its own allowance
  for (Client& c : other) {
    ASSERT_TRUE(c.connect(server.addr(), kIoTimeout, "127.0.0.2"));
    ASSERT_TRUE(c.echo("other source"));
  }
  uint16_t port = admitted[0].local_port();
  admitted[0].close();
  ASSERT_TRUE(handler.wait_close_for_port(port, nullptr));
  Client again;
  ASSERT_TRUE(again.connect_tcp(server.port()));
  EXPECT_TRUE(again.echo("room again"));
  for (Client& c : admitted) {
    if (c.is_open()) {
      EXPECT_TRUE(c.echo("still served"));
    }
  }
  EXPECT_TRUE(eventually([&] { return server.engine().stats().refused_source_limit == 2; }))
      << describe(server.engine().stats());
  EXPECT_EQ(server.engine().stats().refused_limit, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, BackpressureTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
