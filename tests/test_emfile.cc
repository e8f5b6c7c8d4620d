// SPDX-License-Identifier: MIT
// Running out of file descriptors on accept (EMFILE). The server runs in a forked child
// whose RLIMIT_NOFILE is 64, so a few dozen connections exhaust it. Checked from the parent:
// connections already open keep echoing, the connections beyond the limit are closed
// rather than left hanging in the backlog, accepting resumes once descriptors are freed,
// and the engine counts the exhaustion (stats().fd_exhausted).
//
// The fork happens in SetUp, before this process has started any thread.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

constexpr rlim_t kChildFdLimit = 64;
constexpr size_t kBaseConns = 20;   // opened first, well inside the limit
constexpr size_t kExtraConns = 80;  // pushes the child far beyond the limit

// What the child reports after it stopped.
struct ChildReport {
  uint64_t fd_exhausted = 0;
  uint64_t accepted = 0;
  uint64_t accept_errors = 0;
};

// Reads exactly n bytes from fd within timeout.
bool read_full(int fd, void* buf, size_t n, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t got = 0;
  while (got < n) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    ssize_t r = ::read(fd, static_cast<char*>(buf) + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// Child process: echo engine under a low fd limit. Never returns.
[[noreturn]] void child_main(Backend backend, int report_fd, int control_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = kChildFdLimit;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(10);

  EchoHandler handler;
  Engine engine(handler, test_options(backend, 2));
  uint16_t port = 0;
  if (engine.listen("tcp://127.0.0.1:0").is_ok() && engine.start().is_ok()) {
    port = engine.listen_addrs().at(0).port();
  }
  if (::write(report_fd, &port, sizeof(port)) != sizeof(port) || port == 0) ::_exit(11);

  // Run until the parent says stop (or goes away), at most 60 s.
  pollfd p{control_fd, POLLIN, 0};
  ::poll(&p, 1, 60000);
  engine.stop();
  engine.wait();
  EngineStats st = engine.stats();
  ChildReport rep{st.fd_exhausted, st.accepted, st.accept_errors};
  if (::write(report_fd, &rep, sizeof(rep)) != sizeof(rep)) ::_exit(12);
  ::_exit(0);
}

// Result of sending one short message on each of many connections.
struct Probe {
  size_t echoed = 0;     // came back intact
  size_t closed = 0;     // EOF or reset
  size_t hanging = 0;    // neither within the timeout
  size_t corrupted = 0;  // came back different
};

// Sends "probe-<i>\n" on every client and waits (one poll loop) until each one echoed,
// was closed, or the timeout passed.
Probe probe_all(std::vector<Client>& clients, Millis timeout) {
  Probe out;
  const size_t n = clients.size();
  std::vector<std::string> want(n), got(n);
  std::vector<bool> done(n, false);
  size_t open = n;
  for (size_t i = 0; i < n; ++i) {
    want[i] = "probe-" + std::to_string(i) + "\n";
    ssize_t s = ::send(clients[i].fd(), want[i].data(), want[i].size(), MSG_NOSIGNAL);
    if (s != static_cast<ssize_t>(want[i].size())) {
      done[i] = true;
      ++out.closed;
      --open;
    }
  }
  auto deadline = Clock::now() + timeout;
  while (open > 0) {
    std::vector<pollfd> pfds;
    std::vector<size_t> idx;
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      pfds.push_back(pollfd{clients[i].fd(), POLLIN, 0});
      idx.push_back(i);
    }
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) break;
    int rc = ::poll(pfds.data(), pfds.size(), static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) break;
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      size_t i = idx[k];
      char buf[256];
      ssize_t r = ::recv(pfds[k].fd, buf, sizeof(buf), 0);
      if (r > 0) {
        got[i].append(buf, static_cast<size_t>(r));
        if (got[i].size() < want[i].size()) continue;
        if (got[i] == want[i]) {
          ++out.echoed;
        } else {
          ++out.corrupted;
        }
      } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      } else {
        ++out.closed;  // EOF, ECONNRESET, ...
      }
      done[i] = true;
      --open;
    }
  }
  out.hanging = open;
  return out;
}

class EmfileTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    int report[2];
    int control[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(control, O_CLOEXEC), 0);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0) << std::strerror(errno);
    if (pid_ == 0) {
      ::close(report[0]);
      ::close(control[1]);
      child_main(GetParam(), report[1], control[0]);
    }
    ::close(report[1]);
    ::close(control[0]);
    report_fd_ = report[0];
    control_fd_ = control[1];
    ASSERT_TRUE(read_full(report_fd_, &port_, sizeof(port_), Millis(10000)))
        << "child did not report its port";
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    if (control_fd_ >= 0) ::close(control_fd_);
    if (report_fd_ >= 0) ::close(report_fd_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Opens kBaseConns connections and checks they echo; then opens kExtraConns more (beyond
  // the child's limit) and probes them.
  void exhaust(Probe* extra_probe) {
    ASSERT_TRUE(connect_many(port_, kBaseConns, &base_));
    for (size_t i = 0; i < base_.size(); ++i) {
      ASSERT_TRUE(base_[i].echo(make_payload(1000, i))) << "base connection " << i;
    }
    ASSERT_TRUE(connect_many(port_, kExtraConns, &extra_));
    *extra_probe = probe_all(extra_, Millis(5000));
  }

  // Opens connections until one is accepted and echoes (the child may still turn some
  // away until it has noticed freed descriptors); keeps it in *out.
  testing::AssertionResult new_connection_echoes(Client* out, uint64_t seed, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    size_t attempts = 0;
    while (Clock::now() < deadline) {
      ++attempts;
      Client c;
      if (c.connect_tcp(port_, "127.0.0.1", Millis(2000)) &&
          c.echo(make_payload(2000, seed), Millis(2000))) {
        *out = std::move(c);
        return testing::AssertionSuccess();
      }
      std::this_thread::sleep_for(Millis(20));
    }
    return testing::AssertionFailure() << "no new connection echoed in " << attempts
                                       << " attempts";
  }

  // Tells the child to stop and reads its report; reaps it.
  testing::AssertionResult stop_child(ChildReport* rep) {
    char stop = 'S';
    if (::write(control_fd_, &stop, 1) != 1) return testing::AssertionFailure() << "write control";
    if (!read_full(report_fd_, rep, sizeof(*rep), Millis(15000))) {
      return testing::AssertionFailure() << "child did not report after stop";
    }
    int status = 0;
    pid_t r = -1;
    wait_until([&] { return (r = ::waitpid(pid_, &status, WNOHANG)) == pid_; }, Millis(5000));
    if (r != pid_) return testing::AssertionFailure() << "child did not exit";
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return testing::AssertionFailure() << "child exit status " << status;
    }
    return testing::AssertionSuccess();
  }

  pid_t pid_ = -1;
  int report_fd_ = -1;
  int control_fd_ = -1;
  uint16_t port_ = 0;
  std::vector<Client> base_;
  std::vector<Client> extra_;
};

// Connections opened before the limit was hit keep echoing correctly afterwards.
TEST_P(EmfileTest, OpenConnectionsKeepEchoingWhenFdsRunOut) {
  Probe probe;
  ASSERT_NO_FATAL_FAILURE(exhaust(&probe));
  for (size_t i = 0; i < base_.size(); ++i) {
    ASSERT_TRUE(base_[i].echo(make_payload(4000, 100 + i))) << "base connection " << i;
  }
}

// Connections beyond the limit are closed (EOF or RST), not left hanging; the ones that
// were served echo intact.
TEST_P(EmfileTest, ExcessConnectionsAreClosedNotLeftHanging) {
  Probe probe;
  ASSERT_NO_FATAL_FAILURE(exhaust(&probe));
  EXPECT_EQ(probe.hanging, 0u) << probe.hanging << " of " << kExtraConns
                               << " extra connections got neither an echo nor a close";
  EXPECT_EQ(probe.corrupted, 0u);
  EXPECT_GT(probe.closed, 0u) << "the limit was never reached";
  EXPECT_EQ(probe.echoed + probe.closed + probe.hanging + probe.corrupted, kExtraConns);
}

// Once most connections are closed, new connections are accepted and echo again.
TEST_P(EmfileTest, AcceptsAgainAfterFdsAreFreed) {
  Probe probe;
  ASSERT_NO_FATAL_FAILURE(exhaust(&probe));
  extra_.clear();
  base_.resize(5);

  // The child frees descriptors as it sees the closes; until then a new connection may
  // still be turned away, so each one is retried until a deadline.
  std::vector<Client> fresh(10);
  for (size_t i = 0; i < fresh.size(); ++i) {
    ASSERT_TRUE(new_connection_echoes(&fresh[i], 300 + i, Millis(10000))) << "new connection " << i;
  }
  for (size_t i = 0; i < base_.size(); ++i) {
    EXPECT_TRUE(base_[i].echo("still here")) << "base connection " << i;
  }
}

// The engine counts EMFILE/ENFILE on accept in stats().fd_exhausted.
TEST_P(EmfileTest, CountsFdExhaustion) {
  Probe probe;
  ASSERT_NO_FATAL_FAILURE(exhaust(&probe));
  // Give the child its descriptors back before it stops: sanitizer runtimes need fds at
  // thread exit (UBSan's vptr check opens a pipe) and report false errors under EMFILE.
  extra_.clear();
  base_.clear();
  Client last;
  ASSERT_TRUE(new_connection_echoes(&last, 400, Millis(10000)));
  last.close();
  ChildReport rep;
  ASSERT_TRUE(stop_child(&rep));
  EXPECT_GT(rep.fd_exhausted, 0u);
  EXPECT_GE(rep.accepted, kBaseConns + probe.echoed);
}

// CPU time (user + system) the child has used, in milliseconds (/proc/PID/stat).
double child_cpu_ms(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 13) return -1;
  return (std::stod(f[11]) + std::stod(f[12])) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// An EMFILE storm: with every descriptor in use, a stream of new connections must each be
// closed visibly (accept into the spare descriptor, close), and the loop must not spin on
// a backlog it cannot drain, neither during the storm nor after it. Measured from outside:
// the child's CPU while it sits exhausted with no new connection (a spinning loop would use
// a whole core), and its CPU per refused connection during the storm (printed).
TEST_P(EmfileTest, AStormOfConnectionsWhileOutOfFdsNeverSpins) {
  Probe probe;
  ASSERT_NO_FATAL_FAILURE(exhaust(&probe));
  ASSERT_GT(probe.closed, 0u) << "the limit was never reached";
  auto idle_cpu_share = [&](Millis window) {
    double before = child_cpu_ms(pid_);
    auto t0 = Clock::now();
    std::this_thread::sleep_for(window);  // a measuring window, not a synchronisation
    double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return (child_cpu_ms(pid_) - before) / wall;
  };
  const double idle_before = idle_cpu_share(Millis(1000));

  size_t storm = 0, refused = 0, hanging = 0;
  const double cpu0 = child_cpu_ms(pid_);
  const auto t0 = Clock::now();
  while (Clock::now() - t0 < Millis(1500)) {
    Client c;
    if (!c.connect_tcp(port_, "127.0.0.1", Millis(2000))) continue;
    ++storm;
    End end = c.wait_end(Millis(2000));
    if (end == End::kTimeout) ++hanging;
    else ++refused;
  }
  const double storm_wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const double storm_cpu = child_cpu_ms(pid_) - cpu0;
  const double idle_after = idle_cpu_share(Millis(1000));

  std::printf("EMFILE storm (%s): %zu connections in %.0f ms, %zu closed by the server, %zu "
              "hanging; server CPU %.0f ms (%.0f%% of a core, %.1f us per refused "
              "connection); exhausted and quiet: %.1f%% of a core before, %.1f%% after\n",
              GetParam() == Backend::kIoUring ? "io_uring" : "epoll", storm, storm_wall,
              refused, hanging, storm_cpu, 100.0 * storm_cpu / storm_wall,
              refused ? 1000.0 * storm_cpu / static_cast<double>(refused) : 0.0,
              100.0 * idle_before, 100.0 * idle_after);
  // Each refusal is immediate: one that waited for the 50 ms accept-retry timer (as the
  // io_uring backend once did, its re-armed accept failing at once with an empty queue)
  // would allow at most 30 in the window.
  EXPECT_GT(storm, 50u);
  EXPECT_EQ(hanging, 0u);
  EXPECT_EQ(refused, storm);
  // A spin shows as ~100%; an idle loop as ~0 (allow for a 10 ms tick of accounting).
  EXPECT_LT(idle_before, 0.10);
  EXPECT_LT(idle_after, 0.10);
  for (size_t i = 0; i < base_.size(); ++i) {
    ASSERT_TRUE(base_[i].echo(make_payload(500, 700 + i))) << "base connection " << i;
  }
}

// Control: without exhaustion the counter stays at zero.
TEST_P(EmfileTest, NoExhaustionCountedBelowLimit) {
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(port_, 10, &clients));
  for (size_t i = 0; i < clients.size(); ++i) ASSERT_TRUE(clients[i].echo("hello"));
  ChildReport rep;
  ASSERT_TRUE(stop_child(&rep));
  EXPECT_EQ(rep.fd_exhausted, 0u);
  EXPECT_EQ(rep.accepted, 10u);
}

// Open descriptors of this process.
size_t open_fd_count() {
  size_t n = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) ++n;
  }
  return n;
}

// start() with reuse_port where a later loop cannot create its poller (no descriptor
// left): start() reports the failure, the loops that did start are stopped, every
// listener is closed, and the engine is destroyed without a crash.
class StartFailureTest : public testing::TestWithParam<Backend> {};

TEST_P(StartFailureTest, ALoopThatCannotStartFailsStartCleanly) {
#ifdef __SANITIZE_ADDRESS__
  // The sanitizer build has UBSan too, whose vptr check opens a pipe on every polymorphic
  // call: with the process out of descriptors it reports false errors (seen in
  // std::promise and EventHandler calls). The plain build runs this test.
  GTEST_SKIP() << "needs a process without sanitizers (UBSan needs free descriptors)";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Backend backend = GetParam();
  EXPECT_EXIT(
      {
        EchoHandler handler;
        Options o = test_options(backend, 4);
        o.reuse_port = true;
        int code = 0;
        {
          Engine engine(handler, o);
          if (!engine.listen("tcp://127.0.0.1:0")) ::_exit(3);
          // Room for two loops (three descriptors each), not for four.
          rlimit rl{};
          ::getrlimit(RLIMIT_NOFILE, &rl);
          rl.rlim_cur = open_fd_count() + 8;
          if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(5);
          Status s = engine.start();
          if (s) code = 4;  // it should not have started
        }
        ::_exit(code);
      },
      testing::ExitedWithCode(0), "");
}

INSTANTIATE_TEST_SUITE_P(Backends, StartFailureTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

INSTANTIATE_TEST_SUITE_P(Backends, EmfileTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
