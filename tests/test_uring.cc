// SPDX-License-Identifier: MIT
// What only the io_uring backend has: the auto/forced backend choice and its fallback to
// epoll, and a provided-buffer ring far too small for the load (ENOBUFS must be survived
// without losing a byte). The rest of the suite runs on io_uring through test_backends().
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/utsname.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

// Sets an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

bool kernel_at_least(int want_major, int want_minor) {
  utsname u{};
  int major = 0;
  int minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > want_major || (major == want_major && minor >= want_minor);
}

// Starts an engine that must fail to start; returns the failure.
Status start_error(const Options& o) {
  EchoHandler handler;
  Engine engine(handler, o);
  EXPECT_TRUE(engine.listen("tcp://127.0.0.1:0").is_ok());
  Status s = engine.start();
  EXPECT_FALSE(s.is_ok()) << "engine started";
  return s;
}

// One loop on io_uring with a provided-buffer ring of `count` 4 KiB buffers.
Options small_ring(unsigned count, bool bundles, bool incremental) {
  Options o = test_options(Backend::kIoUring, 1);
  o.uring_buffer_count = count;
  o.uring_buffer_size = 4096;
  o.uring_recv_bundle = bundles;
  o.uring_buffer_incremental = incremental;
  return o;
}

// `conns` connections each echo `size` bytes at once through `server`; all come back intact.
void echo_from_many(TestServer& server, size_t conns, size_t size, uint64_t seed) {
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), conns, &clients));
  std::vector<std::string> payloads;
  for (size_t i = 0; i < conns; ++i) payloads.push_back(make_payload(size, seed + i));
  ASSERT_TRUE(echo_all(clients, payloads, Millis(60000)));
}

// The probe fails (forced through RINGNET_DISABLE_IO_URING): auto falls back to epoll and
// still serves.
TEST(UringBackend, AutoFallsBackToEpollWhenProbeFails) {
  ScopedEnv off("RINGNET_DISABLE_IO_URING", "1");
  EchoHandler handler;
  TestServer server(handler, test_options(Backend::kAuto, 2));
  ASSERT_TRUE(server.start());
  EXPECT_EQ(server.engine().options().backend, Backend::kEpoll);
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  EXPECT_TRUE(c.echo(make_payload(100000, 7)));
}

// Asking for io_uring where it is unavailable is a clear error, not a silent fallback.
TEST(UringBackend, ForcedIoUringFailsClearlyWhenProbeFails) {
  ScopedEnv off("RINGNET_DISABLE_IO_URING", "1");
  Status s = start_error(test_options(Backend::kIoUring, 1));
  EXPECT_NE(s.message().find("io_uring"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("RINGNET_DISABLE_IO_URING"), std::string::npos) << s.message();
}

// Where the kernel allows it, auto picks io_uring.
TEST(UringBackend, AutoPicksIoUringWhereAvailable) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  EchoHandler handler;
  TestServer server(handler, test_options(Backend::kAuto, 1));
  ASSERT_TRUE(server.start());
  EXPECT_EQ(server.engine().options().backend, Backend::kIoUring);
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  EXPECT_TRUE(c.echo(make_payload(5000, 3)));
}

// The ring fd is registered on every loop by default (io_uring_enter then skips its
// lookup), and the fallback, the plain fd as where the kernel refuses, serves the same.
TEST(UringBackend, RegisteredRingFdAndItsFallbackBothEcho) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  for (bool registered : {true, false}) {
    SCOPED_TRACE(registered ? "registered ring fd" : "plain ring fd");
    EchoHandler handler;
    Options o = test_options(Backend::kIoUring, 2);
    o.uring_register_ring = registered;
    TestServer server(handler, o);
    ASSERT_TRUE(server.start());
    const uint64_t rings = 2 + (o.reuse_port ? 0 : 1);  // and the acceptor's
    EXPECT_EQ(server.engine().stats().uring_registered_rings, registered ? rings : 0u);
    echo_from_many(server, 8, 100000, registered ? 300 : 400);
    if (HasFatalFailure()) return;
  }
}

// Sockets installed in this process's io_uring fixed file tables, read from each ring's
// /proc fdinfo ("UserFiles:" then one "<slot>: socket:[inode]" line per filled slot).
// nullopt when a ring's fdinfo left its table out (the kernel skips it when the ring's
// lock is busy): a count only when every ring reported.
std::optional<size_t> fixed_sockets() {
  size_t count = 0;
  for (const std::filesystem::directory_entry& e :
       std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec).string() != "anon_inode:[io_uring]") continue;
    std::ifstream info("/proc/self/fdinfo/" + e.path().filename().string());
    bool table = false;
    for (std::string line; std::getline(info, line);) {
      if (line.rfind("UserFiles:", 0) == 0) table = true;
      if (line.find(": socket:[") != std::string::npos) ++count;
    }
    if (!table) return std::nullopt;
  }
  return count;
}

bool fixed_sockets_are(size_t want) {
  return eventually([want] { return fixed_sockets() == want; });
}

// Direct descriptors: each open connection sits in its loop's fixed file table (sized from
// max_connections_per_loop; the acceptor loop has none) and leaves it when it closes; with
// the table turned off, plain fds serve the same bytes.
TEST(UringBackend, OpenConnectionsUseTheFixedFileTableAndItsFallbackEchoes) {
  if (!io_uring_usable() || !kernel_at_least(6, 13)) GTEST_SKIP() << "needs kernel 6.13+";
  for (bool fixed : {true, false}) {
    SCOPED_TRACE(fixed ? "fixed files" : "plain fds");
    EchoHandler handler;
    Options o = test_options(Backend::kIoUring, 2);
    o.max_connections_per_loop = 50;
    o.uring_fixed_files = fixed;
    TestServer server(handler, o);
    ASSERT_TRUE(server.start());
    EXPECT_EQ(server.engine().stats().uring_fixed_file_slots, fixed ? 2 * 50u : 0u);
    {
      std::vector<Client> clients;
      ASSERT_TRUE(connect_many(server.port(), 20, &clients));
      std::vector<std::string> payloads;
      for (size_t i = 0; i < clients.size(); ++i) payloads.push_back(make_payload(70000, 500 + i));
      ASSERT_TRUE(echo_all(clients, payloads, Millis(60000)));
      EXPECT_TRUE(fixed_sockets_are(fixed ? 20 : 0));
    }
    EXPECT_TRUE(eventually([&] { return server.engine().stats().open == 0; }));
    EXPECT_TRUE(fixed_sockets_are(0));
  }
}

// Echoes, after putting /dev/null in place of the connection's fd number (at its first
// input: the slot was filled by then): operations that name the fixed slot still reach
// the socket, operations on the fd number do not.
class EchoPastTheFd : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (!swapped_) {
      swapped_ = true;
      const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (null < 0 || ::dup2(null, c.fd()) < 0) return Action::kClose;
      ::close(null);
    }
    return EchoHandler::on_traffic(c);
  }

 private:
  bool swapped_ = false;  // loop thread only; one connection per test
};

TEST(UringBackend, OperationsNameTheFixedSlotNotTheFdNumber) {
  if (!io_uring_usable() || !kernel_at_least(6, 13)) GTEST_SKIP() << "needs kernel 6.13+";
  for (bool fixed : {true, false}) {
    SCOPED_TRACE(fixed ? "fixed files" : "plain fds");
    EchoPastTheFd handler;
    Options o = test_options(Backend::kIoUring, 1);
    o.uring_fixed_files = fixed;
    TestServer server(handler, o);
    ASSERT_TRUE(server.start());
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    const std::string payload = make_payload(4000, 41);
    ASSERT_TRUE(c.send_all(payload));
    std::string back;
    if (fixed) {
      EXPECT_TRUE(c.recv_exact(payload.size(), &back));
      EXPECT_EQ(back, payload);
    } else {  // the send went to /dev/null's fd: ENOTSOCK closes the connection
      EXPECT_NE(c.wait_end(Millis(5000), &back), End::kTimeout);
      EXPECT_TRUE(back.empty());
    }
  }
}

// A socket the server closes must close at once (the peer sees EOF), even while an older
// connection keeps a receive in flight on its own fixed slot, and at engine stop for
// connections with nothing in flight.
TEST(UringBackend, ClosedFixedSlotsCloseTheirSocketsPromptly) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  struct CloseOnX : EchoHandler {
    Action on_traffic(Conn& c) override {
      if (c.peek().find('x') != std::string_view::npos) return Action::kClose;
      EchoHandler::echo(c);
      return Action::kNone;
    }
  } handler;
  TestServer server(handler, test_options(Backend::kIoUring, 1));
  ASSERT_TRUE(server.start());
  Client idle;
  ASSERT_TRUE(idle.connect_tcp(server.port()));
  ASSERT_TRUE(idle.echo("still here"));
  for (int i = 0; i < 5; ++i) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(server.port()));
    ASSERT_TRUE(c.send_all("x"));
    EXPECT_EQ(c.wait_end(Millis(2000)), End::kEof) << "round " << i;
  }
  ASSERT_TRUE(idle.echo("and now"));
  server.stop();
  EXPECT_EQ(idle.wait_end(Millis(5000)), End::kEof);
}

// 64 connections send 256 KiB each at once into a ring of four 4 KiB buffers: receives
// run dry again and again (counted), and every connection still gets its bytes back intact,
// with buffers consumed incrementally and whole.
TEST(UringBackend, TinyBufferRingStillEchoesEveryByte) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  for (bool incremental : {true, false}) {
    SCOPED_TRACE(incremental ? "incremental buffers" : "whole buffers");
    EchoHandler handler;
    // One buffer per completion (bundles: the next test).
    TestServer server(handler, small_ring(4, false, incremental));
    ASSERT_TRUE(server.start());
    constexpr size_t kConns = 64;
    echo_from_many(server, kConns, 256 * 1024, incremental ? 1000 : 1100);
    if (HasFatalFailure()) return;
    // The loop counts a send when its completion arrives, which may be after the client
    // already holds the bytes: wait for the counters to settle.
    const uint64_t total = kConns * 256 * 1024;
    EXPECT_TRUE(wait_until([&] { return server.engine().stats().bytes_out >= total; }, Millis(5000)));
    EngineStats st = server.engine().stats();
    EXPECT_GT(st.buffer_ring_empty, 0u) << "the ring never ran dry: the test did not test it";
    EXPECT_EQ(st.bytes_in, total);
    EXPECT_EQ(st.bytes_out, total);
  }
}

// Receive bundles on (one completion filling several provided buffers, kernel 6.10+), the
// same starved ring: every byte still comes back, in order, on every connection; with
// incremental consumption a bundle may begin inside a buffer and leave its last one open.
TEST(UringBackend, RecvBundlesWithTinyRingEchoEveryByte) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  for (bool incremental : {true, false}) {
    SCOPED_TRACE(incremental ? "incremental buffers" : "whole buffers");
    EchoHandler handler;
    TestServer server(handler, small_ring(8, true, incremental));
    ASSERT_TRUE(server.start());
    echo_from_many(server, 32, 512 * 1024, incremental ? 2000 : 2100);
    if (HasFatalFailure()) return;
    EXPECT_GT(server.engine().stats().recv_bundles, 0u) << "no receive filled two buffers";
  }
}

// Incremental consumption (IOU_PBUF_RING_INC, kernel 6.12+) is used where the kernel has
// it, and many small receives from different connections then share one buffer, each at
// its own offset: 24 connections trade 300 small messages each, in lock step, through a
// ring of two buffers, with bundles on and off; every echo comes back exact. Off, the
// gauge says so and the same traffic passes too.
TEST(UringBackend, IncrementalBuffersCarrySmallReceivesOfManyConnections) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  for (int variant = 0; variant < 3; ++variant) {
    const bool incremental = variant != 2;
    const bool bundles = variant == 1;
    SCOPED_TRACE(testing::Message() << "incremental " << incremental << " bundles " << bundles);
    EchoHandler handler;
    const Options o = small_ring(2, bundles, incremental);
    TestServer server(handler, o);
    ASSERT_TRUE(server.start());
    const uint64_t rings = 1 + (o.reuse_port ? 0 : 1);  // and the acceptor's
    if (incremental && kernel_at_least(6, 12)) {  // IOU_PBUF_RING_INC: 6.12+
      EXPECT_EQ(server.engine().stats().uring_incremental_rings, rings);
    } else if (!incremental) {
      EXPECT_EQ(server.engine().stats().uring_incremental_rings, 0u);
    }
    std::vector<Client> clients;
    ASSERT_TRUE(connect_many(server.port(), 24, &clients));
    uint64_t sent = 0;
    for (int round = 0; round < 300; ++round) {
      std::vector<std::string> msgs;
      for (size_t i = 0; i < clients.size(); ++i) {
        msgs.push_back(make_payload(1 + (round * 7 + i * 13) % 97, round * 1000 + i));
        ASSERT_TRUE(clients[i].send_all(msgs.back()));
        sent += msgs.back().size();
      }
      for (size_t i = 0; i < clients.size(); ++i) {
        std::string got;
        ASSERT_TRUE(clients[i].recv_exact(msgs[i].size(), &got));
        ASSERT_EQ(got, msgs[i]) << "connection " << i << ", round " << round;
      }
    }
    EXPECT_TRUE(eventually([&] { return server.engine().stats().bytes_in == sent; }));
  }
}

// Bundles with roomy buffers and one big message: 4 MiB echoed intact.
TEST(UringBackend, RecvBundlesEchoLargeMessage) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  EchoHandler handler;
  Options o = test_options(Backend::kIoUring, 1);
  o.uring_recv_bundle = true;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  EXPECT_TRUE(c.echo(make_payload(4 << 20, 99), Millis(30000)));
  EXPECT_GT(server.engine().stats().recv_bundles, 0u) << "no receive filled two buffers";
}

// The provided-buffer ring starts small and grows when receives find it empty: a quiet
// loop keeps the buffers it was given at start, and 32 connections streaming 256 KiB each
// through a ring that starts at 2 buffers make it grow (up to its 64), every byte intact.
TEST(UringBackend, BufferRingGrowsWithLoadAndStaysSmallWhenQuiet) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  Options o = small_ring(64, false, false);
  o.uring_buffer_initial = 2;
  const uint64_t rings = 1 + (o.reuse_port ? 0 : 1);  // and the acceptor's
  EchoHandler handler;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  EXPECT_EQ(server.engine().stats().uring_buffers_offered, 2 * rings);
  {
    Client quiet;
    ASSERT_TRUE(quiet.connect_tcp(server.port()));
    ASSERT_TRUE(quiet.echo("one small message", Millis(10000)));
  }
  EXPECT_EQ(server.engine().stats().uring_buffers_offered, 2 * rings) << "grew while quiet";
  echo_from_many(server, 32, 256 * 1024, 3000);
  if (HasFatalFailure()) return;
  const EngineStats st = server.engine().stats();
  EXPECT_GT(st.buffer_ring_empty, 0u) << "the ring never ran dry: the test proves nothing";
  EXPECT_GT(st.uring_buffers_offered, 2 * rings);
  EXPECT_LE(st.uring_buffers_offered, 64 * rings);
}

// A buffer ring size that is not a power of two is refused at start with a reason.
TEST(UringBackend, BadBufferRingSizeIsAClearError) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  Options o = test_options(Backend::kIoUring, 1);
  o.uring_buffer_count = 100;
  Status s = start_error(o);
  EXPECT_NE(s.message().find("power of two"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ringnet::test
