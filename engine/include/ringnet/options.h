// SPDX-License-Identifier: MIT
/// @file
/// Options: how an Engine runs. Every field has a usable default.
#pragma once

#include <chrono>
#include <cstddef>

#include "ringnet/config.h"

namespace ringnet {

/// How accepted connections are spread over loops (ignored with reuse_port: the kernel
/// spreads them over the per-loop listeners).
enum class Balancer {
  kRoundRobin,        ///< loop i, i+1, ... in turn
  kLeastConnections,  ///< the loop with the fewest open connections
  kSourceHash,        ///< hash of the source IP: one source always lands on one loop
};

/// The I/O backend of the loops.
enum class Backend {
  kAuto,     ///< io_uring where the kernel allows it, else epoll
  kEpoll,
  kIoUring,  ///< fail at start if io_uring is unavailable
};

/// A short name for `b`.
RINGNET_EXPORT const char* balancer_name(Balancer b);
/// A short name for `b`.
RINGNET_EXPORT const char* backend_name(Backend b);

/// How an Engine runs. Every field has a usable default.
/// Threads: a plain value, copied into the Engine by its constructor.
struct Options {
  int loops = 0;               ///< event loops; 0 = number of online cores
  bool pin_loops = false;      ///< pin loop i to online core i % cores
  /// The I/O backend.
  Backend backend = Backend::kEpoll;
  /// How accepted connections are spread over loops.
  Balancer balancer = Balancer::kRoundRobin;
  bool reuse_port = false;     ///< one SO_REUSEPORT listener per loop, no acceptor thread
  bool reuse_addr = true;      ///< SO_REUSEADDR on listeners
  /// listen(2) backlog.
  int backlog = 4096;

  /// Per accepted TCP socket.
  bool tcp_nodelay = true;
  std::chrono::seconds tcp_keepalive{0};  ///< 0 = off; else idle time and probe interval
  int recv_buffer = 0;                    ///< SO_RCVBUF; 0 = kernel default
  int send_buffer = 0;                    ///< SO_SNDBUF; 0 = kernel default

  bool ticker = false;                    ///< call EventHandler::on_tick

  /// Connection timeouts; zero turns one off. Each loop checks them on a timer wheel with
  /// 10 ms ticks: a timeout fires 10-20 ms after it is due, costs no syscall, and activity
  /// only stores a tick number (the deadline is re-checked when the wheel reaches it).
  /// on_close reports kIdleTimeout / kReadTimeout / kWriteTimeout.
  std::chrono::milliseconds idle_timeout{0};   ///< no bytes in or out for this long
  std::chrono::milliseconds read_timeout{0};   ///< inbound bytes left unconsumed this long
                                               ///< (a frame that never completes)
  std::chrono::milliseconds write_timeout{0};  ///< queued output not drained this long

  /// Connection limits (0 = none). A connection over a limit is closed right after accept
  /// and counted in EngineStats::refused_limit: the engine keeps serving the others.
  size_t max_connections = 0;           ///< open connections in the whole engine
  size_t max_connections_per_loop = 0;  ///< open connections on one loop
  /// Open connections from one source IP (any port), counted in refused_source_limit and
  /// logged (rate-limited) when refused. Dialed connections do not count.
  size_t max_connections_per_source = 0;

  /// Backpressure: above `high` bytes of queued output a connection stops being read (and
  /// the handler hears on_backpressure); reading resumes once the queue drained to `low`.
  /// high = 0 turns it off.
  size_t outbound_high_watermark = 4u << 20;
  /// Backpressure: reading resumes once the queued output drained to this (see above).
  size_t outbound_low_watermark = 1u << 20;
  /// Unread inbound bytes one connection may hold (a frame still incomplete). Past it the
  /// connection is closed (kError, EMSGSIZE) and counted in inbound_overflows. This also
  /// caps the largest frame a codec can receive. 0 = no limit.
  size_t max_inbound_buffer = 64u << 20;
  /// Unread inbound bytes all connections together may hold, so that many half-sent frames
  /// cannot add up past memory either. Each loop enforces its share without a shared
  /// counter: max_inbound_total / loops, but never less than one frame of the largest size
  /// (min(max_inbound_buffer, max_inbound_total)). When a loop's connections pass it, the
  /// ones holding the most are closed (kError, ENOBUFS), counted in inbound_budget_closed.
  /// 0 = no limit.
  size_t max_inbound_total = size_t{1} << 30;

  /// Engine::stop(): how long connections with queued output may keep flushing (reading
  /// nothing more) before they are closed anyway; the bytes left are counted as dropped.
  std::chrono::milliseconds stop_flush_timeout{2000};

  /// Histograms of loop iterations (busy time, events per wake-up) and of bytes per send,
  /// shown by Engine::stats() and /metrics. Costs two clock reads per loop iteration.
  /// Counters (bytes, connections, closes by reason...) are kept either way.
  bool metrics = true;

  /// Fairness: bytes read from one connection per wake-up before the loop moves on; the
  /// connection is served again before the loop blocks.
  size_t read_budget = 256 * 1024;
  /// Tasks (posted from other threads, or wake()/dispatch) run per loop iteration before I/O
  /// is looked at again; those posted while they run wait for the next iteration.
  size_t task_budget = 1024;
  /// Bytes parked on each loop's buffer pool free lists.
  size_t pool_cache_bytes = 16u << 20;

  /// io_uring backend. Each loop has one ring and one provided-buffer ring that multishot
  /// receives fill; a buffer goes back to the ring as soon as on_traffic returns.
  unsigned uring_entries = 1024;         ///< submission queue size (CQ is 4x)
  unsigned uring_buffer_count = 512;     ///< provided buffers per loop, at most (power of two)
  unsigned uring_buffer_size = 16384;    ///< bytes per provided buffer
  /// Buffers offered to the kernel at first (0: all of uring_buffer_count). When receives
  /// find none left the loop offers twice as many (once per turn at most), up to
  /// uring_buffer_count, so a quiet loop keeps a small resident set and a busy one grows
  /// to its bursts (EngineStats::uring_buffers_offered).
  unsigned uring_buffer_initial = 32;
  /// Receive bundles: one completion may fill several provided buffers (used where the
  /// kernel has them, 6.10+). Measured here: same CPU per message for small messages,
  /// 0.94x CPU and 1.07x throughput for 1 MiB messages.
  bool uring_recv_bundle = true;
  /// Register the ring's own fd (io_uring_register_ring_fd, kernel 5.18+): each
  /// io_uring_enter then skips looking the fd up. Falls back to the plain fd when the
  /// kernel refuses; EngineStats::uring_registered_rings says which loops have it.
  bool uring_register_ring = true;
  /// Direct descriptors (kernel 6.13+): each connection's socket is also installed in the
  /// ring's fixed file table, at its slot index, by an operation queued ahead of its first
  /// receive, and every operation names the slot (IOSQE_FIXED_FILE), so the kernel skips
  /// the fd lookup and file reference it otherwise takes per operation. The table has
  /// max_connections_per_loop entries (else max_connections, else 16384), at most
  /// RLIMIT_NOFILE and 2^20; connections past it use their plain fd. The plain fd stays open, so
  /// Conn::fd(), shutdown and setsockopt work as on epoll. Falls back to plain fds where
  /// the kernel refuses; EngineStats::uring_fixed_file_slots says how many slots there are.
  /// Measured here (50 conns, loopback, 5 interleaved rounds), CPU per message fixed/plain:
  /// 1.02 at 64 B, 1.01 at 64 B pipelined 16 deep, 0.97 at 16 KiB: within the noise.
  bool uring_fixed_files = true;
  /// Provided buffers consumed incrementally (IOU_PBUF_RING_INC, kernel 6.12+): a receive
  /// takes only the bytes it needs from a buffer and the next one goes on in it, instead
  /// of each receive spending a whole buffer. Falls back where the kernel refuses;
  /// EngineStats::uring_incremental_rings says which loops have it. Off by default:
  /// measured here (50 conns, loopback, 3 runs of 5 rounds) CPU per message on/off was
  /// 0.95-0.98 at 64 B, 1.03-1.13 at 64 B pipelined 16 deep, 0.99-1.03 at 16 KiB.
  bool uring_buffer_incremental = false;
};

}  // namespace ringnet
