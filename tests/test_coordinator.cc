// SPDX-License-Identifier: MIT
// jobs::Coordinator against a real redis-server that each test starts on a free loopback
// port: the lease and its fencing tokens, fenced last-fired writes, the worker registry,
// and errors (not "lost") while redis is down or stopped, with reconnection afterwards.
// Skipped when redis-server is not on PATH.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <ostream>
#include <string>
#include <thread>

#include "coordinator.h"

namespace jobs {
// Readable names in gtest failure messages.
void PrintTo(CoordResult r, std::ostream* os) { *os << to_string(r); }
void PrintTo(const Worker& w, std::ostream* os) { *os << w.address << '/' << w.capacity; }
}  // namespace jobs

namespace jobs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `done` every 10 ms until it is true or `limit` has passed.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 3s) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + '/' + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

// A port nobody listens on now: the kernel's pick for a socket bound to port 0.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// One redis-server child without persistence, killed with the test (and with this
// process, through PR_SET_PDEATHSIG, should the test crash).
class RedisServer {
 public:
  RedisServer(std::string binary, int port) : binary_(std::move(binary)), port_(port) {}
  ~RedisServer() { stop(); }

  // Starts it and waits until it answers PING; false (and a message) if it does not.
  testing::AssertionResult start() {
    std::string port = std::to_string(port_);
    pid_ = ::fork();
    if (pid_ < 0) return testing::AssertionFailure() << "fork failed";
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDOUT_FILENO);
      const char* argv[] = {binary_.c_str(), "--port", port.c_str(), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--daemonize", "no",
                            "--loglevel", "warning", nullptr};
      ::execv(binary_.c_str(), const_cast<char* const*>(argv));
      ::_exit(127);
    }
    bool up = eventually([&] { return exited() || answers_ping(); }, 5s);
    if (exited()) return testing::AssertionFailure() << "redis-server exited at start";
    if (!up) return testing::AssertionFailure() << "redis-server not up on port " << port_;
    return testing::AssertionSuccess();
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

 private:
  bool exited() {
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
    return pid_ <= 0;
  }

  bool answers_ping() const {
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeval{0, 100'000});
    bool ok = false;
    if (c && !c->err) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = r && r->type == REDIS_REPLY_STATUS && std::string(r->str) == "PONG";
      if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
  }

  std::string binary_;
  int port_;
  pid_t pid_ = -1;
};

class CoordinatorTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string binary = find_on_path("redis-server");
    if (binary.empty()) {
      GTEST_SKIP() << "redis-server not found on PATH (apt-get install redis-server)";
    }
    int port = free_port();
    ASSERT_NE(port, 0);
    server_ = std::make_unique<RedisServer>(binary, port);
    ASSERT_TRUE(server_->start());
    coord_ = std::make_unique<Coordinator>(CoordinatorOptions{.port = port, .timeout = 200ms});
  }

  Coordinator& c() { return *coord_; }

  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<Coordinator> coord_;
};

TEST_F(CoordinatorTest, OneOwnerHoldsTheLeaseOthersAreRefusedTheHolderRenews) {
  Acquire a = c().try_acquire("A", 5s);
  ASSERT_EQ(a.result, CoordResult::kOk);
  EXPECT_GE(a.token, 1u);
  EXPECT_EQ(c().holder().value, "A " + std::to_string(a.token));

  EXPECT_EQ(c().try_acquire("B", 5s).result, CoordResult::kLost);
  // Held by A itself counts as held: a holder renews, it does not acquire again.
  EXPECT_EQ(c().try_acquire("A", 5s).result, CoordResult::kLost);
  EXPECT_EQ(c().renew("A", a.token, 5s), CoordResult::kOk);
  EXPECT_EQ(c().renew("B", a.token, 5s), CoordResult::kLost);
  EXPECT_EQ(c().renew("A", a.token + 1, 5s), CoordResult::kLost);
  EXPECT_EQ(c().holder().value, "A " + std::to_string(a.token));
}

TEST_F(CoordinatorTest, AfterTheLeaseLapsesTheNextOwnerHasALargerTokenAndTheOldOneIsFenced) {
  Acquire a = c().try_acquire("A", 200ms);
  ASSERT_EQ(a.result, CoordResult::kOk);
  ASSERT_EQ(c().set_last_fired("A", a.token, "job", 1000), CoordResult::kOk);

  Acquire b{CoordResult::kLost};
  ASSERT_TRUE(eventually([&] {
    b = c().try_acquire("B", 5s);
    return b.result != CoordResult::kLost;
  }));
  ASSERT_EQ(b.result, CoordResult::kOk);
  EXPECT_GT(b.token, a.token);
  const std::string b_value = "B " + std::to_string(b.token);

  // A, deposed, is refused by redis at write time, and nothing it sends changes a thing.
  EXPECT_EQ(c().renew("A", a.token, 5s), CoordResult::kLost);
  EXPECT_EQ(c().set_last_fired("A", a.token, "job", 5000), CoordResult::kLost);
  EXPECT_EQ(c().release("A", a.token), CoordResult::kLost);
  EXPECT_EQ(c().holder().value, b_value);
  EXPECT_EQ(c().last_fired("job").unix_ms, 1000);

  EXPECT_EQ(c().set_last_fired("B", b.token, "job", 2000), CoordResult::kOk);
  EXPECT_EQ(c().last_fired("job").unix_ms, 2000);
}

TEST_F(CoordinatorTest, LastFiredNeverMovesBackwards) {
  Acquire a = c().try_acquire("A", 5s);
  ASSERT_EQ(a.result, CoordResult::kOk);
  LastFired never = c().last_fired("job");
  EXPECT_EQ(never.result, CoordResult::kOk);
  EXPECT_FALSE(never.unix_ms.has_value());

  EXPECT_EQ(c().set_last_fired("A", a.token, "job", 2000), CoordResult::kOk);
  EXPECT_EQ(c().set_last_fired("A", a.token, "job", 1000), CoordResult::kOk);
  EXPECT_EQ(c().last_fired("job").unix_ms, 2000);
  EXPECT_EQ(c().set_last_fired("A", a.token, "job", 2000), CoordResult::kOk);  // a retry
  EXPECT_EQ(c().set_last_fired("A", a.token, "job", 1'700'000'000'123), CoordResult::kOk);
  EXPECT_EQ(c().last_fired("job").unix_ms, 1'700'000'000'123);
  EXPECT_FALSE(c().last_fired("other").unix_ms.has_value());
}

TEST_F(CoordinatorTest, ReleaseByANonHolderDoesNothingByTheHolderFreesTheLease) {
  Acquire a = c().try_acquire("A", 5s);
  ASSERT_EQ(a.result, CoordResult::kOk);
  EXPECT_EQ(c().release("B", a.token), CoordResult::kLost);
  EXPECT_EQ(c().release("A", a.token + 1), CoordResult::kLost);
  EXPECT_EQ(c().holder().value, "A " + std::to_string(a.token));

  EXPECT_EQ(c().release("A", a.token), CoordResult::kOk);
  Holder h = c().holder();
  EXPECT_EQ(h.result, CoordResult::kOk);
  EXPECT_FALSE(h.value.has_value());
  Acquire b = c().try_acquire("B", 5s);  // at once, without waiting for a ttl
  EXPECT_EQ(b.result, CoordResult::kOk);
  EXPECT_GT(b.token, a.token);
}

TEST_F(CoordinatorTest, WorkersAreListedSortedUntilTheyExpireOrDeregister) {
  ASSERT_EQ(c().register_worker("svc", "10.0.0.2:80", 4, 10s), CoordResult::kOk);
  ASSERT_EQ(c().register_worker("svc", "10.0.0.1:80", 2, 10s), CoordResult::kOk);
  ASSERT_EQ(c().register_worker("svc", "10.0.0.3:80", 8, 300ms), CoordResult::kOk);
  ASSERT_EQ(c().register_worker("other", "10.0.0.9:80", 1, 10s), CoordResult::kOk);
  Workers w = c().list_workers("svc");
  ASSERT_EQ(w.result, CoordResult::kOk);
  EXPECT_EQ(w.workers, (std::vector<Worker>{
                           {"10.0.0.1:80", 2}, {"10.0.0.2:80", 4}, {"10.0.0.3:80", 8}}));

  // A refresh updates the capacity; .3 is not refreshed and goes after its 300 ms.
  ASSERT_EQ(c().register_worker("svc", "10.0.0.2:80", 6, 10s), CoordResult::kOk);
  ASSERT_TRUE(eventually([&] { return c().list_workers("svc").workers.size() == 2; }));
  w = c().list_workers("svc");
  EXPECT_EQ(w.workers, (std::vector<Worker>{{"10.0.0.1:80", 2}, {"10.0.0.2:80", 6}}));

  EXPECT_EQ(c().deregister_worker("svc", "10.0.0.1:80"), CoordResult::kOk);
  EXPECT_EQ(c().deregister_worker("svc", "10.0.0.7:80"), CoordResult::kOk);  // unknown
  EXPECT_EQ(c().list_workers("svc").workers, (std::vector<Worker>{{"10.0.0.2:80", 6}}));
  EXPECT_EQ(c().list_workers("other").workers, (std::vector<Worker>{{"10.0.0.9:80", 1}}));
  Workers none = c().list_workers("nobody");
  EXPECT_EQ(none.result, CoordResult::kOk);
  EXPECT_TRUE(none.workers.empty());
}

TEST_F(CoordinatorTest, ANonPositiveTtlIsAnErrorAndTakesNoLease) {
  EXPECT_EQ(c().try_acquire("A", 0ms).result, CoordResult::kError);
  EXPECT_NE(c().last_error(), "");
  EXPECT_FALSE(c().holder().value.has_value());
  EXPECT_EQ(c().register_worker("svc", "w", 1, -1ms), CoordResult::kError);
}

TEST_F(CoordinatorTest, RedisDownIsAnErrorNotALostLeaseAndTheSameObjectReconnects) {
  Acquire a = c().try_acquire("A", 5s);
  ASSERT_EQ(a.result, CoordResult::kOk);
  server_->stop();

  EXPECT_EQ(c().holder().result, CoordResult::kError);
  EXPECT_NE(c().last_error(), "");
  EXPECT_EQ(c().try_acquire("B", 5s).result, CoordResult::kError);
  EXPECT_NE(c().last_error().find("redis"), std::string::npos) << c().last_error();
  EXPECT_EQ(c().renew("A", a.token, 5s), CoordResult::kError);
  EXPECT_EQ(c().set_last_fired("A", a.token, "job", 1), CoordResult::kError);
  EXPECT_EQ(c().last_fired("job").result, CoordResult::kError);
  EXPECT_EQ(c().register_worker("svc", "w", 1, 5s), CoordResult::kError);
  EXPECT_EQ(c().list_workers("svc").result, CoordResult::kError);

  // A new, empty redis on the same port (its script cache is empty too: EVALSHA falls
  // back to EVAL).
  ASSERT_TRUE(server_->start());
  Holder h = c().holder();
  EXPECT_EQ(h.result, CoordResult::kOk) << c().last_error();
  EXPECT_FALSE(h.value.has_value());
  Acquire b = c().try_acquire("B", 5s);
  EXPECT_EQ(b.result, CoordResult::kOk) << c().last_error();
  EXPECT_EQ(c().set_last_fired("B", b.token, "job", 7), CoordResult::kOk);
  EXPECT_EQ(c().register_worker("svc", "w", 1, 5s), CoordResult::kOk);
}

TEST_F(CoordinatorTest, AStoppedRedisTimesOutWithinTheTimeoutThenTheConnectionIsRenewed) {
  ASSERT_EQ(c().holder().result, CoordResult::kOk);  // connected
  server_->pause();
  auto start = Clock::now();
  EXPECT_EQ(c().try_acquire("A", 5s).result, CoordResult::kError);
  EXPECT_LT(Clock::now() - start, 2s);  // the timeout is 200 ms
  EXPECT_NE(c().last_error(), "");
  server_->resume();
  // The timed-out command may still run once redis resumes; the connection it was on is
  // gone, so its late reply cannot be taken for the answer to this one.
  Holder h = c().holder();
  EXPECT_EQ(h.result, CoordResult::kOk) << c().last_error();
}

}  // namespace
}  // namespace jobs
