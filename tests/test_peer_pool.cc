// SPDX-License-Identifier: MIT
// PeerPool, the client-side connection-reuse map, over loopback on both backends: 1,000
// get() calls from 50 threads share one connection (the server accepts exactly one) or
// the configured bound; concurrent calls wait for the same dial; a refused dial fails
// every waiter and leaves no entry; a connection reset by the peer is evicted and the
// next get() dials a fresh one, never handing out the dead one. Destroying the pool with
// gets waiting ends each once with ECANCELED, none after the destructor returned; a dial
// that connects after the pool is gone is closed (run these under ASan).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <ringnet/proto/peer_pool.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

using proto::PeerPool;

// Client engine's handler: feeds the pool (through its hooks, which stay valid when a test
// destroys the pool), counts the bytes that come back.
class PoolClientHandler : public EventHandler {
 public:
  PeerPool::Hooks pool;
  Action on_open(Conn& c) override {
    pool.on_open(c);
    return Action::kNone;
  }
  Action on_traffic(Conn& c) override {
    received.fetch_add(c.discard());
    return Action::kNone;
  }
  void on_close(Conn& c, CloseInfo info) override {
    pool.on_close(c, info);
    closes.fetch_add(1);
    last_reason.store(static_cast<int>(info.reason));
  }
  std::atomic<size_t> received{0};
  std::atomic<int> closes{0};
  std::atomic<int> last_reason{-1};
};

// The client engine is stopped (its connections closed, their on_close reaching the
// pool) before the pool is destroyed.
struct Fixture {
  explicit Fixture(Backend backend, proto::PeerPoolOptions o = {}, int loops = 2)
      : client_engine(client, test_options(backend, loops)),
        pool_owner(std::make_unique<PeerPool>(client_engine, o)),
        pool(*pool_owner) {
    client.pool = pool.hooks();
  }
  ~Fixture() {
    client_engine.stop();
    client_engine.wait();
  }
  PoolClientHandler client;
  Engine client_engine;
  std::unique_ptr<PeerPool> pool_owner;
  PeerPool& pool;
};

class PeerPoolTest : public testing::TestWithParam<Backend> {};

// 50 callers x 20 gets; each writes through what it got; everything is echoed back.
void hammer(PeerPool& pool, const std::string& addr, std::atomic<int>* ok,
            std::atomic<int>* failed, std::set<uint64_t>* ids, std::mutex* mu) {
  std::vector<std::thread> callers;
  for (int t = 0; t < 50; ++t) {
    callers.emplace_back([&pool, &addr, ok, failed, ids, mu] {
      for (int i = 0; i < 20; ++i) {
        // By value: the gets may end after hammer() returned (they wait for the dial).
        pool.get(addr, [ok, failed, ids, mu](const ConnHandle& h, const Status& s) {
          if (!s) {
            failed->fetch_add(1);
            return;
          }
          {
            std::lock_guard lock(*mu);
            ids->insert(h.id().pack());
          }
          h.async_write("0123456789", [ok](Status w) {
            if (w) ok->fetch_add(1);
          });
        });
      }
    });
  }
  for (auto& t : callers) t.join();
}

TEST_P(PeerPoolTest, ThousandGetsFromFiftyCallersShareOneConnection) {
  EchoHandler server_handler;
  TestServer server(server_handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Fixture f(GetParam());
  ASSERT_TRUE(f.client_engine.start());
  const std::string addr = "tcp://127.0.0.1:" + std::to_string(server.port());
  std::atomic<int> ok{0}, failed{0};
  std::set<uint64_t> ids;
  std::mutex mu;
  hammer(f.pool, addr, &ok, &failed, &ids, &mu);
  ASSERT_TRUE(wait_until([&] { return ok.load() + failed.load() == 1000; }, 10000ms));
  EXPECT_EQ(failed.load(), 0);
  ASSERT_TRUE(wait_until([&] { return f.client.received.load() == 10000; }, 10000ms))
      << f.client.received.load();
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(server.engine().stats().accepted, 1u);
  proto::PeerPoolStats st = f.pool.stats();
  EXPECT_EQ(st.gets, 1000u);
  EXPECT_EQ(st.dials, 1u);
  EXPECT_EQ(st.live, 1u);
  // st.reused is not checked: how many gets came before the dial connected (and waited
  // for it) and how many after (and reused it) depends on timing; all 1,000 may wait.
  EXPECT_EQ(st.waiting, 0u);
  EXPECT_EQ(f.pool.live(addr), 1u);
  f.client_engine.stop();
  f.client_engine.wait();
}

TEST_P(PeerPoolTest, BoundOfThreeConnectionsPerAddress) {
  EchoHandler server_handler;
  TestServer server(server_handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Fixture f(GetParam(), {.max_per_address = 3});
  ASSERT_TRUE(f.client_engine.start());
  const std::string addr = "tcp://127.0.0.1:" + std::to_string(server.port());
  std::atomic<int> ok{0}, failed{0};
  std::set<uint64_t> ids;
  std::mutex mu;
  hammer(f.pool, addr, &ok, &failed, &ids, &mu);
  ASSERT_TRUE(wait_until([&] { return ok.load() + failed.load() == 1000; }, 10000ms));
  EXPECT_EQ(failed.load(), 0);
  ASSERT_TRUE(wait_until([&] { return f.client.received.load() == 10000; }, 10000ms));
  EXPECT_EQ(server.engine().stats().accepted, 3u);
  EXPECT_EQ(f.pool.stats().dials, 3u);
  EXPECT_EQ(f.pool.live(addr), 3u);
  f.client_engine.stop();
  f.client_engine.wait();
}

// Ten calls arrive while the one dial is stuck (a listener whose accept queue is full
// drops the SYN): all wait for it, and all fail with its timeout. Then a refused address:
// the failure leaves no entry, so the next call dials again.
TEST_P(PeerPoolTest, FailedDialFailsEveryWaiterAndLeavesNoEntry) {
  uint16_t stuck_port = 0;
  int lfd = raw_listener(0, &stuck_port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(stuck_port);
  const std::string stuck = "127.0.0.1:" + std::to_string(stuck_port);
  Fixture f(GetParam(), {.dial_timeout = 400ms});
  ASSERT_TRUE(f.client_engine.start());
  std::atomic<int> errors{0}, timed_out{0};
  for (int i = 0; i < 10; ++i) {
    f.pool.get(stuck, [&](const ConnHandle& h, const Status& s) {
      EXPECT_FALSE(h.valid());
      if (!s) errors.fetch_add(1);
      if (s.code() == ETIMEDOUT) timed_out.fetch_add(1);
    });
  }
  ASSERT_TRUE(wait_until([&] { return errors.load() == 10; }, 5000ms));
  EXPECT_EQ(timed_out.load(), 10);
  proto::PeerPoolStats st = f.pool.stats();
  EXPECT_EQ(st.dials, 1u);  // they all waited for the same dial
  EXPECT_EQ(st.dial_failures, 1u);
  EXPECT_EQ(st.waiting, 0u);
  EXPECT_EQ(st.dialing, 0u);
  EXPECT_EQ(f.pool.live(stuck), 0u);
  ::close(lfd);

  const std::string refused = "127.0.0.1:" + std::to_string(unused_port());
  std::atomic<int> refusals{0};
  for (int round = 1; round <= 2; ++round) {
    f.pool.get(refused, [&](const ConnHandle&, const Status& s) {
      if (s.code() == ECONNREFUSED) refusals.fetch_add(1);
    });
    ASSERT_TRUE(wait_until([&] { return refusals.load() == round; }, 5000ms));
    EXPECT_EQ(f.pool.live(refused), 0u);
  }
  EXPECT_EQ(f.pool.stats().dials, 3u);  // nothing stale: the second call dialed again
}

// The peer resets the pooled connection: it leaves the pool, and the next get() gets a
// new, working connection, never the dead one.
TEST_P(PeerPoolTest, ResetConnectionIsEvictedAndTheNextGetDialsAgain) {
  uint16_t port = 0;
  int lfd = raw_listener(16, &port);
  ASSERT_GE(lfd, 0);
  std::atomic<int> second_got{0};
  std::thread peer([lfd, &second_got] {
    int first = ::accept(lfd, nullptr, nullptr);  // reads a byte, then resets
    char b;
    if (::read(first, &b, 1) == 1) {
      linger l{1, 0};
      ::setsockopt(first, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    ::close(first);
    int second = ::accept(lfd, nullptr, nullptr);  // reads and answers
    char buf[16];
    ssize_t n = ::read(second, buf, sizeof(buf));
    if (n > 0) {
      second_got.store(static_cast<int>(n));
      (void)!::write(second, buf, static_cast<size_t>(n));
    }
    ::close(second);
  });
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  Fixture f(GetParam());
  ASSERT_TRUE(f.client_engine.start());
  std::atomic<uint64_t> first_id{0}, second_id{0};
  f.pool.get(addr, [&](const ConnHandle& h, const Status& s) {
    ASSERT_TRUE(s);
    first_id.store(h.id().pack() | 1ull << 63);
    h.async_write("x");
  });
  ASSERT_TRUE(wait_until([&] { return f.client.closes.load() == 1; }, 5000ms));
  EXPECT_EQ(f.client.last_reason.load(), static_cast<int>(CloseReason::kReset));
  EXPECT_EQ(f.pool.live(addr), 0u);
  EXPECT_EQ(f.pool.stats().evicted, 1u);
  f.pool.get(addr, [&](const ConnHandle& h, const Status& s) {
    ASSERT_TRUE(s);
    second_id.store(h.id().pack() | 1ull << 63);
    h.async_write("hello");
  });
  ASSERT_TRUE(wait_until([&] { return f.client.received.load() == 5; }, 5000ms));
  EXPECT_EQ(second_got.load(), 5);
  EXPECT_EQ(f.pool.stats().dials, 2u);
  EXPECT_NE(first_id.load(), 0u);
  EXPECT_NE(second_id.load(), 0u);
  f.client_engine.stop();
  f.client_engine.wait();
  peer.join();
  ::close(lfd);
}

// ---- destroying the pool with gets in flight (issue #19) ----------------------------------

// A `ready` that reports to an EndRecorder.
PeerPool::Ready record(EndRecorder& ends) {
  size_t i = ends.add();
  return [&ends, i](const ConnHandle&, const Status& s) { ends.end(i, s.code()); };
}

// Destroys the pool while its engine runs (a watchdog bounds the destructor) and notes
// the moment in `ends`.
void destroy(std::unique_ptr<PeerPool>& pool, EndRecorder& ends) {
  {
    Watchdog dog(5000ms, "~PeerPool");
    pool.reset();
  }
  ends.mark_destroyed();
}

// Gets wait for a dial that hangs (the SYN is dropped). The pool is destroyed: each ends
// with ECANCELED, once, then. Later the dial times out: its on_close reaches the hooks of
// a pool that is gone, and must touch nothing.
TEST_P(PeerPoolTest, DestroyedWithGetsWaitingForADialCancelsEachOnce) {
  uint16_t stuck_port = 0;
  int lfd = raw_listener(0, &stuck_port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(stuck_port);
  const std::string stuck = "127.0.0.1:" + std::to_string(stuck_port);
  Fixture f(GetParam(), {.dial_timeout = 300ms});
  ASSERT_TRUE(f.client_engine.start());
  EndRecorder ends;
  for (int i = 0; i < 5; ++i) f.pool.get(stuck, record(ends));
  ASSERT_EQ(f.pool.stats().waiting, 5u);
  destroy(f.pool_owner, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  ASSERT_TRUE(wait_until([&] { return f.client.closes.load() == 1; }, 5000ms));
  EXPECT_EQ(f.client.last_reason.load(), static_cast<int>(CloseReason::kConnectFailed));
  EXPECT_EQ(ends.late(), 0);
  ::close(lfd);
}

// The client's one loop is held while the pool dials a second server; the pool is
// destroyed (its gets end with ECANCELED, once). When the loop goes on the dial connects
// for nobody: the pool's hooks close it rather than keep a connection no one can reach.
TEST_P(PeerPoolTest, DialThatConnectsAfterThePoolIsDestroyedIsClosed) {
  EchoHandler a_handler, b_handler;
  TestServer a(a_handler, test_options(GetParam())), b(b_handler, test_options(GetParam()));
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  Fixture f(GetParam(), {}, 1);
  ASSERT_TRUE(f.client_engine.start());
  std::mutex mu;
  std::optional<ConnHandle> to_a;
  f.pool.get("127.0.0.1:" + std::to_string(a.port()), [&](const ConnHandle& h, const Status& s) {
    std::lock_guard lock(mu);
    if (s) to_a = h;
  });
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return to_a.has_value();
  }, 5000ms));
  LoopBlocker blocker;
  ASSERT_TRUE(blocker.block(*to_a));
  EndRecorder ends;
  const std::string to_b = "127.0.0.1:" + std::to_string(b.port());
  for (int i = 0; i < 3; ++i) f.pool.get(to_b, record(ends));
  destroy(f.pool_owner, ends);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  blocker.release();
  ASSERT_TRUE(b_handler.wait_closes(1, 5000ms));
  EXPECT_EQ(b.engine().stats().accepted, 1u);
  EXPECT_EQ(ends.late(), 0);
  EXPECT_EQ(a_handler.closes(), 0u);  // a connection handed out stays open
}

// A `ready` running on a loop thread (a dial connected) destroys the pool: the gets still
// waiting for another dial end with ECANCELED there and then, once; nothing deadlocks.
TEST_P(PeerPoolTest, DestroyedFromAReadyOnALoopThreadCancelsTheOthers) {
  EchoHandler server_handler;
  TestServer server(server_handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  uint16_t stuck_port = 0;
  int lfd = raw_listener(0, &stuck_port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(stuck_port);
  Fixture f(GetParam(), {.dial_timeout = 5000ms});
  ASSERT_TRUE(f.client_engine.start());
  EndRecorder ends;
  for (int i = 0; i < 3; ++i) f.pool.get("127.0.0.1:" + std::to_string(stuck_port), record(ends));
  std::atomic<int> first{-1};
  std::atomic<bool> destroyed{false};
  const std::string to_server = "127.0.0.1:" + std::to_string(server.port());
  f.pool.get(to_server, [&](const ConnHandle&, const Status& s) {
    first.store(s.code());
    f.pool_owner.reset();
    ends.mark_destroyed();
    destroyed.store(true);
  });
  ASSERT_TRUE(wait_until([&] { return destroyed.load(); }, 5000ms));
  EXPECT_EQ(first.load(), 0);
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  EXPECT_EQ(ends.late(), 0);
  ::close(lfd);
}

// A `ready` is running on a loop thread (it takes 300 ms) when the pool is destroyed on
// the main thread: the destructor returns only after that `ready` has, and ends the gets
// still waiting for another dial with ECANCELED meanwhile.
TEST_P(PeerPoolTest, DestructorWaitsForAReadyRunningOnALoopThread) {
  EchoHandler server_handler;
  TestServer server(server_handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  uint16_t stuck_port = 0;
  int lfd = raw_listener(0, &stuck_port);
  ASSERT_GE(lfd, 0);
  std::vector<Client> fillers = fill_accept_queue(stuck_port);
  Fixture f(GetParam(), {.dial_timeout = 5000ms});
  ASSERT_TRUE(f.client_engine.start());
  EndRecorder ends;
  for (int i = 0; i < 3; ++i) f.pool.get("127.0.0.1:" + std::to_string(stuck_port), record(ends));
  std::atomic<bool> entered{false}, returned{false};
  f.pool.get("127.0.0.1:" + std::to_string(server.port()), [&](const ConnHandle&, const Status&) {
    entered.store(true);
    std::this_thread::sleep_for(300ms);
    returned.store(true);
  });
  ASSERT_TRUE(wait_until([&] { return entered.load(); }, 5000ms));
  destroy(f.pool_owner, ends);
  EXPECT_TRUE(returned.load());
  EXPECT_TRUE(ends.each_once({ECANCELED}));
  EXPECT_EQ(ends.late(), 0);
  ::close(lfd);
}

INSTANTIATE_TEST_SUITE_P(Backends, PeerPoolTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
