// SPDX-License-Identifier: MIT
#include "net/source_limiter.h"

#include <netinet/in.h>

#include <cstring>

namespace ringnet {

SourceLimiter::Key SourceLimiter::key_of(const SockAddr& peer) {
  Key k;
  if (peer.family() == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(peer.raw());
    std::memcpy(k.ip.data(), &a->sin_addr, 4);
  } else if (peer.family() == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(peer.raw());
    std::memcpy(k.ip.data(), &a->sin6_addr, 16);
    k.v6 = true;
  }
  return k;
}

size_t SourceLimiter::KeyHash::operator()(const Key& k) const {
  uint64_t h = k.v6 ? 0x9e3779b97f4a7c15ull : 1469598103934665603ull;
  for (unsigned char b : k.ip) h = (h ^ b) * 1099511628211ull;  // FNV-1a
  return static_cast<size_t>(h);
}

bool SourceLimiter::try_add(const SockAddr& peer) {
  Key k = key_of(peer);
  Shard& s = shards_[KeyHash{}(k) % shards_.size()];
  std::lock_guard lock(s.mu);
  uint32_t& n = s.counts[k];
  if (n >= cap_) return false;
  ++n;
  return true;
}

void SourceLimiter::remove(const SockAddr& peer) {
  Key k = key_of(peer);
  Shard& s = shards_[KeyHash{}(k) % shards_.size()];
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(k);
  if (it == s.counts.end()) return;
  if (--it->second == 0) s.counts.erase(it);  // a source that left holds no memory
}

}  // namespace ringnet
