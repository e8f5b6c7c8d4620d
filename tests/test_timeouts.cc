// SPDX-License-Identifier: MIT
// Connection timeouts over real sockets, on both backends: idle (nothing in or out), read
// (bytes left unconsumed: a frame that never completes) and write (output that cannot
// drain). Each fires within tolerance after its deadline, never before, and on_close says
// which one; activity and consumed input keep a connection alive; a connection that
// closes first never sees its timer; 1,000 idle connections all time out.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// Generous upper bound for CI: ticks are 10 ms, but a loaded 2-core box may be late.
constexpr Millis kLate{400};

Options timeout_options(Backend backend, Millis idle, Millis read, Millis write) {
  Options o = test_options(backend, 1);
  o.idle_timeout = idle;
  o.read_timeout = read;
  o.write_timeout = write;
  return o;
}

// Consumes whole lines only ("\n"-terminated) and echoes them; a partial line stays
// unread, which is what read_timeout measures.
class LineHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    std::string_view in = c.peek();
    size_t end = in.rfind('\n');
    if (end == std::string_view::npos) return Action::kNone;
    if (!c.write(in.substr(0, end + 1))) return Action::kClose;
    c.discard(end + 1);
    return Action::kNone;
  }
};

// On its first byte, queues `bytes` of output the client will never read.
class FloodHandler : public EchoHandler {
 public:
  explicit FloodHandler(size_t bytes) : bytes_(bytes) {}
  Action on_traffic(Conn& c) override {
    c.discard();
    if (!flooded_.exchange(true)) {
      std::string chunk(64 * 1024, 'w');
      for (size_t sent = 0; sent < bytes_; sent += chunk.size()) {
        if (!c.write(chunk)) return Action::kClose;
      }
    }
    return Action::kNone;
  }
  std::atomic<bool> flooded_{false};

 private:
  size_t bytes_;
};

// Opens a client, waits for the server to close it, and returns how long that took.
struct Timed {
  CloseRecord rec;
  Millis elapsed{0};
};

testing::AssertionResult wait_server_close(EchoHandler& h, Client& c, Clock::time_point since,
                                           Timed* out, Millis timeout = Millis(5000)) {
  if (auto r = h.wait_close_for_port(c.local_port(), &out->rec, timeout); !r) return r;
  out->elapsed = std::chrono::duration_cast<Millis>(Clock::now() - since);
  return testing::AssertionSuccess();
}

class TimeoutTest : public testing::TestWithParam<Backend> {};

TEST_P(TimeoutTest, IdleConnectionClosesAfterIdleTimeout) {
  EchoHandler handler;
  TestServer server(handler, timeout_options(GetParam(), 250ms, 0ms, 0ms));
  ASSERT_TRUE(server.start());
  Client c;
  Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(c.connect_tcp(server.port()));
  Timed t;
  ASSERT_TRUE(wait_server_close(handler, c, t0, &t));
  EXPECT_EQ(t.rec.reason, CloseReason::kIdleTimeout);
  EXPECT_GE(t.elapsed, 250ms);
  EXPECT_LT(t.elapsed, 250ms + kLate);
  EXPECT_EQ(c.wait_end(2000ms), End::kEof);
  EXPECT_TRUE(wait_until(
      [&] { return server.engine().stats().closed_by_reason[int(CloseReason::kIdleTimeout)] == 1; },
      2000ms));
}

TEST_P(TimeoutTest, TrafficKeepsAConnectionAliveThenIdleClosesIt) {
  EchoHandler handler;
  TestServer server(handler, timeout_options(GetParam(), 300ms, 0ms, 0ms));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  // 1.2 s of traffic every 100 ms: four idle periods, none of them idle.
  for (int i = 0; i < 12; ++i) {
    std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(c.echo("ping " + std::to_string(i))) << i;
  }
  EXPECT_EQ(handler.closes(), 0u);
  Clock::time_point last = Clock::now();
  Timed t;
  ASSERT_TRUE(wait_server_close(handler, c, last, &t));
  EXPECT_EQ(t.rec.reason, CloseReason::kIdleTimeout);
  EXPECT_GE(t.elapsed, 300ms - 10ms);  // measured from after the last echo came back
  EXPECT_LT(t.elapsed, 300ms + kLate);
}

TEST_P(TimeoutTest, PartialFrameClosesAfterReadTimeoutCompleteFramesDoNot) {
  LineHandler handler;
  TestServer server(handler, timeout_options(GetParam(), 0ms, 250ms, 0ms));
  ASSERT_TRUE(server.start());
  Client partial, whole;
  ASSERT_TRUE(whole.connect_tcp(server.port()));
  ASSERT_TRUE(partial.connect_tcp(server.port()));
  Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(partial.send_all("no newline yet"));
  // More bytes that still do not complete the frame do not reset the deadline.
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(partial.send_all(" still none"));
  for (int i = 0; i < 6; ++i) {  // 600 ms of complete lines on the other connection
    std::string line = "line " + std::to_string(i) + "\n";
    std::string got;
    ASSERT_TRUE(whole.exchange(line, line.size(), &got));
    EXPECT_EQ(got, line);
    std::this_thread::sleep_for(100ms);
  }
  Timed t;
  ASSERT_TRUE(wait_server_close(handler, partial, t0, &t));
  EXPECT_EQ(t.rec.reason, CloseReason::kReadTimeout);
  EXPECT_GE(t.elapsed, 250ms);
  EXPECT_LT(t.elapsed, 250ms + kLate + 400ms);  // the test itself slept in between
  EXPECT_EQ(handler.closes(), 1u);  // the connection sending whole lines is still open
}

TEST_P(TimeoutTest, OutputThatCannotDrainClosesAfterWriteTimeout) {
  FloodHandler handler(32u << 20);  // far more than both socket buffers hold
  TestServer server(handler, timeout_options(GetParam(), 0ms, 0ms, 300ms));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(c.send_all("x"));  // and never read
  Timed t;
  ASSERT_TRUE(wait_server_close(handler, c, t0, &t));
  EXPECT_EQ(t.rec.reason, CloseReason::kWriteTimeout);
  EXPECT_GE(t.elapsed, 300ms);
  EXPECT_LT(t.elapsed, 300ms + kLate);
  EngineStats st = server.engine().stats();
  EXPECT_GT(st.outbound_dropped, 0u) << describe(st);
}

TEST_P(TimeoutTest, ClosedBeforeTheDeadlineNeverTimesOut) {
  EchoHandler handler;
  TestServer server(handler, timeout_options(GetParam(), 200ms, 200ms, 200ms));
  ASSERT_TRUE(server.start());
  for (int i = 0; i < 20; ++i) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.echo("hello"));
    uint16_t port = c.local_port();
    c.close();
    CloseRecord rec;
    ASSERT_TRUE(handler.wait_close_for_port(port, &rec));
    EXPECT_EQ(rec.reason, CloseReason::kPeerClosed);
  }
  std::this_thread::sleep_for(500ms);  // every deadline has passed: nothing may fire
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.closed, 20u) << describe(st);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kPeerClosed)], 20u) << describe(st);
}

class PerConnIdleHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    c.set_idle_timeout(c.remote_addr().port() % 2 == 0 ? 200ms : 0ms);
    return EchoHandler::on_open(c);
  }
};

TEST_P(TimeoutTest, PerConnectionIdleTimeoutOverridesTheOption) {
  PerConnIdleHandler handler;
  TestServer server(handler, timeout_options(GetParam(), 0ms, 0ms, 0ms));
  ASSERT_TRUE(server.start());
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), 10, &clients));
  std::this_thread::sleep_for(200ms + kLate + 200ms);
  for (Client& c : clients) {
    bool even = c.local_port() % 2 == 0;
    std::optional<CloseRecord> rec = handler.close_for_port(c.local_port());
    if (even) {
      ASSERT_TRUE(rec.has_value()) << c.local_port();
      EXPECT_EQ(rec->reason, CloseReason::kIdleTimeout);
    } else {
      EXPECT_FALSE(rec.has_value()) << c.local_port();
      EXPECT_TRUE(c.echo("still here"));
    }
  }
}

TEST_P(TimeoutTest, AThousandIdleConnectionsAllTimeOut) {
  ASSERT_TRUE(ensure_fd_limit(2500));
  EchoHandler handler;
  TestServer server(handler, timeout_options(GetParam(), 300ms, 0ms, 0ms));
  ASSERT_TRUE(server.start());
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), 1000, &clients));
  ASSERT_TRUE(handler.wait_closes(1000, 5000ms)) << describe(server.engine().stats());
  // The counters are bumped just after on_close returns.
  EXPECT_TRUE(wait_until(
      [&] {
        return server.engine().stats().closed_by_reason[int(CloseReason::kIdleTimeout)] == 1000;
      },
      2000ms))
      << describe(server.engine().stats());
  for (Client& c : clients) ASSERT_EQ(c.wait_end(2000ms), End::kEof);
}

INSTANTIATE_TEST_SUITE_P(Backends, TimeoutTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
