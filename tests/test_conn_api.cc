// SPDX-License-Identifier: MIT
// The Conn / ConnHandle / ticker API seen from a handler: async_write from other threads
// (order per thread, completion on the loop thread, soft failure once closed), wake(),
// on_tick cadence and shutdown, and peek/next/discard with partial frames left buffered.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

class ConnApiTest : public testing::TestWithParam<Backend> {};

// Connects a client, records the server side of it (its handle), then closes the client
// and waits until the server has closed its side too.
testing::AssertionResult open_then_close(TestServer& server, EchoHandler& handler,
                                         OpenRecord* entry) {
  Client c;
  if (auto r = c.connect_tcp(server.port()); !r) return r;
  const uint16_t port = c.local_port();
  if (auto r = handler.wait_open_for_port(port, entry); !r) return r;
  c.close();
  return handler.wait_close_for_port(port, nullptr);
}

// ---- async_write ------------------------------------------------------------------------

// Four threads each async_write 2,000 numbered records; the client sees all 8,000, and each
// thread's records in the order that thread wrote them; every completion reports ok.
TEST_P(ConnApiTest, AsyncWriteFromFourThreadsKeepsPerThreadOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  // Declared before the server: callbacks may run until the server is gone.
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  OpenRecord entry;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &entry));

  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      for (int i = 0; i < kPerThread; ++i) {
        char rec[16];
        std::snprintf(rec, sizeof(rec), "%d:%06d\n", t, i);  // 9 bytes
        entry.handle.async_write(rec, [&](Status s) { (s.is_ok() ? ok : failed).fetch_add(1); });
      }
    });
  }
  for (auto& th : threads) th.join();

  const size_t total = size_t{kThreads} * kPerThread * 9;
  std::string got;
  ASSERT_TRUE(c.recv_exact(total, &got, Millis(20000)));
  EXPECT_FALSE(c.readable_within(Millis(50))) << "more bytes than were written";

  std::vector<int> next_seq(kThreads, 0);
  size_t bad = 0;
  for (size_t off = 0; off + 9 <= got.size(); off += 9) {
    int t = -1;
    int seq = -1;
    if (std::sscanf(got.c_str() + off, "%d:%d", &t, &seq) != 2 || t < 0 || t >= kThreads ||
        got[off + 8] != '\n') {
      ADD_FAILURE() << "garbled record at offset " << off;
      break;
    }
    if (seq != next_seq[t]) ++bad;
    next_seq[t] = seq + 1;
  }
  EXPECT_EQ(bad, 0u) << "records out of order within a thread";
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next_seq[t], kPerThread) << "thread " << t;
  EXPECT_TRUE(wait_until([&] { return ok.load() + failed.load() == kThreads * kPerThread; },
                         Millis(5000)));
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(failed.load(), 0);
}

// The completion callback of async_write runs on the connection's loop thread.
TEST_P(ConnApiTest, AsyncWriteCallbackRunsOnLoopThread) {
  std::promise<std::thread::id> cb_thread;  // outlives the server
  auto fut = cb_thread.get_future();
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  OpenRecord entry;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &entry));

  entry.handle.async_write("hello", [&](Status s) {
    EXPECT_TRUE(s.is_ok()) << s.message();
    cb_thread.set_value(std::this_thread::get_id());
  });
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(fut.get(), entry.thread);
  EXPECT_NE(entry.thread, std::this_thread::get_id());
  std::string got;
  ASSERT_TRUE(c.recv_exact(5, &got));
  EXPECT_EQ(got, "hello");
}

// Once the connection has closed, async_write's callback reports an error.
TEST_P(ConnApiTest, AsyncWriteAfterCloseReportsError) {
  std::promise<Status> result;  // outlives the server
  auto fut = result.get_future();
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  OpenRecord entry;
  ASSERT_TRUE(open_then_close(server, handler, &entry));

  entry.handle.async_write("too late", [&](Status s) { result.set_value(s); });
  entry.handle.wake();  // ignored, must not crash
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "callback never ran";
  EXPECT_FALSE(fut.get().is_ok());
}

// async_write to a peer that never reads: once the connection's queued output is over
// the high watermark, further writes are refused (the callback says so, EAGAIN) and
// counted, instead of growing the server's memory without bound. Writes are taken again
// once the peer has read enough.
TEST_P(ConnApiTest, AsyncWriteOverTheHighWatermarkIsRefused) {
  EchoHandler handler;
  Options o = test_options(GetParam(), 1);
  o.outbound_high_watermark = 256u << 10;
  o.outbound_low_watermark = 64u << 10;
  o.send_buffer = 4096;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  OpenRecord entry;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &entry));
  const std::string chunk = make_payload(16u << 10, 5);
  std::atomic<int> ok{0}, refused{0}, other{0};
  auto count = [&](Status s) {
    if (s) {
      ok.fetch_add(1);
    } else if (s.code() == EAGAIN) {
      refused.fetch_add(1);
    } else {
      other.fetch_add(1);
    }
  };
  constexpr int kWrites = 1000;  // 16 MiB in all
  for (int i = 0; i < kWrites; ++i) entry.handle.async_write(chunk, count);
  ASSERT_TRUE(wait_until([&] { return ok.load() + refused.load() + other.load() == kWrites; },
                         10000ms));
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused.load(), 0);
  // What was taken is bounded by the watermark plus what the kernel buffers hold.
  EXPECT_LT(static_cast<size_t>(ok.load()) * chunk.size(), 8u << 20);
  EXPECT_TRUE(wait_until(
      [&] { return server.engine().stats().writes_refused == static_cast<uint64_t>(refused.load()); },
      2000ms))
      << describe(server.engine().stats());
  // Every byte taken arrives, in order; then writes are taken again.
  std::string got;
  ASSERT_TRUE(c.recv_exact(static_cast<size_t>(ok.load()) * chunk.size(), &got, 10000ms));
  for (size_t at = 0; at < got.size(); at += chunk.size()) {
    ASSERT_TRUE(same_bytes(chunk, std::string_view(got).substr(at, chunk.size()))) << at;
  }
  std::promise<Status> again;
  entry.handle.async_write("more", [&](Status s) { again.set_value(s); });
  EXPECT_TRUE(again.get_future().get());
  got.clear();
  EXPECT_TRUE(c.recv_exact(4, &got));
  EXPECT_EQ(got, "more");
}

// A handle to a closed connection never reaches a later connection (which may reuse the
// same slot): its bytes are dropped and its callback fails.
TEST_P(ConnApiTest, StaleHandleDoesNotReachNewConnection) {
  std::promise<Status> result;  // outlives the server
  auto fut = result.get_future();
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  OpenRecord entry_a;
  ASSERT_TRUE(open_then_close(server, handler, &entry_a));

  Client b;
  ASSERT_TRUE(b.connect_tcp(server.port()));
  OpenRecord entry_b;
  ASSERT_TRUE(handler.wait_open_for_port(b.local_port(), &entry_b));

  entry_a.handle.async_write("STALE", [&](Status s) { result.set_value(s); });
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(fut.get().is_ok());
  EXPECT_FALSE(b.readable_within(Millis(200))) << "stale write reached the new connection";
  ASSERT_TRUE(b.echo("x"));
}

// One 4 MiB async_write from another thread arrives intact.
TEST_P(ConnApiTest, AsyncWriteLargePayloadArrivesIntact) {
  std::promise<Status> result;  // outlives the server
  auto fut = result.get_future();
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  OpenRecord entry;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &entry));

  const std::string payload = make_payload(4 * 1024 * 1024, 4242);
  entry.handle.async_write(payload, [&](Status s) { result.set_value(s); });
  std::string got;
  ASSERT_TRUE(c.recv_exact(payload.size(), &got, Millis(20000)));
  EXPECT_TRUE(same_bytes(payload, got));
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(fut.get().is_ok());
}

// ---- wake ---------------------------------------------------------------------------------

// Answers "W" to every on_traffic that has no inbound bytes (a wake-up), echoes otherwise.
class WakeHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.inbound_buffered() == 0) {
      wakes.fetch_add(1);
      c.write("W").ignore();
      return Action::kNone;
    }
    echo(c);
    return Action::kNone;
  }
  std::atomic<int> wakes{0};
};

// Each wake() from another thread produces one on_traffic with nothing buffered.
TEST_P(ConnApiTest, WakeTriggersOnTraffic) {
  WakeHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  OpenRecord entry;
  ASSERT_TRUE(handler.wait_open_for_port(c.local_port(), &entry));
  EXPECT_FALSE(c.readable_within(Millis(50)));  // nothing before the first wake

  for (int i = 1; i <= 3; ++i) {
    entry.handle.wake();
    std::string got;
    ASSERT_TRUE(c.recv_exact(1, &got, Millis(5000))) << "wake " << i;
    EXPECT_EQ(got, "W");
    EXPECT_EQ(handler.wakes.load(), i);
  }
  EXPECT_FALSE(c.readable_within(Millis(100))) << "on_traffic ran without a wake";
  EXPECT_EQ(handler.wakes.load(), 3);
}

// A connection whose handler keeps waking itself (work it does a slice at a time) gets
// one slice per loop iteration, so it cannot starve the loop's other connections: tasks a
// task posts run after the next poll, not in the same batch (which let 1,024 slices, the
// task budget, run between two polls).
class SpinHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.context() != nullptr || c.peek() == "spin\n") {
      c.discard(c.peek().size());
      c.set_context(this);
      slices.fetch_add(1);
      auto until = Clock::now() + std::chrono::microseconds(100);
      while (Clock::now() < until) {
      }
      c.wake();  // more to do: come back
      return Action::kNone;
    }
    return EchoHandler::on_traffic(c);
  }
  std::atomic<uint64_t> slices{0};
};

TEST_P(ConnApiTest, AConnectionThatKeepsWakingItselfDoesNotStarveTheOthers) {
  SpinHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client spinner, other;
  ASSERT_TRUE(spinner.connect_tcp(server.port()));
  ASSERT_TRUE(other.connect_tcp(server.port()));
  ASSERT_TRUE(other.echo("warm"));
  ASSERT_TRUE(spinner.send_all("spin\n"));
  ASSERT_TRUE(wait_until([&] { return handler.slices.load() > 10; }, 5000ms));
  // Counted in loop iterations, not time (a slow build or a busy machine only makes each
  // round trip span more of them): every iteration polls once (batch_events records each
  // poll), and the spinner gets at most one slice per iteration. A batch without a poll
  // ran up to 1,024 (the task budget).
  // The loop runs on while the two counters are read: polls are read first at the start
  // and last at the end, so iterations between two reads (this thread preempted, as under
  // ASan with another suite beside it: 165 slices against 130 polls) count as polls only.
  const uint64_t polls0 = server.engine().stats().batch_events.count;
  const uint64_t slices0 = handler.slices.load();
  for (int i = 0; i < 41; ++i) ASSERT_TRUE(other.echo("ping " + std::to_string(i)));
  const uint64_t slices = handler.slices.load() - slices0;
  const uint64_t polls = server.engine().stats().batch_events.count - polls0;
  EXPECT_GT(slices, 0u) << "the spinner stopped: the test did not test it";
  EXPECT_LE(slices, polls + 2) << "slices per poll over 41 echoes: " << slices << " / " << polls;
}

// ---- on_tick -------------------------------------------------------------------------------

class TickHandler : public EchoHandler {
 public:
  explicit TickHandler(Millis delay, int shutdown_at = 0)
      : delay_(delay), shutdown_at_(shutdown_at) {}

  TickResult on_tick() override {
    std::lock_guard<std::mutex> lock(mu_);
    times_.push_back(Clock::now());
    thread_ = std::this_thread::get_id();
    int n = static_cast<int>(times_.size());
    if (shutdown_at_ > 0 && n >= shutdown_at_) return {delay_, Action::kShutdown};
    return {delay_, Action::kNone};
  }

  std::vector<Clock::time_point> times() {
    std::lock_guard<std::mutex> lock(mu_);
    return times_;
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(times_.size());
  }
  std::thread::id thread() {
    std::lock_guard<std::mutex> lock(mu_);
    return thread_;
  }

 private:
  Millis delay_;
  int shutdown_at_;
  std::mutex mu_;
  std::vector<Clock::time_point> times_;
  std::thread::id thread_;
};

Options ticker_options(Backend b, int loops) {
  Options o = test_options(b, loops);
  o.ticker = true;
  return o;
}

// The first tick comes right after start().
TEST_P(ConnApiTest, FirstTickRunsRightAfterStart) {
  TickHandler handler(Millis(1000));
  TestServer server(handler, ticker_options(GetParam(), 1));
  auto started = Clock::now();
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_until([&] { return handler.count() >= 1; }, Millis(1000)));
  EXPECT_LT(handler.times()[0] - started, Millis(300));
  EXPECT_EQ(handler.count(), 1);  // the next one is a second away
}

// With a 20 ms delay, ~400 ms bring about 20 ticks (generous bounds for a busy machine).
TEST_P(ConnApiTest, TickCadenceFollowsNextDelay) {
  TickHandler handler(Millis(20));
  TestServer server(handler, ticker_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_until([&] { return handler.count() >= 1; }, Millis(1000)));
  auto first = handler.times()[0];
  std::this_thread::sleep_until(first + Millis(400));
  int n = 0;
  for (auto t : handler.times()) n += (t - first) <= Millis(400);
  EXPECT_GE(n, 8);
  EXPECT_LE(n, 30);
}

// Ticks are never closer together than the delay they asked for (1 ms timer slack allowed).
TEST_P(ConnApiTest, TicksAreNotEarlierThanNextDelay) {
  TickHandler handler(Millis(20));
  TestServer server(handler, ticker_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_until([&] { return handler.count() >= 10; }, Millis(3000)));
  server.stop();
  auto times = handler.times();
  ASSERT_GE(times.size(), 10u);
  auto min_gap = Clock::duration::max();
  for (size_t i = 1; i < times.size(); ++i) min_gap = std::min(min_gap, times[i] - times[i - 1]);
  EXPECT_GE(min_gap, Millis(19));
}

// on_tick runs on loop 0's thread.
TEST_P(ConnApiTest, TickRunsOnLoopZeroThread) {
  TickHandler handler(Millis(10));
  TestServer server(handler, ticker_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  ASSERT_TRUE(wait_until([&] { return handler.count() >= 1; }, Millis(1000)));

  // Round robin over 2 loops: among a few connections one lands on loop 0.
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), 4, &clients));
  ASSERT_TRUE(handler.wait_opens(4));
  std::optional<OpenRecord> on_loop0;
  for (const auto& r : handler.open_records()) {
    if (r.loop == 0) on_loop0 = r;
  }
  ASSERT_TRUE(on_loop0.has_value()) << "no connection on loop 0";
  EXPECT_EQ(handler.thread(), on_loop0->thread);
}

// Returning Action::kShutdown from on_tick stops the engine: run() returns, no further
// ticks, on_shutdown ran once.
TEST_P(ConnApiTest, TickShutdownStopsRun) {
  TickHandler handler(Millis(10), /*shutdown_at=*/3);
  Engine engine(handler, ticker_options(GetParam(), 2));
  ASSERT_TRUE(engine.listen("tcp://127.0.0.1:0").is_ok());

  // run() on this (the owning) thread; a watchdog stops the engine if it never returns.
  std::mutex mu;
  std::condition_variable cv;
  bool returned = false;
  bool watchdog_fired = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return returned; })) {
      watchdog_fired = true;
      engine.stop();
    }
  });
  Status s = engine.run();
  {
    std::lock_guard<std::mutex> lock(mu);
    returned = true;
  }
  cv.notify_all();
  watchdog.join();
  ASSERT_FALSE(watchdog_fired) << "run() did not return after on_tick asked for shutdown";
  EXPECT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(handler.shutdowns(), 1);
  std::this_thread::sleep_for(Millis(50));
  EXPECT_EQ(handler.count(), 3);
  EXPECT_FALSE(engine.running());
}

// ---- peek / next / discard ----------------------------------------------------------------

// Frames are a 4-byte big-endian length and a body. Replies carry the body reversed. A
// frame is consumed only once it is complete; partial frames stay buffered.
class FrameHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    for (;;) {
      if (c.inbound_buffered() < 4) break;
      std::string_view h = c.peek(4);
      uint32_t len = (uint32_t(uint8_t(h[0])) << 24) | (uint32_t(uint8_t(h[1])) << 16) |
                     (uint32_t(uint8_t(h[2])) << 8) | uint32_t(uint8_t(h[3]));
      if (c.inbound_buffered() < 4 + size_t{len}) break;
      c.discard(4);
      std::string body(c.next(len));
      std::reverse(body.begin(), body.end());
      c.write(encode(body)).ignore();
      frames.fetch_add(1);
    }
    if (c.inbound_buffered() > 0) partial_left.fetch_add(1);
    return Action::kNone;
  }

  static std::string encode(std::string_view body) {
    std::string out;
    uint32_t len = static_cast<uint32_t>(body.size());
    out.push_back(char(len >> 24));
    out.push_back(char(len >> 16));
    out.push_back(char(len >> 8));
    out.push_back(char(len));
    out.append(body);
    return out;
  }

  std::atomic<int> frames{0};
  std::atomic<int> partial_left{0};
};

// Frames split at odd boundaries (including inside the length header) are reassembled from
// what peek() left buffered; one reply per frame, in order.
TEST_P(ConnApiTest, PartialFramesStayBufferedUntilComplete) {
  FrameHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());

  std::string stream;
  std::string expected;
  constexpr int kFrames = 40;
  for (int i = 0; i < kFrames; ++i) {
    std::string body = make_payload((i * 211) % 1800, 700 + i);  // includes empty body
    stream += FrameHandler::encode(body);
    std::reverse(body.begin(), body.end());
    expected += FrameHandler::encode(body);
  }
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  c.set_nodelay();
  const size_t cuts[] = {1, 3, 7, 2, 13, 29, 5, 61, 127, 251, 509, 1021};
  size_t off = 0;
  for (size_t k = 0; off < stream.size(); ++k) {
    size_t n = std::min(cuts[k % std::size(cuts)], stream.size() - off);
    ASSERT_TRUE(c.send_all(std::string_view(stream).substr(off, n)));
    off += n;
    std::this_thread::sleep_for(Millis(1));
  }
  std::string got;
  ASSERT_TRUE(c.recv_exact(expected.size(), &got));
  EXPECT_TRUE(same_bytes(expected, got));
  EXPECT_EQ(handler.frames.load(), kFrames);
  EXPECT_GT(handler.partial_left.load(), 0) << "no partial frame was ever left buffered";
}

// Bytes left unread in one on_traffic are shown again, with the new ones, in the next.
class WaitForTenHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(c.inbound_buffered());
    }
    if (c.inbound_buffered() < 10) return Action::kNone;
    std::string reply = "got:" + std::string(c.peek(10));
    c.discard(10);
    c.write(reply).ignore();
    return Action::kNone;
  }
  std::mutex mu;
  std::vector<size_t> seen;
};

TEST_P(ConnApiTest, UnreadBytesAreShownAgainWithNextArrival) {
  WaitForTenHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  c.set_nodelay();
  ASSERT_TRUE(c.send_all("01234"));
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(handler.mu);
        return !handler.seen.empty();
      },
      Millis(5000)));
  std::this_thread::sleep_for(Millis(50));
  ASSERT_TRUE(c.send_all("56789"));
  std::string got;
  ASSERT_TRUE(c.recv_exact(14, &got));
  EXPECT_EQ(got, "got:0123456789");
  std::lock_guard<std::mutex> lock(handler.mu);
  ASSERT_GE(handler.seen.size(), 2u);
  EXPECT_EQ(handler.seen.front(), 5u);
  EXPECT_EQ(handler.seen.back(), 10u);
}

// peek/next/discard return or drop up to n bytes (fewer if fewer are buffered), and
// inbound_buffered() follows. The handler reports every observation back to the client.
class ApiProbeHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.inbound_buffered() < 10) return Action::kNone;
    std::ostringstream r;
    r << c.peek(100) << "|" << c.peek(3) << "|" << c.inbound_buffered() << "|";
    r << c.next(2) << "|" << c.inbound_buffered() << "|";
    r << c.discard(3) << "|" << c.inbound_buffered() << "|";
    r << c.peek() << "|" << c.next(100) << "|" << c.inbound_buffered() << "|";
    r << c.discard(5) << "|" << c.peek(4).size() << "\n";
    c.write(r.str()).ignore();
    return Action::kNone;
  }
};

TEST_P(ConnApiTest, PeekNextDiscardReturnUpToNBytes) {
  ApiProbeHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("0123456789"));
  const std::string expected = "0123456789|012|10|01|8|3|5|56789|56789|0|0|0\n";
  std::string got;
  ASSERT_TRUE(c.recv_exact(expected.size(), &got));
  EXPECT_EQ(got, expected);
}

// ---- write coalescing ---------------------------------------------------------------------

// Ten write() calls and one writev() in one on_traffic leave in a single flush (one
// writev/sendmsg syscall), in order.
class ManyWritesHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    c.discard();
    for (int i = 0; i < 10; ++i) c.write(std::to_string(i)).ignore();
    std::string_view parts[] = {"a", "b", "c"};
    c.writev(parts).ignore();
    return Action::kNone;
  }
};

TEST_P(ConnApiTest, WritesInOneCallbackAreFlushedOnce) {
  ManyWritesHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(handler.wait_opens(1));
  const uint64_t before = server.engine().stats().write_calls;
  ASSERT_TRUE(c.send_all("x"));
  std::string got;
  ASSERT_TRUE(c.recv_exact(13, &got));
  EXPECT_EQ(got, "0123456789abc");
  // The loop counts the syscall after it returns, which may be after the client has read.
  EXPECT_TRUE(wait_until([&] { return server.engine().stats().write_calls > before; },
                         Millis(2000)));
  std::this_thread::sleep_for(Millis(20));
  EXPECT_EQ(server.engine().stats().write_calls - before, 1u);
}

// ---- identity -----------------------------------------------------------------------------

class AddrHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    std::string s = c.local_addr().to_string() + " " + c.remote_addr().to_string() + "\n";
    c.write(s).ignore();
    return EchoHandler::on_open(c);
  }
};

// local_addr()/remote_addr() match what the client sees from its side; on_open may write.
TEST_P(ConnApiTest, AddressesMatchClientView) {
  AddrHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const std::string expected = "127.0.0.1:" + std::to_string(server.port()) + " 127.0.0.1:" +
                               std::to_string(c.local_port()) + "\n";
  std::string got;
  ASSERT_TRUE(c.recv_exact(expected.size(), &got));
  EXPECT_EQ(got, expected);
}

// context() keeps what set_context() stored across callbacks of one connection.
class CounterHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    c.set_context(new int(0));
    return EchoHandler::on_open(c);
  }
  Action on_traffic(Conn& c) override {
    int* n = static_cast<int*>(c.context());
    c.discard();
    ++*n;
    c.write(std::to_string(*n) + ";").ignore();
    return Action::kNone;
  }
  void on_close(Conn& c, CloseInfo info) override {
    delete static_cast<int*>(c.context());
    c.set_context(nullptr);
    EchoHandler::on_close(c, info);
  }
};

TEST_P(ConnApiTest, ContextPersistsAcrossCallbacks) {
  CounterHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  std::string got;
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(c.send_all("x"));
    std::string want = std::to_string(i) + ";";
    got.clear();
    ASSERT_TRUE(c.recv_exact(want.size(), &got));
    EXPECT_EQ(got, want);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ConnApiTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
