// SPDX-License-Identifier: MIT
// The key-value store behind resp_server: binary-safe string keys and values, with expiry.
//
// Why one store shared by every loop, split into locked shards: a connection lives on one
// loop, and the replies to its pipelined commands must go out in the order the commands
// came, so each command runs to completion right there, synchronously, on the
// connection's loop; handing it to an owner thread would need a reorder step and a
// cross-thread hop per command. With one loop per core, few threads ever want the same
// shard at once, so 64 shards, each an unordered_map behind its own mutex, keep contention
// low. Lookups take std::string_view (transparent hashing), so GET allocates nothing.
//
// Multi-key commands (DEL, EXISTS, MGET, MSET) lock one shard at a time: each key is
// read or written atomically, the command as a whole is not (another client may see half
// of an MSET). Good enough for this sample; redis itself runs commands one at a time.
//
// Expiry: lazy, on access (an expired key reads as missing and is erased then), plus a
// bounded active sweep driven from on_tick that walks a few hash buckets per shard and
// erases what expired there. Expired keys that neither path has reached yet are still
// counted by size() (DBSIZE), as redis counts them until its own active cycle runs.
// Times are steady-clock milliseconds: TTLs do not jump when the wall clock does.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace sample {

inline int64_t monotonic_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Hashes std::string and std::string_view alike, so lookups by view need no copy.
struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view key) const noexcept {
    return std::hash<std::string_view>{}(key);
  }
};

class Keyspace {
 public:
  static constexpr size_t kShards = 64;
  static constexpr int64_t kNoExpiry = 0;

  struct Entry {
    std::string value;
    int64_t expires_at_ms = kNoExpiry;  // monotonic_ms() deadline; kNoExpiry = never
  };

  // One shard; reached only through Keyspace::with_shard, which holds its lock.
  class Shard {
   public:
    // The live entry for key, or null. An expired entry is erased on the way.
    Entry* find(std::string_view key) {
      auto it = map_.find(key);
      if (it == map_.end()) return nullptr;
      if (expired(it->second)) {
        erase_at(it);
        return nullptr;
      }
      return &it->second;
    }
    // The live entry for key, creating an empty one (no expiry) if there is none.
    // `created` tells which.
    Entry& find_or_create(std::string_view key, bool* created) {
      if (Entry* e = find(key)) {
        *created = false;
        return *e;
      }
      *created = true;
      return map_.try_emplace(std::string(key)).first->second;
    }
    // Removes a live key; false when there was none.
    bool erase(std::string_view key) {
      auto it = map_.find(key);
      if (it == map_.end()) return false;
      bool live = !expired(it->second);
      erase_at(it);
      return live;
    }
    // Sets or clears (kNoExpiry) the deadline, keeping the count of volatile keys.
    void set_expiry(Entry& e, int64_t at_ms) {
      volatile_keys_ += (at_ms != kNoExpiry) - (e.expires_at_ms != kNoExpiry);
      e.expires_at_ms = at_ms;
    }

   private:
    friend class Keyspace;
    using Map = std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>>;

    static bool expired(const Entry& e) {
      return e.expires_at_ms != kNoExpiry && e.expires_at_ms <= monotonic_ms();
    }
    void erase_at(Map::iterator it) {
      if (it->second.expires_at_ms != kNoExpiry) --volatile_keys_;
      map_.erase(it);
    }
    size_t sweep(size_t budget);

    std::mutex mu_;
    Map map_;
    size_t volatile_keys_ = 0;  // entries with a deadline, so the sweep can skip a shard
    size_t sweep_bucket_ = 0;   // where the next sweep of this shard resumes
  };

  // Runs f(Shard&) with the shard that owns `key` locked; returns what f returns.
  template <typename F>
  decltype(auto) with_shard(std::string_view key, F&& f) {
    Shard& s = *shards_[shard_index(key)];
    std::lock_guard lock(s.mu_);
    return f(s);
  }

  // Keys held, expired-but-not-yet-erased ones included (see the file comment).
  size_t size() {
    size_t n = 0;
    for_each_shard([&](Shard& s) { n += s.map_.size(); });
    return n;
  }
  size_t volatile_size() {
    size_t n = 0;
    for_each_shard([&](Shard& s) { n += s.volatile_keys_; });
    return n;
  }
  void clear() {
    for_each_shard([](Shard& s) {
      s.map_.clear();
      s.volatile_keys_ = 0;
    });
  }
  // Active expiry: examines up to `budget` entries per shard that has volatile keys,
  // resuming where the last sweep of that shard stopped. Returns how many it erased.
  size_t sweep_expired(size_t budget) {
    size_t erased = 0;
    for_each_shard([&](Shard& s) { erased += s.sweep(budget); });
    return erased;
  }

 private:
  static size_t shard_index(std::string_view key) {
    // The map hashes the key too; take the shard from different bits (a multiplicative
    // mix, top bits) so the keys of one shard still spread over its buckets.
    uint64_t h = std::hash<std::string_view>{}(key) * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(h >> 58);  // 64 shards
  }
  static_assert(kShards == 64, "shard_index takes the top 6 bits");

  template <typename F>
  void for_each_shard(F&& f) {
    for (auto& s : shards_) {
      std::lock_guard lock(s->mu_);
      f(*s);
    }
  }

  static std::array<std::unique_ptr<Shard>, kShards> make_shards() {
    std::array<std::unique_ptr<Shard>, kShards> out;
    for (auto& s : out) s = std::make_unique<Shard>();
    return out;
  }

  // Separate allocations keep each shard's mutex off its neighbours' cache lines.
  std::array<std::unique_ptr<Shard>, kShards> shards_ = make_shards();
};

inline size_t Keyspace::Shard::sweep(size_t budget) {
  if (volatile_keys_ == 0 || map_.empty()) return 0;
  const size_t buckets = map_.bucket_count();
  const int64_t now = monotonic_ms();
  // Remember the expired keys and erase after the walk: erasing invalidates the bucket
  // iterators. Keys are node-stable, so the pointers stay valid until their own erase.
  std::array<const std::string*, 64> doomed;
  size_t n_doomed = 0;
  size_t seen = 0;
  size_t b = sweep_bucket_ % buckets;
  // Empty buckets cost little but are bounded too (a cleared map keeps its buckets).
  for (size_t visited = 0; visited < buckets && visited < 4 * budget && seen < budget;
       ++visited, b = (b + 1) % buckets) {
    if (n_doomed == doomed.size()) break;
    for (auto it = map_.begin(b); it != map_.end(b) && n_doomed < doomed.size(); ++it) {
      ++seen;
      const Entry& e = it->second;
      if (e.expires_at_ms != kNoExpiry && e.expires_at_ms <= now) doomed[n_doomed++] = &it->first;
    }
  }
  sweep_bucket_ = b;
  for (size_t i = 0; i < n_doomed; ++i) erase_at(map_.find(std::string_view(*doomed[i])));
  return n_doomed;
}

}  // namespace sample
