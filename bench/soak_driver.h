// SPDX-License-Identifier: MIT
// The soak client: a mix of connection roles against an echo server, every byte checked.
// Deliberately independent of the engine under test (raw edge-triggered epoll, like
// loadgen), single-threaded.
//
// Each of `conns` slots plays one role for the whole run:
//
//   echo      one request (1 B .. 128 KiB, mostly small) at a time, the next once its echo
//             is complete
//   pipeline  `pipeline_depth` messages of a per-connection size in flight
//   slow      a slow reader: keeps up to `slow_window` bytes outstanding (more than the
//             server's outbound high watermark plus the socket buffers) but reads 512 B ..
//             4 KiB every 5 .. 50 ms, with a small receive buffer, so the server's
//             backpressure engages; its bytes must still all come back
//   churn     connect, 1..3 request/response exchanges each after a pause of 0..1 s,
//             close (half of them by shutdown(SHUT_WR) right after the last request, then
//             read the echo to EOF), again with a new connection: new fds on both sides
//             all the time
//   reset     connect, then abort with RST (SO_LINGER 0): at once; or after a pause of
//             0..2 s, a partial message (1 .. 4 KiB) and 0..20 ms; or after a pause,
//             256 KiB .. 2 MiB sent and none of the echo read (the server holds output)
//             and 20..200 ms
//
// The pauses keep churn and reset slots mostly connected (so about `conns` connections
// are open at any time) at about 2,000 new connections per second with the default mix;
// `churn_rate` caps the connections they open per second together.
// Each connection has its own byte stream, derived from a connection id that is never
// reused (echo_payload.h, 64 KiB blocks): a byte that is shifted, dropped, duplicated or
// sent to the wrong connection is counted as corrupted. Bytes sent on a connection that
// ends (for any reason but our own RST) before they came back are counted as lost.
//
// Life: poll() drives the load; begin_drain() stops new requests and new connections,
// every connection finishes what is in flight, reads it all at full speed and closes;
// drained() says when nothing is open; abandon() closes what is still open, counting it.
//
// Thread-safety: none; one thread owns a Driver.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <queue>
#include <random>
#include <string>
#include <vector>

namespace soak {

enum class Role : uint8_t { kEcho, kPipeline, kSlow, kChurn, kReset };
inline constexpr int kRoleCount = 5;
const char* role_name(Role r);

struct DriverOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  size_t conns = 10000;
  unsigned mix[kRoleCount] = {60, 20, 1, 15, 4};  // percent per Role, in enum order
  double churn_rate = 3000;  // at most this many churn + reset connects per second
  size_t pipeline_depth = 16;
  size_t slow_window = 8u << 20;
  uint64_t seed = 1;
  uint64_t id_base = 0;      // connection ids start here (distinct payloads per round)
};

struct RoleStats {
  uint64_t slots = 0;
  uint64_t opened = 0;      // connections established
  uint64_t completed = 0;   // connections that ended as planned (close or our RST)
  uint64_t msgs = 0;        // requests / messages echoed completely
  uint64_t bytes_sent = 0;
  uint64_t bytes_verified = 0;  // echoed bytes that matched
};

struct Totals {
  RoleStats roles[kRoleCount];
  uint64_t connects = 0;          // connect() calls
  uint64_t opened = 0;            // established
  uint64_t resets_sent = 0;       // connections we aborted with RST
  uint64_t bytes_sent = 0;
  uint64_t bytes_sent_reset = 0;  // of bytes_sent, on connections we reset (not checked)
  uint64_t bytes_received = 0;
  uint64_t bytes_verified = 0;
  uint64_t corrupted_bytes = 0;   // received bytes that differ from what was sent there
  uint64_t lost_bytes = 0;        // sent, never echoed, connection gone (not our RST)
  uint64_t msgs = 0;
  uint64_t open_now = 0;
  uint64_t peak_open = 0;
  std::map<std::string, uint64_t> errors;  // by kind; any entry fails the soak
  uint64_t error_count() const;
};

class Driver {
 public:
  explicit Driver(const DriverOptions& opts);
  ~Driver();
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  bool init(std::string* error);  // resolves the target, creates the epoll set
  // Handles events, timers and pending connects; waits at most timeout_ms.
  void poll(int timeout_ms);
  void begin_drain();
  bool drained() const;
  void abandon();  // closes what is still open, counting its bytes as lost ("stuck")
  const Totals& totals() const { return totals_; }

 private:
  enum class State : uint8_t { kIdle, kConnecting, kOpen, kDone };
  enum class TimerKind : uint8_t { kSlowRead, kThink, kReset, kReopen };
  struct Slot {
    Role role = Role::kEcho;
    State state = State::kIdle;
    uint8_t variant = 0;       // churn: 1 = half-close; reset: 0 at once, 1 partial, 2 unread
    bool wr_shut = false;      // churn half-close: our FIN is out
    bool await_eof = false;    // churn half-close: all echoed, the server's FIN is next
    bool queued = false;
    bool thinking = false;     // churn, reset: pausing before the next request
    int fd = -1;
    uint32_t gen = 0;          // changes with every connection the slot opens
    uint32_t msg_size = 0;     // pipeline
    uint32_t exchanges_left = 0;  // churn
    uint64_t id = 0;           // payload seed of the current connection
    uint64_t tx = 0, rx = 0;   // stream positions: sent, echoed and checked
    uint64_t tx_limit = 0;     // may send up to here
  };
  struct Timer {
    int64_t when_ns;
    uint32_t index, gen;
    TimerKind kind;
    bool operator>(const Timer& o) const { return when_ns > o.when_ns; }
  };

  void assign_roles();
  void pump_connects();
  void open_conn(uint32_t index);
  void on_event(uint32_t index, uint32_t events);
  void on_connected(Slot& s);
  void after_think(Slot& s);
  void read_some(Slot& s, size_t max_bytes, int max_reads);
  void absorb(Slot& s, const char* data, size_t n);
  void progress(Slot& s);
  void flush(Slot& s);
  void finish(Slot& s);              // planned end: close (or wait for the server's FIN)
  void reset(Slot& s);               // RST
  void fail(Slot& s, const std::string& kind);
  void release(Slot& s, bool planned);
  void after_close(Slot& s);
  void run_timers();
  void serve_still_readable();
  void schedule(const Slot& s, TimerKind kind, int64_t delay_ns);
  void requeue(Slot& s);
  uint64_t next_request_size();
  uint32_t index_of(const Slot& s) const { return static_cast<uint32_t>(&s - slots_.data()); }
  bool persistent(const Slot& s) const { return s.role < Role::kChurn; }
  RoleStats& stats(const Slot& s) { return totals_.roles[static_cast<int>(s.role)]; }
  uint64_t rand(uint64_t lo, uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }

  DriverOptions opts_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int epfd_ = -1;
  bool draining_ = false;
  uint64_t next_id_;
  size_t connecting_ = 0;
  double tokens_ = 0;
  int64_t tokens_at_ns_ = 0;
  std::mt19937_64 rng_;
  std::vector<Slot> slots_;
  std::deque<uint32_t> persistent_queue_, churn_queue_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::vector<uint32_t> still_readable_, serving_;
  std::vector<char> rbuf_;
  Totals totals_;
};

int64_t monotonic_ns();

}  // namespace soak
