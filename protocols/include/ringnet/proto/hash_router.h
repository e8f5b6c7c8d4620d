// SPDX-License-Identifier: MIT
/// @file
/// HashRouter: picks a node (a peer address) for a routing key, so that one key keeps
/// landing on the same node while the set of nodes changes little:
///
///   ringnet::proto::HashRouter router({.load_epsilon = 0.25});
///   router.add("tcp://10.0.0.7:9000");
///   router.add("tcp://10.0.0.8:9000", 2);       // twice the share of keys
///   std::string node = router.pick("user:42");   // "" when there is no node
///
/// Schemes (HashRouterOptions::scheme), both over XXH3 (Debian libxxhash):
///   kRing        consistent hashing: each node owns `vnodes` × weight points on a 64-bit
///                ring; a key belongs to the first point clockwise of its hash. Lookup is a
///                binary search (O(log points)). Adding or removing one of N nodes moves
///                about 1/N of the keys.
///   kRendezvous  highest random weight: the node with the highest score for the key
///                (weighted: -w / ln(u)). Lookup is O(N), no memory per key share; spread
///                is as even as the hash.
///
/// Health. report(node, ok) after every call (RoutedRpcClient does, and its probes): a node
/// that fails `eject_after` times in a row is ejected, its keys go to their next choice;
/// `readmit_after` successes in a row (probes) bring it back, and its keys with it. When
/// every node is ejected, keys are routed as if none were (a last resort beats no answer).
///
/// Bounded load (load_epsilon > 0). acquire() counts the key's call as in flight on its node
/// until release(); a node whose in-flight count reached its cap, ceil((1 + ε) · (in flight
/// + 1) · its weight / total weight), is passed over and the key spills to its next choice,
/// so a hot key cannot sink one node. pick() and preference() ignore load.
///
/// Threads: every member from any thread. Lookups and report() share a reader lock;
/// add/remove/set_nodes take it exclusively; acquire() with load_epsilon also serialises on
/// a mutex of its own; release() is atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ringnet/config.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// How HashRouter maps keys to nodes (see the file comment).
enum class HashScheme : uint8_t {
  kRing,        ///< consistent-hash ring with virtual nodes
  kRendezvous,  ///< highest random weight
};

/// Options of HashRouter.
struct HashRouterOptions {
  HashScheme scheme = HashScheme::kRing;  ///< how keys map to nodes
  uint32_t vnodes = 512;       ///< ring points per unit of weight (kRing)
  double load_epsilon = 0;     ///< bounded load: 0 = off; else the cap's ε (see above)
  uint32_t eject_after = 3;    ///< consecutive failures that eject a node (0 = never)
  uint32_t readmit_after = 2;  ///< consecutive successes that bring it back
};

/// One node as HashRouter::nodes() reports it. Threads: a plain value.
struct HashRouterNode {
  std::string address{};  ///< as added
  uint32_t weight = 1;    ///< its share of keys, relative to the others
  bool ejected = false;   ///< out of rotation for failures
  uint64_t in_flight = 0;  ///< acquired and not yet released
  uint64_t picks = 0;      ///< acquire() calls that chose it
};

/// Counters of one HashRouter. Threads: a plain value.
struct HashRouterStats {
  uint64_t spills = 0;        ///< acquire() that passed over a node at its cap
  uint64_t ejections = 0;     ///< nodes ejected by reported failures
  uint64_t readmissions = 0;  ///< ejected nodes brought back by reported successes
  uint64_t last_resort = 0;   ///< lookups that found every node ejected
  uint64_t nodes = 0;         ///< gauge: nodes known
  uint64_t live = 0;          ///< gauge: nodes not ejected
};

/// Consistent routing of keys to weighted nodes, with health and bounded load (see the file
/// comment). Threads: any; see the file comment for the locks.
class RINGNET_PROTO_EXPORT HashRouter {
  struct RINGNET_HIDDEN Node;

 public:
  /// A call counted in flight on a node by acquire(); give it back with release(). Empty
  /// (no node) when the router had none. Movable; release it exactly once.
  class Lease {
   public:
    Lease() = default;
    /// Moves the count along (the moved-from lease is empty).
    Lease(Lease&&) noexcept = default;
    /// Moves the count along; this lease must be empty (released or never acquired).
    Lease& operator=(Lease&&) noexcept = default;
    Lease(const Lease&) = delete;             // one count, one release
    Lease& operator=(const Lease&) = delete;
    /// The node's address ("" for an empty lease).
    const std::string& address() const;
    /// True when it holds a node.
    explicit operator bool() const { return node_ != nullptr; }

   private:
    friend class HashRouter;
    std::shared_ptr<Node> node_;  // keeps the count valid if the node is removed meanwhile
  };

  /// A router with no nodes yet.
  explicit HashRouter(HashRouterOptions options = {});
  ~HashRouter();
  HashRouter(const HashRouter&) = delete;
  HashRouter& operator=(const HashRouter&) = delete;

  /// The largest weight add() takes (a node has vnodes × weight points on the ring).
  static constexpr uint32_t kMaxWeight = 1000;
  /// Adds a node; refused (invalid) for an empty address, a weight outside 1..kMaxWeight or
  /// a node already there.
  Status add(std::string_view address, uint32_t weight = 1);
  /// Removes a node; false when unknown. Its leases stay valid.
  bool remove(std::string_view address);
  /// Makes the nodes exactly `addresses` (weight 1 for new ones): those already known keep
  /// their weight, health and counts. Returns how many were added and removed.
  std::pair<size_t, size_t> set_nodes(const std::vector<std::string>& addresses);
  /// The same with weights (0: keep a known node's weight, 1 for a new one; capped at
  /// kMaxWeight): a known node whose weight changes keeps its health and counts, and its
  /// share of keys follows the new weight.
  std::pair<size_t, size_t> set_nodes(const std::vector<std::pair<std::string, uint32_t>>& nodes);

  /// The node for `key` ("" when there is none), ignoring load.
  std::string pick(std::string_view key) const;
  /// Up to `n` distinct nodes for `key`, best first: where its call goes next when the
  /// first fails. Live nodes first, then ejected ones.
  std::vector<std::string> preference(std::string_view key, size_t n) const;

  /// pick(), counting the call in flight (and, with load_epsilon, passing over nodes at their
  /// cap). `avoid`: a node to skip if any other is live (a retry elsewhere).
  Lease acquire(std::string_view key, std::string_view avoid = {});
  /// Ends a lease from acquire(); a no-op for an empty or already released lease.
  void release(Lease& lease);

  /// The outcome of a call to (or a probe of) `address`: ejects or readmits it (see the file
  /// comment). Unknown addresses are ignored.
  void report(std::string_view address, bool ok);
  /// True when `address` is known and ejected.
  bool ejected(std::string_view address) const;

  /// Every node, sorted by address.
  std::vector<HashRouterNode> nodes() const;
  /// A snapshot of the counters and gauges.
  HashRouterStats stats() const;
  /// The options it was made with.
  const HashRouterOptions& options() const { return options_; }

  /// The 64-bit hash the router uses for keys (XXH3), for tests and benchmarks.
  static uint64_t hash(std::string_view key);

 private:
  struct Point {
    uint64_t hash;
    uint32_t node;  // index into nodes_
  };
  // A live (not ejected) node for `key` in preference order, calling `take` until it says
  // yes; the shared lock is held. Returns the node index or -1.
  template <typename Take>
  int64_t walk(uint64_t key_hash, Take&& take) const;
  void rebuild();  // ring_ from nodes_ (exclusive lock held)
  std::shared_ptr<Node> find(std::string_view address) const;  // shared lock held

  HashRouterOptions options_;
  mutable std::shared_mutex mu_;  // nodes_, ring_, by_address_
  std::vector<std::shared_ptr<Node>> nodes_;
  std::vector<Point> ring_;  // sorted by hash (kRing only)
  std::unordered_map<std::string_view, uint32_t> by_address_;  // views into nodes_
  std::mutex load_mu_;  // makes acquire's cap check and count one step (with load_epsilon)
  std::atomic<uint64_t> total_in_flight_{0};
  std::atomic<uint64_t> live_weight_{0};  // of the nodes not ejected (rebuild, report)
  std::atomic<uint64_t> spills_{0}, ejections_{0}, readmissions_{0};
  mutable std::atomic<uint64_t> last_resort_{0};
};

}  // namespace ringnet::proto
