// SPDX-License-Identifier: MIT
// A loop's counters and histograms, and how the loop thread bumps them.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/loop_histogram.h"
#include "ringnet/handler.h"

namespace ringnet {

// Loop counters: written by the loop thread only (single writer, so a relaxed load+store
// is enough and costs no locked instruction), read from any thread.
struct LoopCounters {
  std::atomic<uint64_t> accepted{0}, open{0}, closed{0}, bytes_in{0}, bytes_out{0};
  std::atomic<uint64_t> read_calls{0}, write_calls{0}, accept_errors{0}, fd_exhausted{0};
  std::atomic<uint64_t> budget_yields{0}, tasks_run{0}, outbound_dropped{0};
  std::atomic<uint64_t> buffer_ring_empty{0}, cq_overflows{0}, refused_stopping{0};
  std::atomic<uint64_t> recv_bundles{0};
  std::atomic<uint64_t> uring_registered_ring{0};  // gauge, 0 or 1: set once at setup
  std::atomic<uint64_t> uring_incremental_buffers{0};  // gauge, 0 or 1: set once at setup
  std::atomic<uint64_t> uring_buffers_offered{0};      // gauge: provided buffers offered
  std::atomic<uint64_t> uring_fixed_file_slots{0};     // gauge: fixed file table, at setup
  std::atomic<uint64_t> pool_cached_bytes{0};  // gauge: the buffer pool's free lists, each turn
  std::atomic<uint64_t> read_pauses{0}, inbound_overflows{0}, refused_limit{0};
  std::atomic<uint64_t> refused_source_limit{0};
  std::atomic<uint64_t> drain_deadline_closed{0};
  std::atomic<uint64_t> traffic_calls{0}, conn_writes{0};
  std::atomic<uint64_t> inbound_dropped{0}, writes_refused{0}, inbound_budget_closed{0};
  std::atomic<uint64_t> inbound_held{0};  // gauge: unread bytes held, updated on change
  std::atomic<uint64_t> dials{0}, dialed{0}, dial_failures{0};
  std::atomic<uint64_t> closed_by_reason[kCloseReasonCount]{};
  // Options::metrics: recorded only when on.
  LoopHistogram flush_bytes;    // bytes per send syscall (writev / io_uring send)
  LoopHistogram batch_events;   // events (epoll) or completions (io_uring) per wake-up
  LoopHistogram busy_ns;        // one iteration from the wake-up to its flush, in ns
};

inline void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace ringnet
