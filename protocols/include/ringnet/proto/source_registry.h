// SPDX-License-Identifier: MIT
/// @file
/// SourceRegistry: the server side of the connection map keyed by peer address. It finds
/// every live connection of a source IP (or one ip:port) and pushes bytes to them, from any
/// thread — e.g. to notify, throttle or drop one client's connections:
///
///   ringnet::proto::SourceRegistry sources;
///   // handler (loop thread):
///   Action on_open(Conn& c) override { sources.on_open(c); ... }
///   void on_close(Conn& c, CloseInfo) override { sources.on_close(c); ... }
///   // anywhere:
///   sources.broadcast("10.1.2.3", "server going away\n");
///   for (const ringnet::ConnHandle& h : sources.connections_of("10.1.2.3")) h.close();
///
/// Capping connections per source is the engine's job (Options::max_connections_per_source
/// refuses the excess at accept, before any handler runs); this is the lookup side.
///
/// Threads: 16 shards by source IP, each a mutex and a map, taken once per open and close
/// and by lookups, never per message. Unix-socket peers have no source IP and are not kept.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ringnet/address.h"
#include "ringnet/config.h"
#include "ringnet/conn.h"

namespace ringnet::proto {

/// The live inbound connections of each source IP, for lookups and broadcasts (see the file
/// comment).
/// Threads: on_open/on_close on loop threads from the handler's callbacks; lookups and broadcast
/// from any thread (16 mutex-guarded shards by source IP).
class RINGNET_PROTO_EXPORT SourceRegistry {
 public:
  /// Loop thread, from the handler's callbacks. Dialed (outbound) connections are skipped.
  void on_open(Conn& c);
  /// Loop thread: forgets `c` (no-op for dialed and Unix-socket connections).
  void on_close(Conn& c);

  /// Any thread. `ip` as SockAddr::ip_string() gives it ("127.0.0.1", "::1").
  std::vector<ConnHandle> connections_of(std::string_view ip) const;
  /// Any thread. The live connection from `ip`:`port`, or nullopt.
  std::optional<ConnHandle> connection_at(std::string_view ip, uint16_t port) const;
  /// Any thread. Number of live connections from `ip` (0 when none).
  size_t count(std::string_view ip) const;
  /// async_write of `bytes` to every live connection of `ip`; returns how many were asked.
  /// `done` (optional) hears each one's outcome on its loop thread: ok, refused (EAGAIN)
  /// while that connection's output is over the high watermark (a client that does not
  /// read is not buffered without bound; EngineStats::writes_refused counts it too), or
  /// an error when it closed meanwhile.
  size_t broadcast(std::string_view ip, std::string_view bytes,
                   const WriteCallback& done = {}) const;
  size_t sources() const;  ///< distinct source IPs with a live connection

 private:
  struct Entry {
    uint16_t port;
    int loop;
    ConnHandle handle;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::vector<Entry>> by_ip;
  };
  const Shard& shard(std::string_view ip) const;
  Shard& shard(std::string_view ip) {
    return const_cast<Shard&>(static_cast<const SourceRegistry*>(this)->shard(ip));
  }
  std::array<Shard, 16> shards_;
};

}  // namespace ringnet::proto
