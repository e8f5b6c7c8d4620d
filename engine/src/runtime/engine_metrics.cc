// SPDX-License-Identifier: MIT
// Engine::write_metrics: the per-loop counters and histograms as Prometheus families.
#include <fmt/format.h>

#include "runtime/engine_impl.h"

namespace ringnet {
namespace {

uint64_t get(const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); }

struct LoopView {
  std::string label;  // loop="0" / loop="acceptor"
  const EventLoop* loop;
};

// A counter or gauge family with one sample per loop.
template <typename F>
void per_loop(MetricsWriter& w, const std::vector<LoopView>& loops, std::string_view name,
              MetricType type, std::string_view help, F value_of) {
  w.family(name, type, help);
  for (const LoopView& l : loops) w.value(l.label, static_cast<uint64_t>(value_of(*l.loop)));
}

template <typename F>
void per_loop_counter(MetricsWriter& w, const std::vector<LoopView>& loops, std::string_view name,
                      std::string_view help, F field) {
  per_loop(w, loops, name, MetricType::kCounter, help,
           [&](const EventLoop& l) { return get(field(l.counters())); });
}

}  // namespace

void Engine::write_metrics(MetricsWriter& w) const {
  const Impl& impl = *impl_;
  // Connection loops; and the loops that accept (the acceptor's own loop, if any, holds
  // no connections, so it shows only in the accept and task families).
  std::vector<LoopView> loops, accepting;
  if (impl.started.load(std::memory_order_acquire)) {
    for (const auto& l : impl.loops) {
      loops.push_back({fmt::format("loop=\"{}\"", l->index()), l.get()});
    }
    accepting = loops;
    if (impl.acceptor) accepting.push_back({"loop=\"acceptor\"", impl.acceptor.get()});
  }
  using C = LoopCounters;

  w.family("ringnet_info", MetricType::kGauge, "Engine configuration (value is always 1).");
  w.value(fmt::format("backend=\"{}\",loops=\"{}\",balancer=\"{}\",reuse_port=\"{}\"",
                      backend_name(impl.opts.backend), impl.opts.loops,
                      balancer_name(impl.opts.balancer), impl.opts.reuse_port ? "true" : "false"),
          uint64_t{1});
  w.family("ringnet_stopping", MetricType::kGauge,
           "1 once stop() or shutdown() began (connections draining), else 0.");
  w.value("", uint64_t{stopping() ? 1u : 0u});

  // Connections.
  per_loop(w, loops, "ringnet_connections_open", MetricType::kGauge, "Connections open now.",
           [](const EventLoop& l) { return get(l.counters().open); });
  per_loop(w, loops, "ringnet_inbound_held_bytes", MetricType::kGauge,
           "Unread inbound bytes the connections hold (partial frames).",
           [](const EventLoop& l) { return get(l.counters().inbound_held); });
  per_loop(w, loops, "ringnet_buffer_pool_cached_bytes", MetricType::kGauge,
           "Free buffer memory the loop keeps for reuse (at most pool_cache_bytes).",
           [](const EventLoop& l) { return get(l.counters().pool_cached_bytes); });
  per_loop_counter(w, loops, "ringnet_connections_accepted_total",
                   "Connections accepted and adopted by a loop.",
                   [](const C& c) -> auto& { return c.accepted; });
  w.family("ringnet_connections_closed_total", MetricType::kCounter,
           "Connections closed, by reason.");
  for (const LoopView& l : loops) {
    for (int r = 0; r < kCloseReasonCount; ++r) {
      const char* reason = close_reason_name(static_cast<CloseReason>(r));
      w.value(fmt::format("{},reason=\"{}\"", l.label, reason),
              get(l.loop->counters().closed_by_reason[r]));
    }
  }
  w.family("ringnet_connections_refused_total", MetricType::kCounter,
           "Sockets closed right after accept: over a connection limit, or the engine stopping.");
  for (const LoopView& l : accepting) {
    w.value(l.label + ",cause=\"limit\"", get(l.loop->counters().refused_limit));
    w.value(l.label + ",cause=\"stopping\"", get(l.loop->counters().refused_stopping));
    w.value(l.label + ",cause=\"source_limit\"", get(l.loop->counters().refused_source_limit));
  }
  per_loop_counter(w, accepting, "ringnet_accept_errors_total",
                   "accept() failures other than EAGAIN (EMFILE/ENFILE included).",
                   [](const C& c) -> auto& { return c.accept_errors; });
  per_loop_counter(w, accepting, "ringnet_accept_fd_exhausted_total",
                   "accept() failures for lack of file descriptors (EMFILE/ENFILE).",
                   [](const C& c) -> auto& { return c.fd_exhausted; });
  w.family("ringnet_dials_total", MetricType::kCounter,
           "Engine::dial attempts by result: connected, or failed (closed with connect_failed).");
  for (const LoopView& l : loops) {
    w.value(l.label + ",result=\"connected\"", get(l.loop->counters().dialed));
    w.value(l.label + ",result=\"failed\"", get(l.loop->counters().dial_failures));
  }
  per_loop_counter(w, loops, "ringnet_drain_deadline_closed_total",
                   "Connections still busy when shutdown()'s deadline came, closed then.",
                   [](const C& c) -> auto& { return c.drain_deadline_closed; });

  // Traffic.
  per_loop_counter(w, loops, "ringnet_received_bytes_total", "Bytes read from sockets.",
                   [](const C& c) -> auto& { return c.bytes_in; });
  per_loop_counter(w, loops, "ringnet_sent_bytes_total", "Bytes handed to the kernel.",
                   [](const C& c) -> auto& { return c.bytes_out; });
  per_loop_counter(w, loops, "ringnet_read_calls_total",
                   "Reads: read syscalls (epoll) or receive completions (io_uring).",
                   [](const C& c) -> auto& { return c.read_calls; });
  per_loop_counter(w, loops, "ringnet_send_calls_total",
                   "Sends: sendmsg syscalls (epoll) or send completions (io_uring).",
                   [](const C& c) -> auto& { return c.write_calls; });
  per_loop_counter(w, loops, "ringnet_traffic_callbacks_total",
                   "on_traffic calls for fresh input (inbound messages as the engine sees them).",
                   [](const C& c) -> auto& { return c.traffic_calls; });
  per_loop_counter(w, loops, "ringnet_conn_writes_total",
                   "Conn::write/writev calls that queued bytes (outbound messages).",
                   [](const C& c) -> auto& { return c.conn_writes; });
  per_loop_counter(w, loops, "ringnet_outbound_dropped_bytes_total",
                   "Queued output discarded because its connection died first.",
                   [](const C& c) -> auto& { return c.outbound_dropped; });
  per_loop_counter(w, loops, "ringnet_inbound_dropped_bytes_total",
                   "Input read from connections already closing (refused after our FIN).",
                   [](const C& c) -> auto& { return c.inbound_dropped; });
  per_loop_counter(w, loops, "ringnet_inbound_budget_closed_total",
                   "Connections closed because all unread input passed max_inbound_total.",
                   [](const C& c) -> auto& { return c.inbound_budget_closed; });
  per_loop_counter(w, loops, "ringnet_writes_refused_total",
                   "ConnHandle::async_write calls refused: output over the high watermark.",
                   [](const C& c) -> auto& { return c.writes_refused; });
  per_loop_counter(w, loops, "ringnet_read_pauses_total",
                   "Times backpressure stopped reading a connection (outbound high watermark).",
                   [](const C& c) -> auto& { return c.read_pauses; });
  per_loop_counter(w, loops, "ringnet_inbound_overflows_total",
                   "Connections closed for holding more than max_inbound_buffer unread bytes.",
                   [](const C& c) -> auto& { return c.inbound_overflows; });
  per_loop_counter(w, loops, "ringnet_read_budget_yields_total",
                   "Reads cut short by the per-connection fairness budget.",
                   [](const C& c) -> auto& { return c.budget_yields; });

  // Cross-thread tasks.
  per_loop_counter(w, accepting, "ringnet_tasks_run_total", "Cross-thread tasks run by the loop.",
                   [](const C& c) -> auto& { return c.tasks_run; });
  per_loop(w, accepting, "ringnet_tasks_queued", MetricType::kGauge,
           "Cross-thread tasks posted to the loop and not yet run.",
           [](const EventLoop& l) { return l.queued_tasks(); });

  if (impl.opts.backend == Backend::kIoUring) {
    per_loop_counter(w, loops, "ringnet_uring_buffer_ring_empty_total",
                     "io_uring receives that found no provided buffer.",
                     [](const C& c) -> auto& { return c.buffer_ring_empty; });
    per_loop_counter(w, loops, "ringnet_uring_cq_overflows_total",
                     "Times the io_uring completion queue overflowed.",
                     [](const C& c) -> auto& { return c.cq_overflows; });
    per_loop_counter(w, loops, "ringnet_uring_recv_bundles_total",
                     "io_uring receives that filled more than one provided buffer.",
                     [](const C& c) -> auto& { return c.recv_bundles; });
    per_loop(w, accepting, "ringnet_uring_registered_ring", MetricType::kGauge,
             "1 where the loop's io_uring fd is registered (io_uring_enter skips its lookup).",
             [](const EventLoop& l) { return get(l.counters().uring_registered_ring); });
    per_loop(w, accepting, "ringnet_uring_incremental_buffers", MetricType::kGauge,
             "1 where the loop's provided buffers are consumed incrementally.",
             [](const EventLoop& l) { return get(l.counters().uring_incremental_buffers); });
    per_loop(w, loops, "ringnet_uring_buffers_offered", MetricType::kGauge,
             "Provided receive buffers offered to the kernel (grows when a receive finds none).",
             [](const EventLoop& l) { return get(l.counters().uring_buffers_offered); });
    per_loop(w, accepting, "ringnet_uring_fixed_file_slots", MetricType::kGauge,
             "Entries of the loop's fixed file table (connections there skip the fd lookup).",
             [](const EventLoop& l) { return get(l.counters().uring_fixed_file_slots); });
  }

  if (impl.opts.metrics) {
    // Buckets: 0.5 us .. 0.5 s by 4x; 1 .. 1024 events by 2x; 64 B .. 16 MiB by 4x.
    auto histograms = [&](std::string_view name, std::string_view help, double scale, int first,
                          int last, int step, const LoopHistogram& (*pick)(const C&)) {
      w.family(name, MetricType::kHistogram, help);
      for (const LoopView& l : loops) {
        Log2Histogram h;
        pick(l.loop->counters()).merge_into(h);
        w.histogram(l.label, h, scale, first, last, step);
      }
    };
    histograms("ringnet_loop_busy_seconds",
               "One loop iteration from its wake-up to the end of its flush: the delay a batch "
               "of events adds before its replies are sent. _sum over time = loop utilisation.",
               1e-9, 9, 29, 2, [](const C& c) -> const LoopHistogram& { return c.busy_ns; });
    histograms("ringnet_loop_batch_events",
               "Ready events (epoll) or completions (io_uring) per loop wake-up.", 1.0, 0, 10, 1,
               [](const C& c) -> const LoopHistogram& { return c.batch_events; });
    histograms("ringnet_flush_bytes", "Bytes handed to the kernel per send (write coalescing).",
               1.0, 6, 24, 2, [](const C& c) -> const LoopHistogram& { return c.flush_bytes; });
  }

  std::vector<std::function<void(MetricsWriter&)>> collectors;
  {
    std::lock_guard lock(impl.mu_metrics);
    collectors = impl.collectors;
  }
  for (const auto& collect : collectors) collect(w);
}

}  // namespace ringnet
