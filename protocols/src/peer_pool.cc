// SPDX-License-Identifier: MIT
#include "ringnet/proto/peer_pool.h"

#include <algorithm>
#include <netdb.h>

#include <cerrno>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "callbacks_in_flight.h"

namespace ringnet::proto {

// Everything the pool knows, shared by the PeerPool object and its hooks. The destructor
// closes it (under mu): the waiting gets are taken out and ended, so a dial that ends
// later has nobody to serve; the dials under way stay listed, so that their Conn::context()
// is still recognised when they connect or fail.
struct PeerPool::State {
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
  struct Dial {
    std::string address;
  };
  struct Entry {
    std::vector<std::pair<ConnKey, ConnHandle>> live;
    size_t next = 0;  // round-robin over live
    std::list<std::unique_ptr<Dial>> dialing;
    std::vector<Ready> waiting;  // for the first dial to connect
  };
  struct Live {
    std::string address;
    ConnHandle handle;
  };
  using EntryIt = std::unordered_map<std::string, Entry>::iterator;

  State(Engine& e, PeerPoolOptions o) : engine(e), options(o) {
    if (options.max_per_address == 0) options.max_per_address = 1;
  }

  static ConnKey key_of(const Conn& c) { return {c.loop_index(), c.id().pack()}; }

  void get(std::string_view address, Ready ready);
  bool on_open(Conn& c);
  void on_close(Conn& c, CloseInfo info);
  void fail_dial(EntryIt it, Dial* d, std::vector<Ready>* to_fail);
  EntryIt dialing_entry(Dial* d);
  // Runs `readies` outside the lock, counted so that the destructor can wait for them.
  void run_readies(std::unique_lock<std::mutex>& lock, std::vector<Ready>& readies,
                   const ConnHandle& h, const Status& s);

  Engine& engine;  // outlives the pool; not used once it is closed
  PeerPoolOptions options;
  std::mutex mu;
  bool closed = false;  // the pool's destructor has begun
  CallbacksInFlight readies_running;
  std::unordered_map<std::string, Entry> entries;
  std::unordered_map<ConnKey, Live, ConnKeyHash> by_conn;
  PeerPoolStats stats;
};

PeerPool::PeerPool(Engine& engine, PeerPoolOptions options)
    : state_(std::make_shared<State>(engine, options)) {}

// Ends the waiting gets here, then waits for the `ready`s other threads are running (not
// for loops).
PeerPool::~PeerPool() {
  std::vector<Ready> to_fail;
  {
    std::lock_guard lock(state_->mu);
    state_->closed = true;
    for (auto& [address, e] : state_->entries) {
      for (Ready& r : e.waiting) to_fail.push_back(std::move(r));
      e.waiting.clear();
    }
    state_->stats.waiting = 0;
  }
  for (Ready& r : to_fail) {
    if (r) r(ConnHandle(), Status::from_errno(ECANCELED, "peer pool destroyed"));
  }
  to_fail.clear();
  std::unique_lock lock(state_->mu);
  state_->readies_running.wait_others(lock);
}

void PeerPool::get(std::string_view address, Ready ready) {
  std::shared_ptr<State> st = state_;  // a `ready` run from here may destroy the pool
  st->get(address, std::move(ready));
}

PeerPoolStats PeerPool::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

size_t PeerPool::live(std::string_view address) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->entries.find(std::string(address));
  return it == state_->entries.end() ? 0 : it->second.live.size();
}

bool PeerPool::Hooks::on_open(Conn& c) { return state_ ? state_->on_open(c) : false; }

void PeerPool::Hooks::on_close(Conn& c, CloseInfo info) {
  if (state_) state_->on_close(c, info);
}

void PeerPool::State::run_readies(std::unique_lock<std::mutex>& lock, std::vector<Ready>& readies,
                                  const ConnHandle& h, const Status& s) {
  CallbacksInFlight::Scope running(readies_running, lock);
  for (Ready& r : readies) r(h, s);
  readies.clear();  // their captures go while still counted
}

void PeerPool::State::get(std::string_view address, Ready ready) {
  std::string key(address);
  ConnHandle reuse;
  Dial* start = nullptr;
  {
    std::unique_lock lock(mu);
    ++stats.gets;
    if (closed) {  // called from a `ready` while the pool is being destroyed
      std::vector<Ready> one;
      one.push_back(std::move(ready));
      run_readies(lock, one, ConnHandle(), Status::from_errno(ECANCELED, "peer pool destroyed"));
      return;
    }
    Entry& e = entries[key];
    if (e.live.size() + e.dialing.size() < options.max_per_address) {
      e.dialing.push_back(std::make_unique<Dial>(Dial{key}));
      start = e.dialing.back().get();
      ++stats.dials;
      ++stats.dialing;
    }
    if (!e.live.empty()) {
      reuse = e.live[e.next++ % e.live.size()].second;  // served now; a new dial only grows the set
      ++stats.reused;
    } else {
      e.waiting.push_back(std::move(ready));  // the first dial to connect serves it
      ++stats.waiting;
    }
  }
  if (start != nullptr) {
    Status s = engine.dial(key, {.timeout = options.dial_timeout,
                                 .context = start,
                                 .transport = options.transport,
                                 .server_name = options.server_name});
    if (!s) {
      std::vector<Ready> to_fail;
      std::unique_lock lock(mu);
      auto it = entries.find(key);
      if (it != entries.end()) fail_dial(it, start, &to_fail);
      run_readies(lock, to_fail, ConnHandle(), s);
    }
  }
  if (reuse.valid()) {
    std::vector<Ready> one;
    one.push_back(std::move(ready));
    std::unique_lock lock(mu);
    run_readies(lock, one, reuse, Status::ok());
  }
}

// Under mu. Removes the dial; when the address has no connection live or dialing any
// more, every waiter is moved to `to_fail` and the entry goes (nothing stale is left).
void PeerPool::State::fail_dial(EntryIt it, Dial* d, std::vector<Ready>* to_fail) {
  Entry& e = it->second;
  e.dialing.remove_if([d](const std::unique_ptr<Dial>& p) { return p.get() == d; });
  --stats.dialing;
  ++stats.dial_failures;
  if (!e.live.empty() || !e.dialing.empty()) return;  // others may still serve them
  stats.waiting -= e.waiting.size();
  for (Ready& r : e.waiting) to_fail->push_back(std::move(r));
  entries.erase(it);
}

// Under mu: the entry dialing `d`, or end().
PeerPool::State::EntryIt PeerPool::State::dialing_entry(Dial* d) {
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    for (const auto& p : it->second.dialing) {
      if (p.get() == d) return it;
    }
  }
  return entries.end();
}

bool PeerPool::State::on_open(Conn& c) {
  if (!c.dialed() || c.context() == nullptr) return false;
  std::vector<Ready> waiters;
  ConnHandle handle = c.handle();
  std::unique_lock lock(mu);
  Dial* d = static_cast<Dial*>(c.context());
  auto it = dialing_entry(d);  // the context is ours only if we are dialing it
  if (it == entries.end()) return false;
  Entry& e = it->second;
  e.dialing.remove_if([d](const std::unique_ptr<Dial>& p) { return p.get() == d; });
  --stats.dialing;
  c.set_context(nullptr);  // the application's slot again
  if (closed) {  // connected for a pool that is gone: nobody can be handed it
    if (e.live.empty() && e.dialing.empty()) entries.erase(it);
    lock.unlock();
    c.close();
    return true;
  }
  by_conn[key_of(c)] = Live{it->first, handle};
  e.live.emplace_back(key_of(c), handle);
  ++stats.live;
  waiters.swap(e.waiting);
  stats.waiting -= waiters.size();
  run_readies(lock, waiters, handle, Status::ok());
  return true;
}

void PeerPool::State::on_close(Conn& c, CloseInfo info) {
  if (!c.dialed()) return;
  std::vector<Ready> to_fail;
  Status why;
  std::unique_lock lock(mu);
  const bool never_connected = info.reason == CloseReason::kConnectFailed ||
                               info.reason == CloseReason::kResolveFailed ||
                               info.reason == CloseReason::kHandshakeFailed ||
                               info.reason == CloseReason::kHandshakeTimeout;
  if (never_connected && c.context() != nullptr) {
    Dial* d = static_cast<Dial*>(c.context());
    auto it = dialing_entry(d);
    if (it == entries.end()) return;  // not one of ours
    if (info.reason == CloseReason::kResolveFailed) {  // not a socket error: no errno
      why = Status::invalid("dial " + it->first + ": cannot resolve host: " +
                            ::gai_strerror(info.error));
    } else if (info.reason == CloseReason::kHandshakeFailed) {  // no errno: not retried
      why = Status::invalid("dial " + it->first + ": TLS handshake failed (reason " +
                            std::to_string(info.error) + ")");
    } else if (info.reason == CloseReason::kHandshakeTimeout) {
      why = Status::from_errno(ETIMEDOUT, "dial " + it->first + ": TLS handshake");
    } else {
      why = Status::from_errno(info.error != 0 ? info.error : ECONNABORTED, "dial " + it->first);
    }
    fail_dial(it, d, &to_fail);
  } else {
    auto it = by_conn.find(key_of(c));
    if (it == by_conn.end()) return;
    auto e = entries.find(it->second.address);
    if (e != entries.end()) {
      auto& live = e->second.live;
      live.erase(std::remove_if(live.begin(), live.end(),
                                [&](const auto& l) { return l.first == key_of(c); }),
                 live.end());
      if (live.empty() && e->second.dialing.empty() && e->second.waiting.empty()) {
        entries.erase(e);  // no stale entry is left for a later get()
      }
    }
    by_conn.erase(it);
    --stats.live;
    ++stats.evicted;
  }
  if (!to_fail.empty()) run_readies(lock, to_fail, ConnHandle(), why);
}

}  // namespace ringnet::proto
