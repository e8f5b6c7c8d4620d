// SPDX-License-Identifier: MIT
#include "ringnet/proto/source_registry.h"

#include <algorithm>
#include <functional>

namespace ringnet::proto {

const SourceRegistry::Shard& SourceRegistry::shard(std::string_view ip) const {
  return shards_[std::hash<std::string_view>{}(ip) % shards_.size()];
}

void SourceRegistry::on_open(Conn& c) {
  if (c.dialed() || !c.remote_addr().is_ip()) return;
  std::string ip = c.remote_addr().ip_string();
  Shard& s = shard(ip);
  std::lock_guard lock(s.mu);
  s.by_ip[ip].push_back(Entry{c.remote_addr().port(), c.loop_index(), c.handle()});
}

void SourceRegistry::on_close(Conn& c) {
  if (c.dialed() || !c.remote_addr().is_ip()) return;
  std::string ip = c.remote_addr().ip_string();
  Shard& s = shard(ip);
  std::lock_guard lock(s.mu);
  auto it = s.by_ip.find(ip);
  if (it == s.by_ip.end()) return;
  auto& v = it->second;
  const int loop = c.loop_index();
  v.erase(std::remove_if(v.begin(), v.end(),
                         [&](const Entry& e) { return e.loop == loop && e.handle.id() == c.id(); }),
          v.end());
  if (v.empty()) s.by_ip.erase(it);  // a source that left holds no memory
}

std::vector<ConnHandle> SourceRegistry::connections_of(std::string_view ip) const {
  const Shard& s = shard(ip);
  std::lock_guard lock(s.mu);
  std::vector<ConnHandle> out;
  auto it = s.by_ip.find(std::string(ip));
  if (it != s.by_ip.end()) {
    for (const Entry& e : it->second) out.push_back(e.handle);
  }
  return out;
}

std::optional<ConnHandle> SourceRegistry::connection_at(std::string_view ip, uint16_t port) const {
  const Shard& s = shard(ip);
  std::lock_guard lock(s.mu);
  auto it = s.by_ip.find(std::string(ip));
  if (it == s.by_ip.end()) return std::nullopt;
  for (const Entry& e : it->second) {
    if (e.port == port) return e.handle;
  }
  return std::nullopt;
}

size_t SourceRegistry::count(std::string_view ip) const {
  const Shard& s = shard(ip);
  std::lock_guard lock(s.mu);
  auto it = s.by_ip.find(std::string(ip));
  return it == s.by_ip.end() ? 0 : it->second.size();
}

size_t SourceRegistry::broadcast(std::string_view ip, std::string_view bytes,
                                 const WriteCallback& done) const {
  std::vector<ConnHandle> targets = connections_of(ip);  // written outside the lock
  for (const ConnHandle& h : targets) h.async_write(bytes, done);
  return targets.size();
}

size_t SourceRegistry::sources() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.by_ip.size();
  }
  return n;
}

}  // namespace ringnet::proto
