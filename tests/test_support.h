// SPDX-License-Identifier: MIT
// Shared helpers for the ringnet test suites: the backends every engine test runs on, an
// RAII server, a poll()-based blocking client with timeouts, a recording echo handler, and
// deterministic payloads with checksums.
//
// Everything here talks to the engine through its public headers and real loopback sockets.
// Every wait is bounded: each helper takes a timeout and fails (it never hangs) when it runs
// out.
#pragma once

#include <gtest/gtest.h>
#include <ringnet/engine.h>
#include <ringnet/handler.h>
#include <ringnet/options.h>
#include <ringnet/worker_pool.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ringnet {
// Readable names in gtest failure messages.
void PrintTo(CloseReason reason, std::ostream* os);
void PrintTo(Backend backend, std::ostream* os);
}  // namespace ringnet

namespace ringnet::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Default bound for one blocking client operation.
inline constexpr Millis kIoTimeout{10000};

// ---- backends -------------------------------------------------------------------------

// The backends every engine test is instantiated with. When the io_uring backend lands,
// append Backend::kIoUring in test_backends() (test_support.cc), guarded by
// io_uring_usable() so that kernels/containers without io_uring still run the epoll suites.
std::vector<Backend> test_backends();
// True when this kernel lets us create an io_uring (io_uring_setup succeeds).
bool io_uring_usable();
// gtest parameter name ("epoll", "io_uring").
std::string backend_label(Backend backend);
std::string backend_param_name(const testing::TestParamInfo<Backend>& info);

// Options for a test engine: the given backend and loop count, everything else default.
Options test_options(Backend backend, int loops = 1);

// ---- misc -----------------------------------------------------------------------------

// Polls `pred` every `step` until it returns true (-> true) or `timeout` passes (-> false).
bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis step = Millis(2));
// For server-side state after a client-side event: the client sees a close or a reply
// before the server's loop has finished counting it, so assert the state eventually
// holds (within `timeout`), never right away and never after a sleep.
inline bool eventually(const std::function<bool()>& pred, Millis timeout = Millis(5000)) {
  return wait_until(pred, timeout);
}

// A plain listening socket on 127.0.0.1 (not an engine), for peers that misbehave on
// purpose. Returns the fd (-1 on failure) and sets *port. With backlog 0 and its queue
// filled by fill_accept_queue, Linux drops further SYNs: connects to it hang.
int raw_listener(int backlog, uint16_t* port);
// A 127.0.0.1 port nothing listens on (bound, then closed): connects are refused.
uint16_t unused_port();

// Raises the soft RLIMIT_NOFILE to at least `needed` (up to the hard limit).
bool ensure_fd_limit(size_t needed);

// Deterministic pseudo-random bytes: the same (size, seed) always gives the same string;
// different seeds give different strings.
std::string make_payload(size_t size, uint64_t seed);
// FNV-1a 64 over the bytes.
uint64_t checksum(std::string_view bytes);
// Compares two byte strings; on mismatch says where and reports sizes and checksums.
testing::AssertionResult same_bytes(std::string_view expected, std::string_view actual);

// Ends the test binary with a message if it is still armed after `limit`: a last line of
// defence for engine calls that have no timeout of their own (stop()/wait()).
class Watchdog {
 public:
  Watchdog(Millis limit, std::string what);
  ~Watchdog();  // disarms
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Holds a connection's loop thread inside a task, so that work posted to that loop
// meanwhile (dispatch tasks, dials, I/O) stays queued until release(). The task gives up
// by itself after `limit`, so a failed test never leaves a loop stuck for good.
class LoopBlocker {
 public:
  explicit LoopBlocker(Millis limit = Millis(10000));
  ~LoopBlocker();  // releases
  LoopBlocker(const LoopBlocker&) = delete;
  LoopBlocker& operator=(const LoopBlocker&) = delete;

  // Posts the blocking task onto h's loop and waits (bounded) until it runs there.
  testing::AssertionResult block(const ConnHandle& h, Millis timeout = kIoTimeout);
  // Lets the loop go on; it then runs what was queued behind the task.
  void release();

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool entered = false, released = false;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  Millis limit_;
};

// Records how each of a set of one-shot callbacks (RPC `done`s, pool `ready`s) ends, for
// tests that destroy their owner under them: each must end exactly once, and none may
// start after the owner's destructor returned (mark_destroyed()) or still be running then.
// Any thread.
class EndRecorder {
 public:
  // Each end() lingers this long before it returns, to widen the window in which a
  // destructor could return while a callback still runs.
  explicit EndRecorder(std::chrono::microseconds dwell = std::chrono::microseconds(0))
      : dwell_(dwell) {}
  size_t add();                   // registers one more callback; returns its index
  void end(size_t i, int code);   // called from callback i with its status code
  void mark_destroyed();          // right after the owner's destructor returned
  size_t ends() const;            // ends recorded, in all
  int late() const;               // ends that began after mark_destroyed or still ran then
  // Every callback ended exactly once, each with one of `codes`.
  testing::AssertionResult each_once(std::initializer_list<int> codes) const;
  // How many ended with `code`.
  size_t count(int code) const;

 private:
  mutable std::mutex mu_;
  std::chrono::microseconds dwell_;
  std::vector<int> ends_, codes_;
  int running_ = 0, late_ = 0;
  bool destroyed_ = false;
};

// One line with the counters of an EngineStats, for failure messages.
std::string describe(const EngineStats& st);

// ---- server ---------------------------------------------------------------------------

// An Engine for one test. start() listens on the given addresses and starts the loops;
// the destructor stops the engine and waits for it.
class TestServer {
 public:
  TestServer(EventHandler& handler, Options options);
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  testing::AssertionResult start(
      const std::vector<std::string>& addresses = {"tcp://127.0.0.1:0"});
  // stop() then wait(); safe to call more than once.
  void stop();

  Engine& engine() { return engine_; }
  // Bound address i (port resolved), from Engine::listen_addrs() at start.
  const SockAddr& addr(size_t i = 0) const { return addrs_.at(i); }
  uint16_t port(size_t i = 0) const { return addrs_.at(i).port(); }

 private:
  Engine engine_;
  std::vector<SockAddr> addrs_;
  bool started_ = false;
  bool stopped_ = false;
};

// ---- client ---------------------------------------------------------------------------

// How a connection ended, as seen by the client.
enum class End { kEof, kReset, kData, kTimeout, kError };
const char* end_name(End end);
void PrintTo(End end, std::ostream* os);

// A client socket (non-blocking underneath; every operation polls with a deadline).
class Client {
 public:
  Client() = default;
  ~Client() { close(); }
  Client(Client&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects to addr (TCP or Unix). bind_ip, if set, is bound first (source address).
  testing::AssertionResult connect(const SockAddr& addr, Millis timeout = kIoTimeout,
                                   const char* bind_ip = nullptr);
  testing::AssertionResult connect_tcp(uint16_t port, const char* ip = "127.0.0.1",
                                       Millis timeout = kIoTimeout);

  testing::AssertionResult send_all(std::string_view bytes, Millis timeout = kIoTimeout);
  // Reads exactly n bytes (appended to *out). EOF, reset or timeout first -> failure.
  testing::AssertionResult recv_exact(size_t n, std::string* out, Millis timeout = kIoTimeout);
  // Reads until orderly EOF (bytes appended to *out). Reset or timeout -> failure.
  testing::AssertionResult recv_until_eof(std::string* out, Millis timeout = kIoTimeout);
  // Sends `bytes` while reading whatever comes back, until `expect` bytes were received
  // (appended to *out). Never deadlocks on full socket buffers.
  testing::AssertionResult exchange(std::string_view bytes, size_t expect, std::string* out,
                                    Millis timeout = kIoTimeout);
  // exchange() of `bytes` that must come back unchanged.
  testing::AssertionResult echo(std::string_view bytes, Millis timeout = kIoTimeout);

  // Reads until the connection ends or timeout; any bytes read go to *data (if given)
  // and make the result kData only when the connection did not end.
  End wait_end(Millis timeout, std::string* data = nullptr);
  // True if something (bytes, EOF, error) is readable within timeout.
  bool readable_within(Millis timeout) const;

  bool shutdown_write();
  // Abortive close: SO_LINGER {1, 0} then close, so the peer sees RST.
  void reset();
  void close();
  void set_nodelay();

  int fd() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }
  uint16_t local_port() const;

 private:
  int fd_ = -1;
};

// Connects two clients that are never accepted, so a raw_listener(0)'s queue is full.
std::vector<Client> fill_accept_queue(uint16_t port);

// Opens n TCP connections to 127.0.0.1:port, one after another.
testing::AssertionResult connect_many(uint16_t port, size_t n, std::vector<Client>* out,
                                      Millis timeout = kIoTimeout);

// Drives all clients at once with one poll() loop: client i sends payloads[i] and must
// read the same bytes back. Reports the first client that failed and why.
testing::AssertionResult echo_all(std::vector<Client>& clients,
                                  const std::vector<std::string>& payloads,
                                  Millis timeout = kIoTimeout);

// ---- fixture ----------------------------------------------------------------------------

// A socket test of one handler type on every backend (instantiate it with
// testing::ValuesIn(test_backends())). The handler lives in the fixture; start() builds
// and starts a server for it with the given number of loops and connects `clients` to it.
// The server is stopped before the handler is destroyed.
template <typename Handler>
class HandlerTest : public testing::TestWithParam<Backend> {
 protected:
  testing::AssertionResult start(int loops = 1, std::initializer_list<Client*> clients = {}) {
    server_.emplace(handler_, test_options(GetParam(), loops));
    if (testing::AssertionResult r = server_->start(); !r) return r;
    for (Client* c : clients) {
      if (testing::AssertionResult r = c->connect_tcp(server_->port()); !r) return r;
    }
    return testing::AssertionSuccess();
  }
  uint16_t port() const { return server_->port(); }

  Handler handler_;
  std::optional<TestServer> server_;
};

// ---- handler --------------------------------------------------------------------------

struct OpenRecord {
  ConnHandle handle;  // usable from any thread
  int loop = -1;
  uint16_t remote_port = 0;  // 0 for Unix sockets
  std::string remote_ip;
  std::thread::id thread;  // the loop thread on_open ran on
};

struct CloseRecord {
  CloseReason reason = CloseReason::kError;
  int error = 0;
  int loop = -1;
  uint16_t remote_port = 0;
  std::thread::id thread;
};

// Echoes every byte back and records on_open / on_close / on_shutdown under a mutex.
// Subclasses override on_traffic (or on_open) and call record_open/record_close (or the
// base methods) to keep the bookkeeping.
class EchoHandler : public EventHandler {
 public:
  Action on_open(Conn& c) override;
  Action on_traffic(Conn& c) override;
  void on_close(Conn& c, CloseInfo info) override;
  void on_shutdown(Engine& e) override;

  // Writes back everything buffered and consumes it.
  static void echo(Conn& c);

  size_t opens() const;
  size_t closes() const;
  size_t closes_with(CloseReason reason) const;
  int shutdowns() const { return shutdowns_.load(); }
  std::vector<OpenRecord> open_records() const;
  std::vector<CloseRecord> close_records() const;
  std::optional<OpenRecord> open_for_port(uint16_t remote_port) const;
  std::optional<CloseRecord> close_for_port(uint16_t remote_port) const;

  bool wait_opens(size_t n, Millis timeout = kIoTimeout) const;
  bool wait_closes(size_t n, Millis timeout = kIoTimeout) const;
  // Waits for the on_open of the connection whose client port is remote_port.
  testing::AssertionResult wait_open_for_port(uint16_t remote_port, OpenRecord* out,
                                              Millis timeout = kIoTimeout) const;
  // Same, matching the client IP too (clients bound to different source IPs may share a
  // port number).
  testing::AssertionResult wait_open_for(const std::string& remote_ip, uint16_t remote_port,
                                         OpenRecord* out, Millis timeout = kIoTimeout) const;
  // Waits for the on_close of the connection whose client port is remote_port.
  testing::AssertionResult wait_close_for_port(uint16_t remote_port, CloseRecord* out,
                                               Millis timeout = kIoTimeout) const;

 protected:
  void record_open(Conn& c);
  void record_close(Conn& c, CloseInfo info);

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<OpenRecord> opens_;
  std::vector<CloseRecord> closes_;
  std::atomic<int> shutdowns_{0};
};

// "<id>\n" -> a WorkerPool job that takes `work`, then "done <id>\n" from the loop. While
// a job runs its connection holds no input and no output: only the pool's hold
// (Conn::hold) keeps a drain or the peer's EOF from closing it with the answer to come.
class PoolLineHandler : public EchoHandler {
 public:
  PoolLineHandler(WorkerPool& pool, Millis work) : pool_(pool), work_(work) {}
  Action on_traffic(Conn& c) override;

 private:
  WorkerPool& pool_;
  Millis work_;
};

}  // namespace ringnet::test
