// SPDX-License-Identifier: MIT
// Engine::shutdown(deadline), the graceful drain, over real sockets on both backends:
// requests already received are all answered before their connections close; idle
// connections close at once; the listener refuses new connections at once; connections
// still busy at the deadline (a partial request, output the peer never reads) are closed
// then and counted; the engine stops as soon as the last connection is done.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <ringnet/worker_pool.h>

#include <set>
#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// "N\n" -> "ok N\n"; counts the requests it has answered. A slow server: each answer
// takes `work` (it sleeps, standing in for real work), at most `per_call` are answered
// per on_traffic and it wakes itself for the rest, so requests it has received wait,
// unanswered, in its inbound buffer.
class CountingLineHandler : public EchoHandler {
 public:
  explicit CountingLineHandler(int per_call = 1 << 30,
                               std::chrono::microseconds work = std::chrono::microseconds(0))
      : per_call_(per_call), work_(work) {}
  Action on_traffic(Conn& c) override {
    std::string_view in = c.peek();
    size_t at = 0;
    std::string out;
    int answered = 0;
    for (size_t nl; answered < per_call_ && (nl = in.find('\n', at)) != std::string_view::npos;
         at = nl + 1, ++answered) {
      out += "ok ";
      out += in.substr(at, nl + 1 - at);
      received_.fetch_add(1);
      if (work_.count() > 0) std::this_thread::sleep_for(work_);
      if (in.substr(at, nl - at) == "flood") out += std::string(16u << 20, 'f');
    }
    c.discard(at);
    if (c.peek().find('\n') != std::string_view::npos) c.wake();  // more to answer
    if (!out.empty() && !c.write(out)) return Action::kClose;
    if (c.draining()) saw_draining_.store(true);
    return Action::kNone;
  }
  std::atomic<int> received_{0};
  std::atomic<bool> saw_draining_{false};

 private:
  int per_call_;
  std::chrono::microseconds work_;
};

std::string requests(int n, std::string* replies) {
  std::string wire;
  for (int i = 0; i < n; ++i) {
    wire += std::to_string(i) + "\n";
    *replies += "ok " + std::to_string(i) + "\n";
  }
  return wire;
}

class DrainTest : public testing::TestWithParam<Backend> {};

TEST_P(DrainTest, EveryRequestReceivedBeforeShutdownIsAnswered) {
  CountingLineHandler handler(10, std::chrono::microseconds(50));  // ~0.25 s of work
  Options o = test_options(GetParam(), 2);
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  std::vector<Client> busy;
  ASSERT_TRUE(connect_many(server.port(), 20, &busy));
  Client idle;
  ASSERT_TRUE(idle.connect_tcp(server.port()));
  std::string replies;
  std::string wire = requests(500, &replies);
  for (Client& c : busy) ASSERT_TRUE(c.send_all(wire));
  // Every request has been read by the server, most are not answered yet.
  const uint64_t total = 20 * wire.size();
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_in == total; }, 5000ms,
                         Millis(0)));
  const int answered_before = handler.received_.load();

  Clock::time_point t0 = Clock::now();
  server.engine().shutdown(3000ms);
  EXPECT_EQ(idle.wait_end(1000ms), End::kEof);  // idle: closed at once
  // The listener is closed at once: new connections are refused.
  EXPECT_TRUE(wait_until(
      [&] {
        Client late;
        return !late.connect_tcp(server.port(), "127.0.0.1", 200ms);
      },
      1000ms));
  for (size_t i = 0; i < busy.size(); ++i) {
    std::string got;
    EXPECT_EQ(busy[i].wait_end(5000ms, &got), End::kEof) << "client " << i;
    EXPECT_TRUE(same_bytes(replies, got)) << "client " << i;
  }
  server.engine().wait();
  EXPECT_LT(Clock::now() - t0, 2000ms);  // done long before the deadline
  EXPECT_LT(answered_before, 20 * 500) << "the drain had nothing left to finish";
  EXPECT_EQ(handler.received_.load(), 20 * 500);
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.drain_deadline_closed, 0u) << describe(st);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kShutdown)], 21u) << describe(st);
}

TEST_P(DrainTest, ConnectionsStillBusyAtTheDeadlineAreClosedAndCounted) {
  CountingLineHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client partial, stuck, done;
  ASSERT_TRUE(partial.connect_tcp(server.port()));
  ASSERT_TRUE(stuck.connect_tcp(server.port()));
  ASSERT_TRUE(done.connect_tcp(server.port()));
  ASSERT_TRUE(partial.send_all("12"));      // a request that never completes
  ASSERT_TRUE(stuck.send_all("flood\n"));   // 16 MiB answer the client never reads
  ASSERT_TRUE(done.send_all("7\n"));
  ASSERT_TRUE(wait_until([&] { return handler.received_.load() == 2; }, 5000ms));

  Clock::time_point t0 = Clock::now();
  server.engine().shutdown(500ms);
  std::string got;
  EXPECT_EQ(done.wait_end(2000ms, &got), End::kEof);
  EXPECT_EQ(got, "ok 7\n");
  server.engine().wait();
  Millis took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 1500ms);
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.drain_deadline_closed, 2u) << describe(st);
  EXPECT_GT(st.outbound_dropped, 0u) << describe(st);
  EXPECT_EQ(partial.wait_end(1000ms), End::kEof);
}

TEST_P(DrainTest, HandlersSeeTheDrainingFlag) {
  CountingLineHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("1"));  // partial: keeps the connection open through the drain
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_in == 1; }, 5000ms));
  EXPECT_FALSE(handler.saw_draining_.load());
  server.engine().shutdown(2000ms);
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(c.send_all("\n"));  // completes the request while draining
  std::string got;
  EXPECT_EQ(c.wait_end(3000ms, &got), End::kEof);
  EXPECT_EQ(got, "ok 1\n");
  EXPECT_TRUE(handler.saw_draining_.load());
}

TEST_P(DrainTest, PoolJobsInFlightAreAnsweredBeforeTheDrainCloses) {
  WorkerPool pool({.threads = 2});
  PoolLineHandler handler(pool, 300ms);
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(pool.start());
  ASSERT_TRUE(server.start());
  Client a, b, idle;
  ASSERT_TRUE(a.connect_tcp(server.port()));
  ASSERT_TRUE(b.connect_tcp(server.port()));
  ASSERT_TRUE(idle.connect_tcp(server.port()));
  ASSERT_TRUE(a.send_all("1\n2\n"));
  ASSERT_TRUE(b.send_all("3\n"));
  ASSERT_TRUE(wait_until([&] { return pool.stats().submitted == 3; }, 5000ms));
  server.engine().shutdown(5000ms);
  EXPECT_EQ(idle.wait_end(1000ms), End::kEof);  // idle: closed at once
  std::string got_a, got_b;
  ASSERT_TRUE(a.recv_until_eof(&got_a, 3000ms));
  ASSERT_TRUE(b.recv_until_eof(&got_b, 3000ms));
  // Two pool threads: the two answers may come in either order.
  EXPECT_TRUE(got_a == "done 1\ndone 2\n" || got_a == "done 2\ndone 1\n") << got_a;
  EXPECT_EQ(got_b, "done 3\n");
  server.engine().wait();
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.drain_deadline_closed, 0u) << describe(st);
  pool.shutdown();  // before the engine is destroyed: a pool thread may still be in wake()
  EXPECT_EQ(pool.stats().results_delivered, 3u);
}

TEST_P(DrainTest, PoolJobStuckPastTheDeadlineIsClosedAndCounted) {
  WorkerPool pool({.threads = 1});
  PoolLineHandler handler(pool, 1500ms);
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(pool.start());
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.send_all("9\n"));
  ASSERT_TRUE(wait_until([&] { return pool.stats().busy_threads == 1; }, 5000ms));
  Clock::time_point t0 = Clock::now();
  server.engine().shutdown(300ms);
  std::string got;
  EXPECT_EQ(c.wait_end(2000ms, &got), End::kEof);
  EXPECT_EQ(got, "");
  server.engine().wait();
  EXPECT_LT(Clock::now() - t0, 1200ms);  // the engine did not wait for the job
  EXPECT_EQ(server.engine().stats().drain_deadline_closed, 1u);
  pool.shutdown();  // the job ends; its answer finds no connection (nor a running loop)
  EXPECT_EQ(pool.stats().results_discarded, 1u);
  EXPECT_EQ(pool.stats().results_delivered, 0u);
}

// CountingLineHandler, except that "block\n" keeps the loop busy for 300 ms: bytes that
// arrive meanwhile wait in the kernel, unread, while a shutdown is requested.
class BlockingLineHandler : public CountingLineHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.peek() == "block\n") {
      c.discard();
      blocking.store(true);
      std::this_thread::sleep_for(300ms);
      c.write("unblocked\n").ignore();
      return Action::kNone;
    }
    return CountingLineHandler::on_traffic(c);
  }
  std::atomic<bool> blocking{false};
};

// A request the kernel received before the drain began is served even though the engine
// had not read it yet: on a keep-alive connection that looked idle, and on a connection
// accepted but not yet opened by its loop. Connections with nothing to do still close.
TEST_P(DrainTest, RequestsTheKernelHeldWhenTheDrainBeganAreAnswered) {
  BlockingLineHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  Client blocker, keepalive, idle;
  ASSERT_TRUE(blocker.connect_tcp(server.port()));
  ASSERT_TRUE(keepalive.connect_tcp(server.port()));
  ASSERT_TRUE(idle.connect_tcp(server.port()));
  std::string got;
  ASSERT_TRUE(keepalive.exchange("1\n", 5, &got));
  ASSERT_EQ(got, "ok 1\n");
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().open == 3; }, 5000ms));
  // The loop blocks; meanwhile a request arrives on the idle keep-alive connection and a
  // new connection is accepted (handed to the blocked loop) with a request of its own.
  ASSERT_TRUE(blocker.send_all("block\n"));
  ASSERT_TRUE(wait_until([&] { return handler.blocking.load(); }, 5000ms));
  ASSERT_TRUE(keepalive.send_all("2\n"));
  Client late;
  ASSERT_TRUE(late.connect_tcp(server.port()));
  ASSERT_TRUE(late.send_all("3\n"));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().queued_tasks >= 1; }, 5000ms))
      << "the acceptor never handed the new connection over";
  server.engine().shutdown(3000ms);
  got.clear();
  EXPECT_EQ(keepalive.wait_end(3000ms, &got), End::kEof);
  EXPECT_EQ(got, "ok 2\n");
  got.clear();
  EXPECT_EQ(late.wait_end(3000ms, &got), End::kEof);
  EXPECT_EQ(got, "ok 3\n");
  got.clear();
  EXPECT_EQ(blocker.wait_end(3000ms, &got), End::kEof);
  EXPECT_EQ(got, "unblocked\n");
  EXPECT_EQ(idle.wait_end(3000ms), End::kEof);
  server.engine().wait();
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.drain_deadline_closed, 0u) << describe(st);
  EXPECT_EQ(handler.received_.load(), 3);
}

// Clients that never stop sending numbered requests, each answered by a 20 ms pool job,
// while the engine drains: every request the handler took is answered exactly once
// before its connection closes (a request the server never read goes unanswered, and the
// client sees the close); nothing is cut at the deadline.
class NumberedPoolHandler : public EchoHandler {
 public:
  explicit NumberedPoolHandler(WorkerPool& pool) : pool_(pool) {}
  Action on_traffic(Conn& c) override {
    size_t nl;
    while ((nl = c.peek().find('\n')) != std::string_view::npos) {
      std::string id(c.next(nl + 1).substr(0, nl));
      taken_.fetch_add(1);
      Status s = pool_.submit(
          c,
          [id] {
            std::this_thread::sleep_for(20ms);
            return id + "\n";
          },
          [this](Conn& conn, std::string&& answer) {
            if (conn.write(answer)) answered_.fetch_add(1);
          });
      if (!s) return Action::kClose;
    }
    return Action::kNone;
  }
  std::atomic<int> taken_{0}, answered_{0};

 private:
  WorkerPool& pool_;
};

TEST_P(DrainTest, UnderContinuousLoadEveryRequestTakenIsAnswered) {
  WorkerPool pool({.threads = 8, .queue_capacity = 100000});
  ASSERT_TRUE(pool.start());
  NumberedPoolHandler handler(pool);
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  constexpr int kClients = 20;
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), kClients, &clients));
  // Each client keeps 8 requests in flight until its connection ends.
  std::atomic<bool> drain_started{false};
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kClients);
  std::vector<int> answered(kClients, 0);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client& c = clients[static_cast<size_t>(i)];
      std::set<int> outstanding;
      int next = 0;
      std::string buf;
      for (;;) {
        std::string wire;
        while (outstanding.size() < 8) {
          int id = i * 1000000 + next++;
          outstanding.insert(id);
          wire += std::to_string(id) + "\n";
        }
        if (!wire.empty() && ::send(c.fd(), wire.data(), wire.size(), MSG_NOSIGNAL) < 0) {
          if (!drain_started.load()) failures[i] = "send failed before the drain";
        }
        // Take what has arrived, then top the requests up again at once.
        std::string got;
        End end = c.readable_within(100ms) ? c.wait_end(1ms, &got) : End::kTimeout;
        buf += got;
        size_t nl;
        while ((nl = buf.find('\n')) != std::string::npos) {
          int id = std::stoi(buf.substr(0, nl));
          buf.erase(0, nl + 1);
          if (outstanding.erase(id) != 1) failures[i] = "unexpected or repeated answer";
          ++answered[i];
        }
        if (end == End::kEof || end == End::kReset || end == End::kError) {
          if (!drain_started.load()) failures[i] = "connection ended before the drain";
          return;
        }
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return handler.answered_.load() >= 500; }, 10000ms));
  drain_started.store(true);
  server.engine().shutdown(3000ms);
  for (std::thread& t : threads) t.join();
  server.engine().wait();
  pool.shutdown();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(failures[i], "") << "client " << i;
  int client_answers = 0;
  for (int n : answered) client_answers += n;
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.drain_deadline_closed, 0u) << describe(st);
  EXPECT_EQ(handler.taken_.load(), handler.answered_.load());
  EXPECT_EQ(client_answers, handler.answered_.load());
  EXPECT_EQ(pool.stats().results_discarded, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, DrainTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
