// PeerPool: the client side of the connection-reuse map keyed by peer address. A process
// keeps a small bounded set of live connections per address and hands them out again
// instead of dialing for every call:
//
//   ringnet::proto::PeerPool pool(engine, {.max_per_address = 1});
//   pool.get("tcp://10.0.0.7:9000", [](const ringnet::ConnHandle& conn, const ringnet::Status& s) {
//     if (!s) { /* refused, timed out, engine stopping: s says which */ return; }
//     conn.async_write(request);
//   });
//
//   // in the handler (loop thread), so the pool sees its connections come and go:
//   Action on_open(Conn& c) override { pool.on_open(c); ...; }
//   void on_close(Conn& c, CloseInfo i) override { pool.on_close(c, i); ... }
//
// Policy: up to max_per_address connections per address, opened lazily: a get() dials a
// new one while the address has fewer (live + dialing), else reuses the live ones in
// turn. A get() that finds none live waits for a dial already under way rather than
// dialing twice. A connection leaves the pool when it closes (any reason: reset, peer
// close, idle timeout); a dial that fails fails every get() waiting on it, and leaves no
// entry behind.
//
// Threads: get() and stats() from any thread. on_open/on_close on loop threads, from the
// handler's callbacks. `ready` runs outside the pool's lock: on the caller's thread for a
// reuse or an immediate error, on the connection's loop thread after a dial. The pool
// uses Conn::context() of its own dials until on_open (it clears it there).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ringnet/conn.h"
#include "ringnet/engine.h"
#include "ringnet/handler.h"
#include "ringnet/status.h"

namespace ringnet::proto {

struct PeerPoolOptions {
  size_t max_per_address = 1;                    // live + dialing connections per address
  std::chrono::milliseconds dial_timeout{5000};  // DialOptions::timeout of its dials
};

struct PeerPoolStats {
  uint64_t gets = 0;          // get() calls
  uint64_t reused = 0;        // answered with a live connection
  uint64_t dials = 0;         // dials started
  uint64_t dial_failures = 0; // dials that never connected
  uint64_t evicted = 0;       // live connections that closed and left the pool
  uint64_t live = 0;          // gauge: connections handed out now
  uint64_t dialing = 0;       // gauge: dials under way
  uint64_t waiting = 0;       // gauge: get() calls waiting for a dial
};

class PeerPool {
 public:
  using Ready = std::function<void(const ConnHandle&, const Status&)>;

  explicit PeerPool(Engine& engine, PeerPoolOptions options = {});
  ~PeerPool();  // get() callbacks still waiting are failed ("peer pool destroyed")
  PeerPool(const PeerPool&) = delete;
  PeerPool& operator=(const PeerPool&) = delete;

  // A live connection to `address` (same text forms as Engine::dial), now or once dialed.
  void get(std::string_view address, Ready ready);

  // Handler hooks. on_open returns true when `c` is one of the pool's dials.
  bool on_open(Conn& c);
  void on_close(Conn& c, CloseInfo info);

  PeerPoolStats stats() const;
  // Live connections to `address` now (0 when unknown).
  size_t live(std::string_view address) const;

 private:
  struct Dial;
  struct ConnKey {  // a connection, across loops
    int loop;
    uint64_t id;
    bool operator==(const ConnKey&) const = default;
  };
  struct ConnKeyHash {
    size_t operator()(const ConnKey& k) const {
      return std::hash<uint64_t>{}(k.id * 31 + static_cast<uint64_t>(k.loop));
    }
  };
  struct Entry {
    std::vector<std::pair<ConnKey, ConnHandle>> live;
    size_t next = 0;  // round-robin over live
    std::list<std::unique_ptr<Dial>> dialing;
    std::vector<Ready> waiting;  // for the first dial to connect
  };
  struct Dial {
    PeerPool* pool;
    std::string address;
  };
  struct Live {
    std::string address;
    ConnHandle handle;
  };
  static ConnKey key_of(const Conn& c) { return {c.loop_index(), c.id().pack()}; }
  void fail_dial(std::unordered_map<std::string, Entry>::iterator it, Dial* d,
                 std::vector<Ready>* to_fail);
  std::unordered_map<std::string, Entry>::iterator dialing_entry(Dial* d);

  Engine& engine_;
  PeerPoolOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<ConnKey, Live, ConnKeyHash> by_conn_;
  PeerPoolStats stats_;
};

}  // namespace ringnet::proto
