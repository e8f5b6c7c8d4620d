// SPDX-License-Identifier: MIT
// SourceLimiter: open connections per source IP, for Options::max_connections_per_source.
// Taken where a socket is accepted (the acceptor thread, or a reuse_port loop) and given
// back where it closes (its loop), so it is shared: 16 shards, each a mutex and a map,
// touched once per accept and once per close, never per message.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "ringnet/address.h"

namespace ringnet {

class SourceLimiter {
 public:
  explicit SourceLimiter(uint32_t cap) : cap_(cap) {}
  // Counts `peer` in and returns true, or returns false when its IP already holds `cap`.
  bool try_add(const SockAddr& peer);
  void remove(const SockAddr& peer);

 private:
  struct Key {
    std::array<unsigned char, 16> ip{};  // IPv4 in the first 4 bytes
    bool v6 = false;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<Key, uint32_t, KeyHash> counts;
  };
  static Key key_of(const SockAddr& peer);

  uint32_t cap_;
  std::array<Shard, 16> shards_;
};

}  // namespace ringnet
