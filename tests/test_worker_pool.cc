// SPDX-License-Identifier: MIT
// WorkerPool: blocking work off the loop, results back on the connection's loop.
//
// Over real connections (every backend): results reach the right connection on its own
// loop thread; a closed connection's result is discarded and counted; a full queue is
// reported to the handler at once; a throwing job is counted and reported; shutdown
// cancels queued connection jobs with an error; 8 x 500 requests through the pool.
// Without an engine: full-queue rejection text and counts, scheduling delay and queue
// depth, shutdown (drain / discard), lifecycle errors, histogram arithmetic.
#include <ringnet/worker_pool.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// A one-shot gate a job can block on. Every wait is bounded, so a failing test never hangs.
class Gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait(Millis timeout = kIoTimeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Opens the gate when it goes out of scope (declare it after the pool: a failed assertion
// then lets blocked jobs finish before the pool's destructor joins them).
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.open(); }
};

// Reads one '\n'-terminated line (without the '\n').
testing::AssertionResult read_line(Client& c, std::string* line) {
  line->clear();
  for (;;) {
    std::string ch;
    if (auto r = c.recv_exact(1, &ch); !r) return r << " (line so far: '" << *line << "')";
    if (ch == "\n") return testing::AssertionSuccess();
    *line += ch;
  }
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Splits inbound bytes into lines and hands each to `on_line` (set by the test before the
// server starts). Records opens and closes like EchoHandler.
class PoolHandler : public EchoHandler {
 public:
  using LineFn = std::function<void(PoolHandler&, Conn&, const std::string&)>;

  Action on_traffic(Conn& c) override {
    for (;;) {
      std::string_view v = c.peek();
      size_t nl = v.find('\n');
      if (nl == std::string_view::npos) break;
      std::string line(v.substr(0, nl));
      c.discard(nl + 1);
      on_line(*this, c, line);
    }
    return Action::kNone;
  }

  // The thread that ran on_open for this connection (its loop thread). Any thread.
  std::thread::id loop_thread_of(const Conn& c) const {
    auto r = open_for_port(c.remote_addr().port());
    return r ? r->thread : std::thread::id();
  }

  WorkerPool* pool = nullptr;
  LineFn on_line;
  std::atomic<int> done_runs{0};
  std::atomic<int> mismatches{0};
};

// Writes a submit error back to the client as "ERR <message>".
// A job's failure (it threw, or shutdown cancelled it), as one line to the client.
void reply_error(Conn& c, const Status& err) { c.write("ERR " + err.message() + "\n").ignore(); }

void reply_status(Conn& c, const Status& s) {
  if (!s) reply_error(c, s);
}

class WorkerPoolTest : public testing::TestWithParam<Backend> {
 protected:
  // Order matters: stop the engine (no more callbacks submit), then shut the pool down
  // (its last replies are dropped with the stopped loops), then destroy the engine.
  ~WorkerPoolTest() override {
    gate_.open();
    if (server_) server_->stop();
    if (pool_) pool_->shutdown();
  }

  testing::AssertionResult start(int loops, WorkerPoolOptions po) {
    pool_.emplace(std::move(po));
    if (Status s = pool_->start(); !s) return testing::AssertionFailure() << s.message();
    handler_.pool = &*pool_;
    server_.emplace(handler_, test_options(GetParam(), loops));
    return server_->start();
  }
  uint16_t port() const { return server_->port(); }
  WorkerPoolStats stats() const { return pool_->stats(); }

  Gate gate_;
  PoolHandler handler_;
  std::optional<WorkerPool> pool_;
  std::optional<TestServer> server_;
};

// ---- over connections -------------------------------------------------------------------

// Six connections on two loops each send 20 tagged requests; work runs on a pool thread,
// done runs on the loop thread that opened the connection, with that connection (same id
// and peer port), and the reply the client reads carries its own tag and sequence number.
TEST_P(WorkerPoolTest, ResultArrivesOnRightLoopAndConnection) {
  constexpr int kClients = 6;
  constexpr int kRequests = 20;
  handler_.on_line = [](PoolHandler& h, Conn& c, const std::string& line) {
    const std::thread::id loop_thread = h.loop_thread_of(c);
    if (loop_thread != std::this_thread::get_id()) h.mismatches.fetch_add(1);
    const ConnId id = c.id();
    const uint16_t peer_port = c.remote_addr().port();
    Status s = h.pool->submit(
        c,
        [line, loop_thread] {
          return line + (std::this_thread::get_id() != loop_thread ? ":pool" : ":LOOP");
        },
        [&h, id, peer_port, loop_thread](Conn& conn, std::string&& result) {
          const bool ok = conn.id() == id && conn.remote_addr().port() == peer_port &&
                          std::this_thread::get_id() == loop_thread;
          if (!ok) h.mismatches.fetch_add(1);
          h.done_runs.fetch_add(1);
          conn.write(result + (ok ? ":ok\n" : ":BAD\n")).ignore();
        });
    reply_status(c, s);
  };
  ASSERT_TRUE(start(2, {.threads = 3, .queue_capacity = 256}));
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(port(), kClients, &clients));
  ASSERT_TRUE(handler_.wait_opens(kClients));

  for (int i = 0; i < kClients; ++i) {
    std::string req;
    for (int seq = 0; seq < kRequests; ++seq) {
      char line[16];
      std::snprintf(line, sizeof(line), "c%02d:%03d\n", i, seq);  // 8 bytes
      req += line;
    }
    ASSERT_TRUE(clients[i].send_all(req));
  }
  const size_t reply_len = 7 + std::string(":pool:ok\n").size();
  for (int i = 0; i < kClients; ++i) {
    std::string got;
    ASSERT_TRUE(clients[i].recv_exact(kRequests * reply_len, &got)) << "client " << i;
    std::set<std::string> lines;
    for (size_t off = 0; off < got.size(); off += reply_len) {
      lines.insert(got.substr(off, reply_len));
    }
    std::set<std::string> want;
    for (int seq = 0; seq < kRequests; ++seq) {
      char line[32];
      std::snprintf(line, sizeof(line), "c%02d:%03d:pool:ok\n", i, seq);
      want.insert(line);
    }
    EXPECT_EQ(lines, want) << "client " << i;
  }
  EXPECT_EQ(handler_.mismatches.load(), 0);
  EXPECT_EQ(handler_.done_runs.load(), kClients * kRequests);

  std::set<int> loops;
  std::set<std::thread::id> loop_threads;
  for (const OpenRecord& r : handler_.open_records()) {
    loops.insert(r.loop);
    loop_threads.insert(r.thread);
  }
  EXPECT_EQ(loops.size(), 2u) << "connections should be spread over both loops";
  EXPECT_EQ(loop_threads.size(), 2u);

  const WorkerPoolStats st = stats();
  EXPECT_EQ(st.submitted, uint64_t{kClients * kRequests});
  EXPECT_EQ(st.completed, uint64_t{kClients * kRequests});
  EXPECT_EQ(st.results_delivered, uint64_t{kClients * kRequests});
  EXPECT_EQ(st.results_discarded, 0u);
  EXPECT_EQ(st.rejected, 0u);
  EXPECT_EQ(st.failed, 0u);
}

// The work blocks until the client has gone (reset: a FIN alone is a half-close, and the
// connection would stay open for the answer) and on_close has run; its result is then
// discarded (done never runs) and counted.
TEST_P(WorkerPoolTest, ClosedConnectionResultIsDiscardedAndCounted) {
  Gate* gate = &gate_;
  handler_.on_line = [gate](PoolHandler& h, Conn& c, const std::string&) {
    Status s = h.pool->submit(
        c, [gate] { return gate->wait() ? std::string("late") : std::string("timeout"); },
        [&h](Conn& conn, std::string&& r) {
          h.done_runs.fetch_add(1);
          conn.write(r).ignore();
        });
    reply_status(c, s);
  };
  ASSERT_TRUE(start(2, {.threads = 2, .queue_capacity = 8}));
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  ASSERT_TRUE(c.send_all("job\n"));
  ASSERT_TRUE(wait_until([&] { return stats().busy_threads == 1; }, kIoTimeout))
      << "the job never started";
  c.reset();
  ASSERT_TRUE(handler_.wait_closes(1));

  gate_.open();
  ASSERT_TRUE(wait_until([&] { return stats().results_discarded == 1; }, kIoTimeout))
      << "results_discarded=" << stats().results_discarded;
  std::this_thread::sleep_for(Millis(50));  // a wrongly delivered result would show by now
  const WorkerPoolStats st = stats();
  EXPECT_EQ(handler_.done_runs.load(), 0);
  EXPECT_EQ(st.results_discarded, 1u);
  EXPECT_EQ(st.results_delivered, 0u);
  EXPECT_EQ(st.completed, 1u);
  EXPECT_EQ(st.busy_threads, 0u);
}

// With its only thread busy and its one queue slot taken, the pool refuses the next job
// at once; the handler sees the error text (capacity included) and answers with it.
TEST_P(WorkerPoolTest, FullQueueIsRejectedAtSubmit) {
  Gate* gate = &gate_;
  handler_.on_line = [gate](PoolHandler& h, Conn& c, const std::string& line) {
    Status s = h.pool->submit(
        c,
        [gate, line] {
          if (line == "block") gate->wait();
          return line;
        },
        [](Conn& conn, std::string&& r) { conn.write(r + "\n").ignore(); });
    reply_status(c, s);
  };
  ASSERT_TRUE(start(1, {.threads = 1, .queue_capacity = 1}));
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  ASSERT_TRUE(c.send_all("block\n"));
  ASSERT_TRUE(wait_until([&] { return stats().busy_threads == 1; }, kIoTimeout));
  ASSERT_TRUE(c.send_all("queued\n"));
  ASSERT_TRUE(wait_until([&] { return stats().queue_depth == 1; }, kIoTimeout));
  ASSERT_TRUE(c.send_all("refused\n"));

  std::string line;
  ASSERT_TRUE(read_line(c, &line));
  EXPECT_EQ(line.rfind("ERR worker pool queue full (capacity 1)", 0), 0u) << line;
  EXPECT_EQ(stats().rejected, 1u);

  gate_.open();
  std::multiset<std::string> rest;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(read_line(c, &line));
    rest.insert(line);
  }
  EXPECT_EQ(rest, (std::multiset<std::string>{"block", "queued"}));
  const WorkerPoolStats st = stats();
  EXPECT_EQ(st.submitted, 2u);
  EXPECT_EQ(st.rejected, 1u);
}

// A job whose work throws: counted as failed, done never runs; with on_error the
// connection hears about it on its loop, without it nothing comes back.
TEST_P(WorkerPoolTest, ThrowingWorkIsCountedAndReported) {
  handler_.on_line = [](PoolHandler& h, Conn& c, const std::string& line) {
    auto work = []() -> std::string { throw std::runtime_error("boom"); };
    auto done = [&h](Conn&, std::string&&) { h.done_runs.fetch_add(1); };
    Status s = line == "silent"
                   ? h.pool->submit(c, work, done)
                   : h.pool->submit(c, work, done, reply_error);
    reply_status(c, s);
  };
  ASSERT_TRUE(start(1, {.threads = 2, .queue_capacity = 8}));
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  ASSERT_TRUE(c.send_all("silent\n"));
  ASSERT_TRUE(wait_until([&] { return stats().failed == 1; }, kIoTimeout));
  ASSERT_TRUE(c.send_all("loud\n"));
  std::string line;
  ASSERT_TRUE(read_line(c, &line));
  EXPECT_EQ(line, "ERR worker pool job threw: boom");
  EXPECT_FALSE(c.readable_within(Millis(50))) << "the silent failure sent something";
  const WorkerPoolStats st = stats();
  EXPECT_EQ(st.failed, 2u);
  EXPECT_EQ(st.completed, 0u);
  EXPECT_EQ(st.results_delivered, 1u);  // the on_error reply
  EXPECT_EQ(handler_.done_runs.load(), 0);
}

// shutdown(kDiscardQueued) while a job runs and another waits: the waiting one is
// cancelled and its on_error reaches the connection; the running one finishes and its
// result is delivered.
TEST_P(WorkerPoolTest, ShutdownCancelsQueuedConnectionJobWithError) {
  Gate* gate = &gate_;
  handler_.on_line = [gate](PoolHandler& h, Conn& c, const std::string& line) {
    Status s = h.pool->submit(
        c,
        [gate, line] {
          if (line == "block") gate->wait();
          return line;
        },
        [](Conn& conn, std::string&& r) { conn.write("done " + r + "\n").ignore(); },
        reply_error);
    reply_status(c, s);
  };
  ASSERT_TRUE(start(1, {.threads = 1, .queue_capacity = 4}));
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  ASSERT_TRUE(c.send_all("block\n"));
  ASSERT_TRUE(wait_until([&] { return stats().busy_threads == 1; }, kIoTimeout));
  ASSERT_TRUE(c.send_all("queued\n"));
  ASSERT_TRUE(wait_until([&] { return stats().queue_depth == 1; }, kIoTimeout));

  std::thread stopper([&] { pool_->shutdown(WorkerPool::ShutdownMode::kDiscardQueued); });
  std::string line;
  EXPECT_TRUE(read_line(c, &line));  // the cancellation, while "block" still runs
  EXPECT_EQ(line, "ERR worker pool shut down before the job ran");
  gate_.open();
  stopper.join();
  EXPECT_TRUE(read_line(c, &line));
  EXPECT_EQ(line, "done block");

  const WorkerPoolStats st = stats();
  EXPECT_EQ(st.cancelled, 1u);
  EXPECT_EQ(st.completed, 1u);
  EXPECT_EQ(st.queue_depth, 0u);
  EXPECT_EQ(st.threads, 0u);
  ASSERT_TRUE(wait_until([&] { return stats().results_delivered == 2; }, kIoTimeout));
}

// Eight connections on two loops, 500 pipelined requests each, four pool threads: every
// reply comes back once, to its own connection, with the right result, from the right loop.
TEST_P(WorkerPoolTest, StressEightConnectionsFiveHundredRequests) {
  constexpr int kClients = 8;
  constexpr int kRequests = 500;
  handler_.on_line = [](PoolHandler& h, Conn& c, const std::string& line) {
    const std::thread::id loop_thread = std::this_thread::get_id();
    const ConnId id = c.id();
    Status s = h.pool->submit(
        c, [line] { return line + ":" + hex16(checksum(line)); },
        [&h, id, loop_thread](Conn& conn, std::string&& r) {
          const bool ok = conn.id() == id && std::this_thread::get_id() == loop_thread &&
                          h.loop_thread_of(conn) == loop_thread;
          if (!ok) h.mismatches.fetch_add(1);
          conn.write(r + (ok ? ":ok\n" : ":BD\n")).ignore();
        });
    reply_status(c, s);
  };
  ASSERT_TRUE(start(2, {.threads = 4, .queue_capacity = kClients * kRequests}));
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(port(), kClients, &clients));
  ASSERT_TRUE(handler_.wait_opens(kClients));

  constexpr size_t kReqLen = 8;              // "c00:0000"
  constexpr size_t kReplyLen = kReqLen + 1 + 16 + 3 + 1;  // ":<hex>:ok\n"
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      std::string req;
      for (int seq = 0; seq < kRequests; ++seq) {
        char line[16];
        std::snprintf(line, sizeof(line), "c%02d:%04d\n", i, seq);
        req += line;
      }
      std::string got;
      if (auto r = clients[i].exchange(req, kRequests * kReplyLen, &got, Millis(30000)); !r) {
        errors[i] = r.message();
        return;
      }
      std::vector<int> seen(kRequests, 0);
      for (size_t off = 0; off + kReplyLen <= got.size(); off += kReplyLen) {
        const std::string rec = got.substr(off, kReplyLen);
        int tag = -1;
        int seq = -1;
        if (std::sscanf(rec.c_str(), "c%2d:%4d:", &tag, &seq) != 2 || tag != i || seq < 0 ||
            seq >= kRequests) {
          errors[i] = "bad record '" + rec + "'";
          return;
        }
        const std::string want =
            rec.substr(0, kReqLen) + ":" + hex16(checksum(rec.substr(0, kReqLen))) + ":ok\n";
        if (rec != want) {
          errors[i] = "record '" + rec + "' want '" + want + "'";
          return;
        }
        ++seen[seq];
      }
      for (int seq = 0; seq < kRequests; ++seq) {
        if (seen[seq] != 1) {
          errors[i] = "seq " + std::to_string(seq) + " seen " + std::to_string(seen[seq]);
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(errors[i], "") << "client " << i;
  EXPECT_EQ(handler_.mismatches.load(), 0);

  const WorkerPoolStats st = stats();
  const uint64_t total = kClients * kRequests;
  EXPECT_EQ(st.submitted, total);
  EXPECT_EQ(st.completed, total);
  EXPECT_EQ(st.results_delivered, total);
  EXPECT_EQ(st.results_discarded, 0u);
  EXPECT_EQ(st.rejected, 0u);
  EXPECT_EQ(st.scheduling_delay.count, total);
  EXPECT_EQ(st.queue_depth, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, WorkerPoolTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

// ---- the pool alone ---------------------------------------------------------------------

// One thread blocked, capacity 2: two more jobs queue, the next two are refused with the
// capacity in the message and code EAGAIN, and counted; the queued ones still run.
TEST(WorkerPool, FullQueueRejectsWithClearError) {
  Gate gate;
  std::atomic<int> ran{0};
  WorkerPool pool({.threads = 1, .queue_capacity = 2});
  OpenOnExit release{gate};
  ASSERT_TRUE(pool.start().is_ok());
  ASSERT_TRUE(pool.submit([&] { gate.wait(); ++ran; }).is_ok());
  ASSERT_TRUE(wait_until([&] { return pool.stats().busy_threads == 1; }, kIoTimeout));
  ASSERT_TRUE(pool.submit([&] { ++ran; }).is_ok());
  ASSERT_TRUE(pool.submit([&] { ++ran; }).is_ok());
  for (int i = 0; i < 2; ++i) {
    Status s = pool.submit([&] { ++ran; });
    ASSERT_FALSE(s.is_ok());
    EXPECT_EQ(s.code(), EAGAIN);
    EXPECT_NE(s.message().find("worker pool queue full (capacity 2)"), std::string::npos)
        << s.message();
  }
  WorkerPoolStats st = pool.stats();
  EXPECT_EQ(st.rejected, 2u);
  EXPECT_EQ(st.submitted, 3u);
  EXPECT_EQ(st.queue_depth, 2u);
  EXPECT_EQ(st.queue_capacity, 2u);

  gate.open();
  ASSERT_TRUE(wait_until([&] { return pool.stats().completed == 3; }, kIoTimeout));
  EXPECT_EQ(ran.load(), 3);
  EXPECT_TRUE(pool.submit([&] { ++ran; }).is_ok()) << "room again once drained";
}

// Twenty jobs wait ~30 ms behind a blocked one: queue depth shows them, then returns to 0;
// the scheduling-delay histogram has one sample per job and its p99 reflects the wait.
TEST(WorkerPool, ReportsSchedulingDelayAndQueueDepth) {
  constexpr int kJobs = 20;
  Gate gate;
  WorkerPool pool({.threads = 1, .queue_capacity = 64});
  OpenOnExit release{gate};
  ASSERT_TRUE(pool.start().is_ok());
  ASSERT_TRUE(pool.submit([&] { gate.wait(); }).is_ok());
  ASSERT_TRUE(wait_until([&] { return pool.stats().busy_threads == 1; }, kIoTimeout));
  for (int i = 0; i < kJobs; ++i) ASSERT_TRUE(pool.submit([] {}).is_ok());
  EXPECT_EQ(pool.stats().queue_depth, uint64_t{kJobs});

  std::this_thread::sleep_for(Millis(30));
  gate.open();
  ASSERT_TRUE(wait_until([&] { return pool.stats().completed == kJobs + 1; }, kIoTimeout));
  ASSERT_TRUE(wait_until([&] { return pool.stats().busy_threads == 0; }, kIoTimeout));
  const WorkerPoolStats st = pool.stats();
  EXPECT_EQ(st.queue_depth, 0u);
  const DurationHistogram& d = st.scheduling_delay;
  EXPECT_EQ(d.count, uint64_t{kJobs + 1});
  uint64_t in_buckets = 0;
  for (uint64_t b : d.buckets) in_buckets += b;
  EXPECT_EQ(in_buckets, d.count);
  EXPECT_GE(d.max_ns, 30'000'000u);
  EXPECT_GE(d.sum_ns, kJobs * 30'000'000ull);
  EXPECT_GE(d.p99_us(), 30'000u);  // the estimate is an upper bound
  EXPECT_LE(d.p99_us(), (d.max_ns + 999) / 1000);
  EXPECT_GE(d.mean_us(), 25'000.0);
  EXPECT_EQ(st.run_time.count, uint64_t{kJobs + 1});
  EXPECT_GE(st.run_time.max_ns, 30'000'000u);  // the blocked job
}

// shutdown() (kDrain) runs every job already queued before it returns; submit fails after.
TEST(WorkerPool, ShutdownDrainsQueuedJobs) {
  Gate gate;
  std::atomic<int> ran{0};
  WorkerPool pool({.threads = 1, .queue_capacity = 1024});
  OpenOnExit release{gate};
  ASSERT_TRUE(pool.start().is_ok());
  ASSERT_TRUE(pool.submit([&] { gate.wait(); ++ran; }).is_ok());
  ASSERT_TRUE(wait_until([&] { return pool.stats().busy_threads == 1; }, kIoTimeout));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.submit([&] { ++ran; }).is_ok());

  int probes_accepted = 0;
  std::thread stopper([&] { pool.shutdown(); });
  // Refused as soon as shutdown has begun, though queued work is still pending (probes
  // that got in before shutdown began run like any queued job).
  ASSERT_TRUE(wait_until(
      [&] {
        if (!pool.submit([&] { ++ran; }).is_ok()) return true;
        ++probes_accepted;
        return false;
      },
      kIoTimeout));
  Status s = pool.submit([] {});
  EXPECT_EQ(s.message(), "worker pool is shut down");
  EXPECT_EQ(pool.stats().rejected, 0u) << "refusals after shutdown are not queue-full";
  gate.open();
  stopper.join();
  const int expected = 6 + probes_accepted;
  EXPECT_EQ(ran.load(), expected);
  const WorkerPoolStats st = pool.stats();
  EXPECT_EQ(st.completed, uint64_t(expected));
  EXPECT_EQ(st.cancelled, 0u);
  EXPECT_EQ(st.queue_depth, 0u);
  EXPECT_EQ(st.threads, 0u);
  pool.shutdown();  // idempotent
}

// shutdown(kDiscardQueued) drops the jobs that have not started (counted), lets the
// running one finish, and joins.
TEST(WorkerPool, ShutdownDiscardQueuedDropsWaitingJobs) {
  Gate gate;
  std::atomic<int> ran{0};
  WorkerPool pool({.threads = 1, .queue_capacity = 16});
  OpenOnExit release{gate};
  ASSERT_TRUE(pool.start().is_ok());
  ASSERT_TRUE(pool.submit([&] { gate.wait(); ++ran; }).is_ok());
  ASSERT_TRUE(wait_until([&] { return pool.stats().busy_threads == 1; }, kIoTimeout));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.submit([&] { ++ran; }).is_ok());

  std::thread stopper([&] { pool.shutdown(WorkerPool::ShutdownMode::kDiscardQueued); });
  ASSERT_TRUE(wait_until([&] { return pool.stats().cancelled == 5; }, kIoTimeout));
  EXPECT_EQ(pool.stats().queue_depth, 0u);
  gate.open();
  stopper.join();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(pool.stats().completed, 1u);
}

// A throwing fire-and-forget job is counted; the pool thread survives and runs the next.
TEST(WorkerPool, ThrowingJobIsCountedAndPoolGoesOn) {
  std::atomic<int> ran{0};
  WorkerPool pool({.threads = 1, .queue_capacity = 4});
  ASSERT_TRUE(pool.start().is_ok());
  ASSERT_TRUE(pool.submit([] { throw std::runtime_error("boom"); }).is_ok());
  ASSERT_TRUE(pool.submit([] { throw 42; }).is_ok());
  ASSERT_TRUE(pool.submit([&] { ++ran; }).is_ok());
  ASSERT_TRUE(wait_until([&] { return pool.stats().completed == 1; }, kIoTimeout));
  EXPECT_EQ(pool.stats().failed, 2u);
  EXPECT_EQ(ran.load(), 1);
}

// Lifecycle errors are Status values, not crashes.
TEST(WorkerPool, LifecycleErrors) {
  WorkerPool pool({.threads = 0, .queue_capacity = 0});  // taken as 1 and 1
  EXPECT_EQ(pool.options().threads, 1u);
  EXPECT_EQ(pool.options().queue_capacity, 1u);
  Status before = pool.submit([] {});
  EXPECT_EQ(before.message(), "worker pool not started");
  ASSERT_TRUE(pool.start().is_ok());
  EXPECT_EQ(pool.stats().threads, 1u);
  EXPECT_FALSE(pool.start().is_ok()) << "second start";
  pool.shutdown();
  EXPECT_FALSE(pool.start().is_ok()) << "start after shutdown";
  EXPECT_EQ(pool.submit([] {}).message(), "worker pool is shut down");
}

// Move-only work and done compile and run (the result is moved into done).
TEST(WorkerPool, MoveOnlyCallablesAndResults) {
  std::atomic<int> ran{0};
  auto token = std::make_unique<int>(7);
  WorkerPool pool({.threads = 1, .queue_capacity = 4});
  ASSERT_TRUE(pool.start().is_ok());
  ASSERT_TRUE(pool.submit([t = std::move(token), &ran] { ran += *t; }).is_ok());
  ASSERT_TRUE(wait_until([&] { return ran.load() == 7; }, kIoTimeout));
  // A connection job with a move-only result, aimed at no connection: compiles, and with
  // an invalid handle the reply runs at once with no connection, so it is discarded.
  ASSERT_TRUE(pool.submit(ConnHandle(), [] { return std::make_unique<int>(1); },
                          [](Conn&, std::unique_ptr<int>&&) { FAIL() << "no connection"; })
                  .is_ok());
  ASSERT_TRUE(wait_until([&] { return pool.stats().completed == 2; }, kIoTimeout));
  EXPECT_EQ(pool.stats().results_discarded, 0u) << "an invalid handle is fire-and-forget";
}

// Bucket edges and the quantile estimate.
TEST(DurationHistogram, BucketsAndQuantiles) {
  EXPECT_EQ(DurationHistogram::bucket_for(0), 0u);
  EXPECT_EQ(DurationHistogram::bucket_for(1), 1u);
  EXPECT_EQ(DurationHistogram::bucket_for(2), 2u);
  EXPECT_EQ(DurationHistogram::bucket_for(3), 2u);
  EXPECT_EQ(DurationHistogram::bucket_for(4), 3u);
  EXPECT_EQ(DurationHistogram::bucket_for(1000), 10u);  // [512, 1024)
  EXPECT_EQ(DurationHistogram::bucket_for(UINT64_MAX), DurationHistogram::kBuckets - 1);
  EXPECT_EQ(DurationHistogram::bucket_upper_us(10), 1024u);

  DurationHistogram h;
  EXPECT_EQ(h.p99_us(), 0u);
  // 99 samples of ~3 us, one of ~1000 us.
  h.buckets[DurationHistogram::bucket_for(3)] = 99;
  h.buckets[DurationHistogram::bucket_for(1000)] = 1;
  h.count = 100;
  h.sum_ns = 99 * 3000 + 1'000'000;
  h.max_ns = 1'000'000;
  EXPECT_EQ(h.quantile_us(0.5), 4u);
  EXPECT_EQ(h.p99_us(), 4u);
  EXPECT_EQ(h.quantile_us(1.0), 1000u);  // capped at the maximum
  EXPECT_NEAR(h.mean_us(), 12.97, 0.01);
}

}  // namespace
}  // namespace ringnet::test
