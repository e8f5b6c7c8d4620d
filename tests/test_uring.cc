// What only the io_uring backend has: the auto/forced backend choice and its fallback to
// epoll, and a provided-buffer ring far too small for the load (ENOBUFS must be survived
// without losing a byte). The rest of the suite runs on io_uring through test_backends().
#include <gtest/gtest.h>
#include <stdlib.h>

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

// Starts an engine that must fail to start; returns the failure.
Status start_error(const Options& o) {
  EchoHandler handler;
  Engine engine(handler, o);
  EXPECT_TRUE(engine.listen("tcp://127.0.0.1:0").is_ok());
  Status s = engine.start();
  EXPECT_FALSE(s.is_ok()) << "engine started";
  return s;
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

// 64 connections send 256 KiB each at once into a ring of four 4 KiB buffers: receives
// run dry again and again (counted), and every connection still gets its bytes back intact.
TEST(UringBackend, TinyBufferRingStillEchoesEveryByte) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  EchoHandler handler;
  Options o = test_options(Backend::kIoUring, 1);
  o.uring_buffer_count = 4;
  o.uring_buffer_size = 4096;
  o.uring_recv_bundle = false;  // one buffer per completion (bundles: the next test)
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  constexpr size_t kConns = 64;
  echo_from_many(server, kConns, 256 * 1024, 1000);
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

// Receive bundles on (one completion filling several provided buffers, kernel 6.10+), the
// same starved ring: every byte still comes back, in order, on every connection.
TEST(UringBackend, RecvBundlesWithTinyRingEchoEveryByte) {
  if (!io_uring_usable()) GTEST_SKIP() << "io_uring unavailable on this kernel";
  EchoHandler handler;
  Options o = test_options(Backend::kIoUring, 1);
  o.uring_buffer_count = 8;
  o.uring_buffer_size = 4096;
  o.uring_recv_bundle = true;
  TestServer server(handler, o);
  ASSERT_TRUE(server.start());
  echo_from_many(server, 32, 512 * 1024, 2000);
  if (HasFatalFailure()) return;
  EXPECT_GT(server.engine().stats().recv_bundles, 0u) << "no receive filled two buffers";
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
