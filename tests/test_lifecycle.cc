// SPDX-License-Identifier: MIT
// Connection and engine lifecycle regressions, each for a bug a review found:
//   - Action::kClose from on_open while other connections echo: no connection may see
//     another's bytes (io_uring: an operation prepared for a closed fd number must never
//     land on a new socket that reused the number).
//   - write()/flush() from on_close are refused and harmless: slots are never freed twice,
//     so two live connections never share one Conn.
//   - Conn::flush() inside on_traffic on a dead peer does not run on_close under the
//     handler's feet; the close is settled later, once, as a reset/error.
//   - Engine::stop() lets queued output flush (up to Options::stop_flush_timeout), and
//     gives up after the timeout, counting what was dropped.
//   - Engine::stop() before start() is latched, not lost.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

class LifecycleTest : public testing::TestWithParam<Backend> {};

// ---- 1. close from on_open while others echo ---------------------------------------------

// Decides in on_open by the client's source address:
//   127.0.0.2  writes "bye\n" and returns Action::kClose
//   127.0.0.3  returns Action::kClose with nothing written (closed in the same iteration)
//   otherwise  echoes
class RejectBySourceHandler : public EchoHandler {
 public:
  Action on_open(Conn& c) override {
    EchoHandler::on_open(c);
    std::string ip = c.remote_addr().ip_string();
    if (ip == "127.0.0.2") {
      if (!c.write("bye\n").is_ok()) write_failures.fetch_add(1);
      return Action::kClose;
    }
    if (ip == "127.0.0.3") return Action::kClose;
    return Action::kNone;
  }
  // A rejected connection's on_close does a little work (300 us of spinning): other
  // connections closed in the same batch have given their fd numbers back by now, so new
  // accepts reuse them while this loop is still busy, before its next submission.
  void on_close(Conn& c, CloseInfo info) override {
    if (c.remote_addr().ip_string() != "127.0.0.1") {
      auto until = Clock::now() + std::chrono::microseconds(300);
      while (Clock::now() < until) {
      }
    }
    EchoHandler::on_close(c, info);
  }
  std::atomic<int> write_failures{0};
};

enum class Role { kEcho, kBye, kSilent };

struct WaveClient {
  Client client;
  Role role = Role::kEcho;
  std::string payload;  // kEcho: sent right after connecting, expected back
};

// Opens n clients: roles cycle echo, bye, echo, silent. Each echo client sends its whole
// payload as soon as it is connected, so bytes are arriving on new sockets while rejected
// connections are being closed around them.
testing::AssertionResult open_wave(const SockAddr& addr, size_t n, size_t payload_size,
                                   uint64_t first_seed, std::vector<WaveClient>* out) {
  for (size_t i = 0; i < n; ++i) {
    WaveClient wc;
    const char* ip = "127.0.0.1";
    switch (i % 4) {
      case 1: wc.role = Role::kBye; ip = "127.0.0.2"; break;
      case 3: wc.role = Role::kSilent; ip = "127.0.0.3"; break;
      default: wc.role = Role::kEcho; break;
    }
    auto r = wc.client.connect(addr, kIoTimeout, ip);
    if (!r) return testing::AssertionFailure() << "client " << i << " from " << ip << ": " << r.message();
    if (wc.role == Role::kEcho) {
      wc.payload = make_payload(payload_size, first_seed + i);
      auto s = wc.client.send_all(wc.payload);
      if (!s) return testing::AssertionFailure() << "client " << i << ": " << s.message();
    }
    out->push_back(std::move(wc));
  }
  return testing::AssertionSuccess();
}

// Reads from every echo client of the wave at once until each has as many bytes as it
// sent; then each must hold exactly its own payload.
testing::AssertionResult collect_echoes(std::vector<WaveClient>& wave, Millis timeout) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < wave.size(); ++i) {
    if (wave[i].role == Role::kEcho) idx.push_back(i);
  }
  std::vector<std::string> got(wave.size());
  auto deadline = Clock::now() + timeout;
  std::vector<char> buf(64 * kKiB);
  size_t done = 0;
  std::vector<bool> finished(wave.size(), false);
  while (done < idx.size()) {
    std::vector<pollfd> pfds;
    std::vector<size_t> which;
    for (size_t i : idx) {
      if (finished[i]) continue;
      pfds.push_back(pollfd{wave[i].client.fd(), POLLIN, 0});
      which.push_back(i);
    }
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    int rc = left > 0 ? ::poll(pfds.data(), pfds.size(), static_cast<int>(left)) : 0;
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      size_t i = which.front();
      return testing::AssertionFailure()
             << "timed out with " << idx.size() - done << " of " << idx.size()
             << " echo clients short; e.g. client " << i << " got " << got[i].size() << "/"
             << wave[i].payload.size() << " bytes";
    }
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      size_t i = which[k];
      size_t want = wave[i].payload.size() - got[i].size();
      ssize_t r = ::recv(pfds[k].fd, buf.data(), std::min(buf.size(), want), 0);
      if (r > 0) {
        got[i].append(buf.data(), static_cast<size_t>(r));
      } else if (r == 0) {
        return testing::AssertionFailure() << "client " << i << ": EOF after "
                                           << got[i].size() << " bytes";
      } else if (errno != EAGAIN && errno != EINTR) {
        return testing::AssertionFailure() << "client " << i << ": recv: " << std::strerror(errno);
      }
      if (got[i].size() == wave[i].payload.size()) {
        auto same = same_bytes(wave[i].payload, got[i]);
        if (!same) return testing::AssertionFailure() << "client " << i << ": " << same.message();
        finished[i] = true;
        ++done;
      }
    }
  }
  return testing::AssertionSuccess();
}

// 300 connections in 6 waves; half of each wave is closed by on_open (with "bye\n", or
// with nothing), the other half sends 32 KiB as soon as it is connected. While one wave's
// echoes are read, the next wave is being opened. Every echo client must get exactly its
// own bytes back (none lost to, none taken from, another socket), every rejected one
// exactly "bye\n" (or nothing) then EOF; on_close says kLocalClose for the rejected and
// kPeerClosed for the rest; then a second echo over all survivors still works.
TEST_P(LifecycleTest, CloseFromOnOpenWhileOthersEchoKeepsBytesApart) {
  constexpr size_t kWaves = 6;
  constexpr size_t kPerWave = 50;
  constexpr size_t kPayload = 32 * kKiB;
  ASSERT_TRUE(ensure_fd_limit(4096));
  {
    // The rejected clients connect from 127.0.0.2 and 127.0.0.3 (any 127/8 address is
    // local on Linux).
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.3", &sin.sin_addr);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    int err = errno;
    ::close(fd);
    if (rc != 0) GTEST_SKIP() << "cannot bind 127.0.0.3: " << std::strerror(err);
  }
  RejectBySourceHandler handler;
  // One loop: the adoptions and closes of a whole batch of connections share its iterations.
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());

  std::vector<std::vector<WaveClient>> waves(kWaves);
  ASSERT_TRUE(open_wave(server.addr(), kPerWave, kPayload, 0, &waves[0]));
  for (size_t w = 0; w < kWaves; ++w) {
    std::future<testing::AssertionResult> next;
    if (w + 1 < kWaves) {
      next = std::async(std::launch::async, [&, w] {
        return open_wave(server.addr(), kPerWave, kPayload, (w + 1) * 1000, &waves[w + 1]);
      });
    }
    auto echoed = collect_echoes(waves[w], Millis(10000));
    if (next.valid()) {
      ASSERT_TRUE(next.get()) << "opening wave " << w + 1;
    }
    ASSERT_TRUE(echoed) << "wave " << w << "; " << describe(server.engine().stats());
  }

  size_t bye = 0, silent = 0, echo = 0, bad_rejects = 0;
  std::vector<Client> survivors;
  std::vector<std::string> payloads;
  for (auto& wave : waves) {
    for (WaveClient& wc : wave) {
      if (wc.role == Role::kEcho) {
        ++echo;
        survivors.push_back(std::move(wc.client));
        payloads.push_back(make_payload(kPayload, 100000 + survivors.size()));
        continue;
      }
      ++(wc.role == Role::kBye ? bye : silent);
      const std::string want = wc.role == Role::kBye ? "bye\n" : "";
      std::string got;
      auto r = wc.client.recv_until_eof(&got, Millis(5000));
      if ((!r || got != want) && ++bad_rejects <= 5) {
        ADD_FAILURE() << (wc.role == Role::kBye ? "bye" : "silent") << " client port "
                      << wc.client.local_port() << ": " << (r ? "" : r.message())
                      << " read [" << got << "]";
      }
    }
  }
  EXPECT_EQ(bad_rejects, 0u) << "of " << bye + silent << " rejected clients";
  EXPECT_EQ(handler.write_failures.load(), 0) << "write() in on_open was refused";

  // The survivors still echo their own bytes after all the closing around them.
  ASSERT_TRUE(echo_all(survivors, payloads, Millis(15000)));
  for (Client& c : survivors) c.close();

  const size_t total = kWaves * kPerWave;
  ASSERT_EQ(bye + silent + echo, total);
  ASSERT_TRUE(handler.wait_closes(total, Millis(10000)))
      << handler.closes() << " of " << total << " on_close calls";
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().closed >= total; }, Millis(5000)));
  std::this_thread::sleep_for(Millis(20));  // a second on_close, if any, shows up
  EXPECT_EQ(handler.opens(), total);
  EXPECT_EQ(handler.closes(), total);
  EXPECT_EQ(handler.closes_with(CloseReason::kLocalClose), bye + silent);
  EXPECT_EQ(handler.closes_with(CloseReason::kPeerClosed), echo);
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.accepted, total) << describe(st);
  EXPECT_EQ(st.closed, total) << describe(st);
  EXPECT_EQ(st.open, 0u) << describe(st);
}

// ---- 2. write/flush from on_close ---------------------------------------------------------

// Echoes; in on_close tries write("x") and flush() and records what they returned, and
// whether output was still queued at that point.
class WriteInCloseHandler : public EchoHandler {
 public:
  void on_close(Conn& c, CloseInfo info) override {
    if (c.outbound_buffered() > 0) closes_with_pending.fetch_add(1);
    Status w = c.write("x");
    Status f = c.flush();
    (w.is_ok() ? write_ok : write_refused).fetch_add(1);
    (f.is_ok() ? flush_ok : flush_refused).fetch_add(1);
    EchoHandler::on_close(c, info);
  }
  std::atomic<int> write_ok{0}, write_refused{0}, flush_ok{0}, flush_refused{0};
  std::atomic<int> closes_with_pending{0};
};

// Rounds of: clients that send 4 MiB without reading (so the server has echo output queued)
// and then reset, interleaved with new connections; then every live echo connection echoes
// a fresh distinct payload. write()/flush() in on_close must be refused every time, each
// echo connection must get exactly its own bytes, and in the end accepted == closed with
// nothing open.
TEST_P(LifecycleTest, WriteAndFlushInOnCloseAreRefusedAndSlotsStayDistinct) {
  constexpr int kRounds = 8;
  constexpr int kResetters = 4;
  constexpr size_t kResetterBytes = 4 * kMiB;
  constexpr size_t kEchoBytes = 64 * kKiB;
  WriteInCloseHandler handler;
  // Small socket buffers on both sides, so most of the echo stays queued in the engine.
  Options opts = test_options(GetParam(), 1);
  opts.send_buffer = 128 * kKiB;
  TestServer server(handler, opts);
  ASSERT_TRUE(server.start());

  std::vector<Client> echoers;
  std::vector<uint16_t> resetter_ports;
  uint64_t expected_in = 0;
  uint64_t seed = 5000;
  size_t total = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<Client> resetters;
    ASSERT_TRUE(connect_many(server.port(), kResetters, &resetters));
    total += kResetters;
    for (Client& r : resetters) {
      int rcvbuf = 64 * kKiB;
      ::setsockopt(r.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
      ASSERT_TRUE(r.send_all(make_payload(kResetterBytes, seed++), Millis(15000)));
      expected_in += kResetterBytes;
      resetter_ports.push_back(r.local_port());
    }
    // The server has read everything (so its echo of it is queued or sent).
    ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_in >= expected_in; },
                           Millis(10000)))
        << describe(server.engine().stats());
    // Reset one, open one: the new connections land on the slots being freed.
    for (Client& r : resetters) {
      r.reset();
      Client n;
      ASSERT_TRUE(n.connect_tcp(server.port()));
      echoers.push_back(std::move(n));
      ++total;
    }
    std::vector<std::string> payloads;
    for (size_t i = 0; i < echoers.size(); ++i) payloads.push_back(make_payload(kEchoBytes, seed++));
    ASSERT_TRUE(echo_all(echoers, payloads, Millis(15000)))
        << "round " << round << "; " << describe(server.engine().stats());
    for (const auto& p : payloads) expected_in += p.size();
  }
  ASSERT_TRUE(handler.wait_closes(resetter_ports.size(), Millis(10000)));
  for (Client& c : echoers) c.close();
  ASSERT_TRUE(handler.wait_closes(total, Millis(10000)))
      << handler.closes() << " of " << total << " on_close calls";
  ASSERT_TRUE(wait_until(
      [&] {
        EngineStats st = server.engine().stats();
        return st.open == 0 && st.closed >= total;
      },
      Millis(5000)))
      << describe(server.engine().stats());
  std::this_thread::sleep_for(Millis(20));  // let any extra (double) close show up

  EXPECT_EQ(handler.write_ok.load(), 0) << "write() from on_close was accepted";
  EXPECT_EQ(handler.flush_ok.load(), 0) << "flush() from on_close was accepted";
  EXPECT_EQ(handler.write_refused.load(), static_cast<int>(total));
  EXPECT_EQ(handler.flush_refused.load(), static_cast<int>(total));
  EXPECT_GE(handler.closes_with_pending.load(), static_cast<int>(resetter_ports.size() / 2))
      << "few connections had output queued at on_close; the test barely exercised that";
  std::printf("[ info ] %d of %zu resets had output queued at on_close\n",
              handler.closes_with_pending.load(), resetter_ports.size());
  for (uint16_t port : resetter_ports) {
    auto rec = handler.close_for_port(port);
    ASSERT_TRUE(rec.has_value()) << "port " << port;
    EXPECT_TRUE(rec->reason == CloseReason::kReset || rec->reason == CloseReason::kError)
        << "port " << port << ": " << testing::PrintToString(rec->reason);
  }
  EngineStats st = server.engine().stats();
  EXPECT_EQ(handler.opens(), total);
  EXPECT_EQ(handler.closes(), total);
  EXPECT_EQ(st.accepted, total) << describe(st);
  EXPECT_EQ(st.closed, st.accepted) << describe(st);
  EXPECT_EQ(st.open, 0u) << describe(st);
}

// ---- 3. flush() on a dead peer inside on_traffic -------------------------------------------

// The connection on_traffic is running for on this loop thread (ConnId::pack(), 0 = none).
thread_local uint64_t t_in_traffic = 0;

// On "S" (the staller): blocks this loop until the test releases it, so that the victim's
// bytes and its reset are both waiting when the loop looks again. On anything else: writes
// 4 MiB and flush()es, noting whether flush() failed. on_close notes whether it ran while
// on_traffic was on the stack.
class FlushOnDeadPeerHandler : public EchoHandler {
 public:
  FlushOnDeadPeerHandler() : big_(make_payload(4 * kMiB, 31)) {}

  Action on_traffic(Conn& c) override {
    if (c.peek().starts_with("S")) {
      c.discard();
      uint64_t seq = stall_seq.fetch_add(1) + 1;
      wait_until([&] { return released_seq.load() >= seq; }, Millis(5000), Millis(1));
      return Action::kNone;
    }
    t_in_traffic = c.id().pack();
    c.discard();
    Status w = c.write(big_);
    Status f = c.flush();
    traffic_runs.fetch_add(1);
    if (!w.is_ok()) write_errors.fetch_add(1);
    if (!f.is_ok()) flush_errors.fetch_add(1);
    t_in_traffic = 0;
    return Action::kNone;
  }

  void on_close(Conn& c, CloseInfo info) override {
    if (t_in_traffic != 0) nested_any.fetch_add(1);
    if (t_in_traffic == c.id().pack()) nested_same.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(ids_mu_);
      ++closes_by_id_[c.id().pack()];
    }
    EchoHandler::on_close(c, info);
  }

  std::map<uint64_t, int> closes_by_id() const {
    std::lock_guard<std::mutex> lock(ids_mu_);
    return closes_by_id_;
  }

  std::atomic<uint64_t> stall_seq{0}, released_seq{0};
  std::atomic<int> traffic_runs{0}, write_errors{0}, flush_errors{0};
  std::atomic<int> nested_any{0}, nested_same{0};

 private:
  const std::string big_;
  mutable std::mutex ids_mu_;
  std::map<uint64_t, int> closes_by_id_;
};

// 30 times: a fresh connection sends one byte and resets while the loop is held busy, so
// on_traffic sees the byte and its 4 MiB write + flush() meet the dead peer. on_close must
// never run nested inside on_traffic, must run exactly once per connection, and must say
// kReset or kError with an errno.
TEST_P(LifecycleTest, FlushOnDeadPeerInsideOnTrafficDoesNotCloseUnderHandler) {
  constexpr int kIterations = 30;
  FlushOnDeadPeerHandler handler;
  TestServer server(handler, test_options(GetParam(), 1));
  ASSERT_TRUE(server.start());
  // However the test ends, the loop is not left waiting for a release (destroyed before
  // the server).
  struct ReleaseAll {
    FlushOnDeadPeerHandler& h;
    ~ReleaseAll() { h.released_seq.store(UINT64_MAX); }
  } release_all{handler};
  Client staller;
  ASSERT_TRUE(staller.connect_tcp(server.port()));
  const uint16_t staller_port = staller.local_port();

  std::set<uint64_t> victim_ids;
  std::vector<uint16_t> victim_ports;
  for (int i = 0; i < kIterations; ++i) {
    Client v;
    ASSERT_TRUE(v.connect_tcp(server.port()));
    const uint16_t port = v.local_port();
    OpenRecord open;
    ASSERT_TRUE(handler.wait_open_for_port(port, &open));
    victim_ids.insert(open.handle.id().pack());
    victim_ports.push_back(port);
    // Hold the loop, then send one byte and reset behind its back.
    ASSERT_TRUE(staller.send_all("S"));
    ASSERT_TRUE(wait_until([&] { return handler.stall_seq.load() == uint64_t(i + 1); },
                           Millis(5000)))
        << "the staller's on_traffic did not run";
    ASSERT_TRUE(v.send_all("a"));
    v.reset();
    handler.released_seq.store(uint64_t(i + 1));
    ASSERT_TRUE(handler.wait_closes(size_t(i + 1), Millis(5000)))
        << "iteration " << i << ": no on_close after the reset; "
        << describe(server.engine().stats());
  }
  std::this_thread::sleep_for(Millis(50));  // a second on_close, if any, shows up

  EXPECT_EQ(handler.nested_same.load(), 0)
      << "on_close ran inside on_traffic for the same connection";
  EXPECT_EQ(handler.nested_any.load(), 0) << "on_close ran inside some on_traffic";
  EXPECT_GT(handler.traffic_runs.load(), 0)
      << "on_traffic never ran for a reset connection; the test did not exercise flush()";
  if (GetParam() == Backend::kEpoll) {
    // epoll sends synchronously: flush() itself must have met the dead peer.
    EXPECT_GT(handler.flush_errors.load(), 0) << "flush() never met the dead peer";
  }
  auto by_id = handler.closes_by_id();
  EXPECT_EQ(by_id.size(), victim_ids.size());
  for (uint64_t id : victim_ids) {
    auto it = by_id.find(id);
    int n = it == by_id.end() ? 0 : it->second;
    EXPECT_EQ(n, 1) << "connection id " << id << " closed " << n << " times";
  }
  size_t checked = 0;
  for (const CloseRecord& r : handler.close_records()) {
    if (r.remote_port == staller_port) continue;
    ++checked;
    EXPECT_TRUE(r.reason == CloseReason::kReset || r.reason == CloseReason::kError)
        << "port " << r.remote_port << ": " << testing::PrintToString(r.reason);
    EXPECT_NE(r.error, 0) << "port " << r.remote_port << " closed without an errno";
  }
  EXPECT_EQ(checked, size_t{kIterations});
  std::printf("[ info ] on_traffic runs %d, write errors %d, flush errors %d of %d resets\n",
              handler.traffic_runs.load(), handler.write_errors.load(),
              handler.flush_errors.load(), kIterations);
}

// ---- 4. stop() with queued output -----------------------------------------------------------

const std::string& big_reply() {
  static const std::string payload = make_payload(8 * kMiB, 8080);
  return payload;
}

// On "GO": writes 8 MiB (big_reply()) and notes how much of it was still queued.
class GoHandler : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    if (c.peek().find("GO") == std::string_view::npos) return Action::kNone;
    c.discard();
    c.write(big_reply()).ignore();
    queued_after_write.store(c.outbound_buffered());
    written.store(true);
    return Action::kNone;
  }
  std::atomic<bool> written{false};
  std::atomic<size_t> queued_after_write{0};
};

// Reads `chunk` bytes at most per recv, pausing `pause` after each, until EOF, reset,
// error or timeout.
End slow_read(Client& c, size_t chunk, Millis pause, std::string* out, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::string buf(chunk, '\0');
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) return End::kTimeout;
    pollfd p{c.fd(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc == 0) return End::kTimeout;
    if (rc < 0) {
      if (errno == EINTR) continue;
      return End::kError;
    }
    ssize_t n = ::recv(c.fd(), buf.data(), buf.size(), 0);
    if (n > 0) {
      out->append(buf.data(), static_cast<size_t>(n));
      std::this_thread::sleep_for(pause);
      continue;
    }
    if (n == 0) return End::kEof;
    if (errno == EINTR || errno == EAGAIN) continue;
    return errno == ECONNRESET ? End::kReset : End::kError;
  }
}

// 8 MiB queued for a client that reads 64 KiB every 2 ms; stop() from another thread with
// stop_flush_timeout 5 s: the client gets all 8 MiB intact, then EOF; the reason is
// kShutdown, nothing is dropped, and stop()/wait() return.
TEST_P(LifecycleTest, StopFlushesQueuedOutputToSlowReader) {
  GoHandler handler;
  Options opts = test_options(GetParam(), 1);
  opts.stop_flush_timeout = Millis(5000);
  TestServer server(handler, opts);
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const uint16_t port = c.local_port();
  ASSERT_TRUE(c.send_all("GO"));
  ASSERT_TRUE(wait_until([&] { return handler.written.load(); }, Millis(5000)));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_out > 0; }, Millis(5000)));
  EXPECT_GT(handler.queued_after_write.load(), 0u)
      << "nothing was queued; the test did not exercise a flush during stop()";

  std::thread stopper([&] { server.engine().stop(); });
  std::string got;
  End end = slow_read(c, 64 * kKiB, Millis(2), &got, Millis(20000));
  stopper.join();
  EXPECT_EQ(end, End::kEof) << "after " << got.size() << " bytes";
  EXPECT_TRUE(same_bytes(big_reply(), got));

  auto stopped = std::async(std::launch::async, [&] { server.stop(); });
  ASSERT_EQ(stopped.wait_for(Millis(5000)), std::future_status::ready)
      << "wait() did not return after the drain";
  auto rec = handler.close_for_port(port);
  ASSERT_TRUE(rec.has_value()) << "on_close did not run before wait() returned";
  EXPECT_EQ(rec->reason, CloseReason::kShutdown);
  EXPECT_EQ(handler.shutdowns(), 1);
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.outbound_dropped, 0u) << describe(st);
  EXPECT_EQ(st.closed_by_reason[int(CloseReason::kShutdown)], 1u) << describe(st);
}

// The same 8 MiB for a client that does not read, with stop_flush_timeout 200 ms: stop()
// and wait() return within 1.5 s, the rest is counted as dropped, the reason is kShutdown.
// What the kernel did take still reaches the client, intact, as a prefix of the reply.
TEST_P(LifecycleTest, StopGivesUpOnReaderThatNeverReads) {
  GoHandler handler;
  Options opts = test_options(GetParam(), 1);
  opts.stop_flush_timeout = Millis(200);
  TestServer server(handler, opts);
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  const uint16_t port = c.local_port();
  ASSERT_TRUE(c.send_all("GO"));
  ASSERT_TRUE(wait_until([&] { return handler.written.load(); }, Millis(5000)));
  EXPECT_GT(handler.queued_after_write.load(), 0u);

  auto t0 = Clock::now();
  auto stopped = std::async(std::launch::async, [&] {
    server.engine().stop();
    server.stop();  // stop() again (harmless) and wait()
  });
  ASSERT_EQ(stopped.wait_for(Millis(5000)), std::future_status::ready)
      << "stop()+wait() did not return";
  auto took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
  // 200 ms of drain plus teardown; well below the 2 s default, so an ignored option shows.
  EXPECT_LT(took.count(), 1500) << "stop()+wait() took " << took.count() << " ms";

  auto rec = handler.close_for_port(port);
  ASSERT_TRUE(rec.has_value()) << "on_close did not run before wait() returned";
  EXPECT_EQ(rec->reason, CloseReason::kShutdown);
  EXPECT_EQ(handler.shutdowns(), 1);
  EngineStats st = server.engine().stats();
  EXPECT_GT(st.outbound_dropped, 0u) << describe(st);
  EXPECT_LT(st.outbound_dropped, 8 * kMiB) << describe(st);

  // Now read: the bytes the kernel accepted arrive intact, then the connection ends.
  std::string got;
  End end = c.wait_end(Millis(10000), &got);
  EXPECT_EQ(end, End::kEof) << "after " << got.size() << " bytes";
  EXPECT_LT(got.size(), 8 * kMiB);
  EXPECT_TRUE(same_bytes(std::string_view(big_reply()).substr(0, got.size()), got));
  EXPECT_EQ(got.size() + st.outbound_dropped, 8 * kMiB)
      << "received + dropped should account for every byte written; " << describe(st);
}

// ---- 5. stop() before start() ----------------------------------------------------------------

// stop() before start() is remembered: start() succeeds, the engine stops by itself, and
// wait() returns within 5 s with on_shutdown run once and the listener closed.
TEST_P(LifecycleTest, StopBeforeStartIsNotLost) {
  EchoHandler handler;
  Engine engine(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(engine.listen("tcp://127.0.0.1:0").is_ok());
  const uint16_t port = engine.listen_addrs().at(0).port();
  ASSERT_NE(port, 0);
  engine.stop();
  Status s = engine.start();
  ASSERT_TRUE(s.is_ok()) << s.message();
  auto waited = std::async(std::launch::async, [&] { engine.wait(); });
  if (waited.wait_for(Millis(5000)) != std::future_status::ready) {
    ADD_FAILURE() << "wait() did not return within 5 s: the stop() before start() was lost";
    Watchdog watchdog(Millis(10000), "stop() after start() + wait()");
    engine.stop();
    waited.wait();
    return;
  }
  EXPECT_EQ(handler.shutdowns(), 1);
  EXPECT_FALSE(engine.running());
  Client c;
  EXPECT_FALSE(c.connect_tcp(port, "127.0.0.1", Millis(1000)))
      << "the listener still accepts after the engine stopped";
  EXPECT_EQ(handler.opens(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, LifecycleTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
