// SPDX-License-Identifier: MIT
// RpcServer's golden signals per service and method, in Prometheus text.
#include "ringnet/proto/rpc_server.h"
#include "rpc_server_core.h"

namespace ringnet::proto {

void write_rpc_metrics(const RpcServerCore& core, MetricsWriter& w) {
  auto get = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  struct Row {
    std::string labels;
    const RpcMethod* m;
  };
  std::vector<Row> rows;
  for (const auto& svc : core.services) {
    for (const auto& m : svc->methods()) {
      rows.push_back({"service=\"" + MetricsWriter::escape_label(svc->name()) + "\",method=\"" +
                          MetricsWriter::escape_label(m->name) + "\"",
                      m.get()});
    }
  }
  w.family("ringnet_rpc_requests_total", MetricType::kCounter,
           "Calls dispatched to a method (requests and one-way frames).");
  for (const Row& r : rows) w.value(r.labels, get(r.m->counters->calls));
  w.family("ringnet_rpc_responses_total", MetricType::kCounter,
           "Calls ended, by status code (OK, DEADLINE_EXCEEDED, UNAVAILABLE...).");
  for (const Row& r : rows) {
    for (int c = 0; c < kRpcCodeCount; ++c) {
      const uint64_t n = get(r.m->counters->codes[static_cast<size_t>(c)]);
      if (n != 0 || c == 0) {
        w.value(r.labels + ",code=\"" + rpc_code_name(static_cast<RpcCode>(c)) + "\"", n);
      }
    }
  }
  w.family("ringnet_rpc_in_flight", MetricType::kGauge, "Calls dispatched and not ended.");
  for (const Row& r : rows) w.value(r.labels, get(r.m->counters->in_flight));
  w.family("ringnet_rpc_latency_seconds", MetricType::kHistogram,
           "Call latency, frame read to answer queued.");
  for (const Row& r : rows) {
    // 1 us .. ~17 s in powers of four.
    w.histogram(r.labels, r.m->counters->latency_ns.snapshot(), 1e-9, 10, 34, 2);
  }
  w.family("ringnet_rpc_queue_delay_seconds", MetricType::kHistogram,
           "Pool methods: time queued before a worker took the call.");
  for (const Row& r : rows) {
    if (r.m->options.exec == RpcExec::kPool) {
      w.histogram(r.labels, r.m->counters->queue_ns.snapshot(), 1e-9, 10, 34, 2);
    }
  }
  w.family("ringnet_rpc_bytes_total", MetricType::kCounter,
           "Body bytes: direction in/out, stage wire (as sent, compressed) or body "
           "(decompressed).");
  for (const Row& r : rows) {
    const auto& c = *r.m->counters;
    w.value(r.labels + ",direction=\"in\",stage=\"wire\"", get(c.bytes_in_wire));
    w.value(r.labels + ",direction=\"in\",stage=\"body\"", get(c.bytes_in));
    w.value(r.labels + ",direction=\"out\",stage=\"wire\"", get(c.bytes_out_wire));
    w.value(r.labels + ",direction=\"out\",stage=\"body\"", get(c.bytes_out));
  }
  const RpcServerStats s = core.snapshot();
  w.family("ringnet_rpc_server_events_total", MetricType::kCounter,
           "Server-wide events: unknown methods, refusals while draining, late and double "
           "completions, handler exceptions, protocol errors, refused decompressions.");
  w.value("event=\"unknown_method\"", s.unknown_method);
  w.value("event=\"unavailable_draining\"", s.unavailable);
  w.value("event=\"late_completion\"", s.late_completions);
  w.value("event=\"double_completion\"", s.double_completions);
  w.value("event=\"handler_exception\"", s.handler_exceptions);
  w.value("event=\"protocol_error\"", s.protocol_errors);
  w.value("event=\"decompress_refused\"", s.decompress_refused);
}

}  // namespace ringnet::proto
