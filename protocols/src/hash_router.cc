// SPDX-License-Identifier: MIT
// HashRouter: consistent-hash ring or rendezvous over XXH3, with health and bounded load.
#include "ringnet/proto/hash_router.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <mutex>

namespace ringnet::proto {

struct HashRouter::Node {
  std::string address;
  uint32_t weight = 1;
  uint64_t seed = 0;  // hash of the address: the node's rendezvous seed
  std::atomic<bool> ejected{false};
  std::atomic<uint32_t> fails{0}, oks{0};  // consecutive, as reported
  std::atomic<uint64_t> in_flight{0}, picks{0};
};

namespace {

// Rendezvous score of a node for a key: XXH3 of the key's hash seeded by the node's, read
// as u in (0, 1); weighted as -w / ln(u) so a node's share is proportional to its weight.
double rendezvous_score(uint64_t key_hash, uint64_t seed, uint32_t weight, bool uniform) {
  uint64_t h = XXH3_64bits_withSeed(&key_hash, sizeof key_hash, seed);
  if (uniform) return static_cast<double>(h >> 11);  // same order, no log
  double u = (static_cast<double>(h >> 12) + 0.5) * 0x1.0p-52;  // exactly inside (0, 1)
  return -static_cast<double>(weight) / std::log(u);
}

}  // namespace

const std::string& HashRouter::Lease::address() const {
  static const std::string empty;
  return node_ ? node_->address : empty;
}

HashRouter::HashRouter(HashRouterOptions options) : options_(options) {
  if (options_.vnodes == 0) options_.vnodes = 1;
  if (options_.readmit_after == 0) options_.readmit_after = 1;
}

HashRouter::~HashRouter() = default;

uint64_t HashRouter::hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

Status HashRouter::add(std::string_view address, uint32_t weight) {
  if (address.empty() || weight == 0 || weight > kMaxWeight)
    return Status::invalid("hash_router: empty address, or weight not in 1..1000");
  std::unique_lock lk(mu_);
  if (by_address_.count(address) != 0) return Status::invalid("hash_router: node already added");
  auto node = std::make_shared<Node>();
  node->address = std::string(address);
  node->weight = weight;
  node->seed = hash(address);
  nodes_.push_back(std::move(node));
  rebuild();
  return Status::ok();
}

bool HashRouter::remove(std::string_view address) {
  std::unique_lock lk(mu_);
  auto it = by_address_.find(address);
  if (it == by_address_.end()) return false;
  nodes_.erase(nodes_.begin() + it->second);
  rebuild();
  return true;
}

std::pair<size_t, size_t> HashRouter::set_nodes(const std::vector<std::string>& addresses) {
  std::vector<std::pair<std::string, uint32_t>> nodes;
  nodes.reserve(addresses.size());
  for (const std::string& a : addresses) nodes.emplace_back(a, 0);  // 0: keep, or 1 if new
  return set_nodes(nodes);
}

std::pair<size_t, size_t> HashRouter::set_nodes(
    const std::vector<std::pair<std::string, uint32_t>>& nodes) {
  std::unique_lock lk(mu_);
  std::unordered_map<std::string_view, std::pair<uint32_t, bool>> wanted;  // weight, seen
  for (const auto& [a, w] : nodes)
    if (!a.empty()) wanted.emplace(a, std::pair{std::min(w, kMaxWeight), false});
  size_t before = nodes_.size();
  bool reweighted = false;
  std::erase_if(nodes_, [&](const std::shared_ptr<Node>& n) {
    auto it = wanted.find(n->address);
    if (it == wanted.end()) return true;
    it->second.second = true;  // already known: keeps its health and counts
    if (uint32_t w = it->second.first; w != 0 && w != n->weight) {
      n->weight = w;
      reweighted = true;
    }
    return false;
  });
  size_t removed = before - nodes_.size(), added = 0;
  for (const auto& [a, w] : nodes) {
    auto it = wanted.find(a);
    if (it == wanted.end() || it->second.second) continue;
    it->second.second = true;
    auto node = std::make_shared<Node>();
    node->address = a;
    node->weight = std::max<uint32_t>(it->second.first, 1);
    node->seed = hash(a);
    nodes_.push_back(std::move(node));
    ++added;
  }
  if (added + removed != 0 || reweighted) rebuild();
  return {added, removed};
}

void HashRouter::rebuild() {
  // Order nodes by address so indices (and ring ties) do not depend on insertion order:
  // every replica that knows the same nodes routes the same way.
  std::sort(nodes_.begin(), nodes_.end(),
            [](const auto& a, const auto& b) { return a->address < b->address; });
  by_address_.clear();
  uint64_t live_weight = 0;
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    by_address_.emplace(nodes_[i]->address, i);
    if (!nodes_[i]->ejected) live_weight += nodes_[i]->weight;
  }
  live_weight_ = live_weight;
  ring_.clear();
  if (options_.scheme != HashScheme::kRing) return;
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = *nodes_[i];
    uint64_t points = uint64_t{options_.vnodes} * n.weight;
    for (uint64_t v = 0; v < points; ++v)
      ring_.push_back({XXH3_64bits_withSeed(n.address.data(), n.address.size(), v), i});
  }
  std::sort(ring_.begin(), ring_.end(), [](const Point& a, const Point& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.node < b.node;
  });
}

std::shared_ptr<HashRouter::Node> HashRouter::find(std::string_view address) const {
  auto it = by_address_.find(address);
  return it == by_address_.end() ? nullptr : nodes_[it->second];
}

template <typename Take>
int64_t HashRouter::walk(uint64_t key_hash, Take&& take) const {
  if (nodes_.empty()) return -1;
  if (options_.scheme == HashScheme::kRing) {
    auto start = std::lower_bound(ring_.begin(), ring_.end(), key_hash,
                                  [](const Point& p, uint64_t h) { return p.hash < h; });
    size_t pos = static_cast<size_t>(start - ring_.begin());
    for (size_t i = 0; i < ring_.size(); ++i) {
      const Point& p = ring_[(pos + i) % ring_.size()];
      if (take(p.node)) return p.node;
    }
    return -1;
  }
  bool uniform = std::all_of(nodes_.begin(), nodes_.end(),
                             [&](const auto& n) { return n->weight == nodes_[0]->weight; });
  int64_t best = -1;
  double best_score = -1;
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = *nodes_[i];
    double s = rendezvous_score(key_hash, n.seed, n.weight, uniform);
    if (s > best_score && take(i)) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

std::string HashRouter::pick(std::string_view key) const {
  std::shared_lock lk(mu_);
  bool any_live = std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return !n->ejected; });
  if (!any_live && !nodes_.empty()) last_resort_.fetch_add(1, std::memory_order_relaxed);
  uint64_t h = hash(key);
  int64_t i = walk(h, [&](uint32_t n) { return !any_live || !nodes_[n]->ejected; });
  if (i < 0) i = walk(h, [](uint32_t) { return true; });  // the last live node just left
  return i < 0 ? std::string() : nodes_[static_cast<size_t>(i)]->address;
}

std::vector<std::string> HashRouter::preference(std::string_view key, size_t n) const {
  std::shared_lock lk(mu_);
  std::vector<std::string> out;
  std::vector<bool> taken(nodes_.size());
  uint64_t h = hash(key);
  for (bool live : {true, false}) {
    while (out.size() < n) {
      int64_t i = walk(h, [&](uint32_t k) { return !taken[k] && nodes_[k]->ejected != live; });
      if (i < 0) break;
      taken[static_cast<size_t>(i)] = true;
      out.push_back(nodes_[static_cast<size_t>(i)]->address);
    }
  }
  return out;
}

HashRouter::Lease HashRouter::acquire(std::string_view key, std::string_view avoid) {
  std::shared_lock lk(mu_);
  Lease lease;
  if (nodes_.empty()) return lease;
  bool any_live = std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return !n->ejected; });
  if (!any_live) last_resort_.fetch_add(1, std::memory_order_relaxed);
  int64_t skip = -1;
  if (auto it = by_address_.find(avoid); !avoid.empty() && it != by_address_.end()) skip = it->second;
  uint64_t h = hash(key);
  auto usable = [&](uint32_t k) {
    return static_cast<int64_t>(k) != skip && (!any_live || !nodes_[k]->ejected);
  };
  int64_t first = walk(h, usable);
  if (first < 0) {  // `avoid` was the only usable node, or the last live one just left
    skip = -1;
    any_live = false;
    first = walk(h, usable);
  }
  int64_t i = first;
  std::unique_lock<std::mutex> load_lk;
  if (options_.load_epsilon > 0 && first >= 0) {
    load_lk = std::unique_lock(load_mu_);  // the cap check and the count as one step
    // The usable nodes' weight: kept up to date by rebuild() and report(), so O(1).
    uint64_t weight = any_live ? live_weight_.load() : 0;
    if (!any_live)
      for (const auto& n : nodes_) weight += n->weight;
    if (skip >= 0) {
      const Node& avoided = *nodes_[static_cast<size_t>(skip)];
      if (!any_live || !avoided.ejected) weight -= std::min<uint64_t>(weight, avoided.weight);
    }
    weight = std::max<uint64_t>(weight, 1);  // a report() racing with us
    double per_weight = (1 + options_.load_epsilon) *
                        static_cast<double>(total_in_flight_.load() + 1) /
                        static_cast<double>(weight);
    // Some usable node is under its cap (the usable nodes' caps sum to more than the calls
    // in flight), unless calls on nodes now unusable hold the total up: then the least
    // loaded for its weight.
    i = walk(h, [&](uint32_t k) {
      const Node& n = *nodes_[k];
      return usable(k) && static_cast<double>(n.in_flight.load()) <
                              std::ceil(per_weight * static_cast<double>(n.weight));
    });
    if (i < 0) {
      double best = 0;
      for (uint32_t k = 0; k < nodes_.size(); ++k) {
        if (!usable(k)) continue;
        double load = static_cast<double>(nodes_[k]->in_flight.load()) / nodes_[k]->weight;
        if (i < 0 || load < best) i = k, best = load;
      }
    }
    if (i != first) spills_.fetch_add(1, std::memory_order_relaxed);
  }
  if (i < 0) return lease;
  lease.node_ = nodes_[static_cast<size_t>(i)];
  lease.node_->in_flight.fetch_add(1);
  lease.node_->picks.fetch_add(1, std::memory_order_relaxed);
  total_in_flight_.fetch_add(1);
  return lease;
}

void HashRouter::release(Lease& lease) {
  if (!lease.node_) return;
  lease.node_->in_flight.fetch_sub(1);
  total_in_flight_.fetch_sub(1);
  lease.node_.reset();
}

void HashRouter::report(std::string_view address, bool ok) {
  std::shared_lock lk(mu_);
  std::shared_ptr<Node> n = find(address);
  if (!n) return;
  if (ok) {
    n->fails.store(0, std::memory_order_relaxed);
    if (!n->ejected.load()) return;
    if (n->oks.fetch_add(1) + 1 < options_.readmit_after) return;
    bool was = true;
    if (n->ejected.compare_exchange_strong(was, false)) {
      live_weight_.fetch_add(n->weight);
      n->oks.store(0);
      readmissions_.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  n->oks.store(0, std::memory_order_relaxed);
  if (options_.eject_after == 0 || n->ejected.load()) return;
  if (n->fails.fetch_add(1) + 1 < options_.eject_after) return;
  bool was = false;
  if (n->ejected.compare_exchange_strong(was, true)) {
    live_weight_.fetch_sub(n->weight);
    n->fails.store(0);
    ejections_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool HashRouter::ejected(std::string_view address) const {
  std::shared_lock lk(mu_);
  std::shared_ptr<Node> n = find(address);
  return n && n->ejected.load();
}

std::vector<HashRouterNode> HashRouter::nodes() const {
  std::shared_lock lk(mu_);
  std::vector<HashRouterNode> out;
  out.reserve(nodes_.size());
  for (const auto& n : nodes_)
    out.push_back({n->address, n->weight, n->ejected.load(), n->in_flight.load(), n->picks.load()});
  return out;  // nodes_ is kept sorted by address
}

HashRouterStats HashRouter::stats() const {
  std::shared_lock lk(mu_);
  HashRouterStats s;
  s.spills = spills_.load();
  s.ejections = ejections_.load();
  s.readmissions = readmissions_.load();
  s.last_resort = last_resort_.load();
  s.nodes = nodes_.size();
  s.live = static_cast<uint64_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const auto& n) { return !n->ejected; }));
  return s;
}

}  // namespace ringnet::proto
