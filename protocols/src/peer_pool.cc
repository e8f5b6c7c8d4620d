#include "ringnet/proto/peer_pool.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ringnet::proto {

PeerPool::PeerPool(Engine& engine, PeerPoolOptions options)
    : engine_(engine), options_(options) {
  if (options_.max_per_address == 0) options_.max_per_address = 1;
}

PeerPool::~PeerPool() {
  std::vector<Ready> to_fail;
  {
    std::lock_guard lock(mu_);
    for (auto& [address, e] : entries_) {
      for (Ready& r : e.waiting) to_fail.push_back(std::move(r));
      e.waiting.clear();
    }
  }
  for (Ready& r : to_fail) r(ConnHandle(), Status::invalid("peer pool destroyed"));
}

void PeerPool::get(std::string_view address, Ready ready) {
  std::string key(address);
  ConnHandle reuse;
  Dial* start = nullptr;
  {
    std::lock_guard lock(mu_);
    ++stats_.gets;
    Entry& e = entries_[key];
    if (e.live.size() + e.dialing.size() < options_.max_per_address) {
      e.dialing.push_back(std::make_unique<Dial>(Dial{this, key}));
      start = e.dialing.back().get();
      ++stats_.dials;
      ++stats_.dialing;
    }
    if (!e.live.empty()) {
      reuse = e.live[e.next++ % e.live.size()].second;  // served now; a new dial only grows the set
      ++stats_.reused;
    } else {
      e.waiting.push_back(std::move(ready));  // the first dial to connect serves it
      ++stats_.waiting;
    }
  }
  if (start != nullptr) {
    Status s = engine_.dial(key, {.timeout = options_.dial_timeout, .context = start});
    if (!s) {
      std::vector<Ready> to_fail;
      {
        std::lock_guard lock(mu_);
        auto it = entries_.find(key);
        if (it != entries_.end()) fail_dial(it, start, &to_fail);
      }
      for (Ready& r : to_fail) r(ConnHandle(), s);
    }
  }
  if (reuse.valid()) ready(reuse, Status::ok());
}

// Under mu_. Removes the dial; when the address has no connection live or dialing any
// more, every waiter is moved to `to_fail` and the entry goes (nothing stale is left).
void PeerPool::fail_dial(std::unordered_map<std::string, Entry>::iterator it, Dial* d,
                         std::vector<Ready>* to_fail) {
  Entry& e = it->second;
  e.dialing.remove_if([d](const std::unique_ptr<Dial>& p) { return p.get() == d; });
  --stats_.dialing;
  ++stats_.dial_failures;
  if (!e.live.empty() || !e.dialing.empty()) return;  // others may still serve them
  stats_.waiting -= e.waiting.size();
  for (Ready& r : e.waiting) to_fail->push_back(std::move(r));
  entries_.erase(it);
}

// Under mu_: the entry dialing `d`, or end().
std::unordered_map<std::string, PeerPool::Entry>::iterator PeerPool::dialing_entry(Dial* d) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    for (const auto& p : it->second.dialing) {
      if (p.get() == d) return it;
    }
  }
  return entries_.end();
}

bool PeerPool::on_open(Conn& c) {
  if (!c.dialed() || c.context() == nullptr) return false;
  std::vector<Ready> waiters;
  ConnHandle handle = c.handle();
  {
    std::lock_guard lock(mu_);
    Dial* d = static_cast<Dial*>(c.context());
    auto it = dialing_entry(d);  // the context is ours only if we are dialing it
    if (it == entries_.end()) return false;
    Entry& e = it->second;
    by_conn_[key_of(c)] = Live{it->first, handle};
    e.dialing.remove_if([d](const std::unique_ptr<Dial>& p) { return p.get() == d; });
    --stats_.dialing;
    e.live.emplace_back(key_of(c), handle);
    ++stats_.live;
    waiters.swap(e.waiting);
    stats_.waiting -= waiters.size();
  }
  c.set_context(nullptr);  // the application's slot again
  for (Ready& r : waiters) r(handle, Status::ok());
  return true;
}

void PeerPool::on_close(Conn& c, CloseInfo info) {
  if (!c.dialed()) return;
  std::vector<Ready> to_fail;
  Status why;
  {
    std::lock_guard lock(mu_);
    if (info.reason == CloseReason::kConnectFailed && c.context() != nullptr) {
      Dial* d = static_cast<Dial*>(c.context());
      auto it = dialing_entry(d);
      if (it == entries_.end()) return;  // not one of ours
      why = Status::from_errno(info.error != 0 ? info.error : ECONNABORTED, "dial " + it->first);
      fail_dial(it, d, &to_fail);
    } else {
      auto it = by_conn_.find(key_of(c));
      if (it == by_conn_.end()) return;
      auto e = entries_.find(it->second.address);
      if (e != entries_.end()) {
        auto& live = e->second.live;
        live.erase(std::remove_if(live.begin(), live.end(),
                                  [&](const auto& l) { return l.first == key_of(c); }),
                   live.end());
        if (live.empty() && e->second.dialing.empty() && e->second.waiting.empty()) {
          entries_.erase(e);  // no stale entry is left for a later get()
        }
      }
      by_conn_.erase(it);
      --stats_.live;
      ++stats_.evicted;
    }
  }
  for (Ready& r : to_fail) r(ConnHandle(), why);
}

PeerPoolStats PeerPool::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t PeerPool::live(std::string_view address) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(std::string(address));
  return it == entries_.end() ? 0 : it->second.live.size();
}

}  // namespace ringnet::proto
