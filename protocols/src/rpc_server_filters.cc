// SPDX-License-Identifier: MIT
// The filters RpcServer ships: a concurrency limit and a rate-limited call log.
#include <cinttypes>

#include "ringnet/log.h"
#include "ringnet/proto/rpc_server.h"

namespace ringnet::proto {

RpcStatus RpcConcurrencyLimit::on_request(RpcCall&) {
  // Take a slot first, give it back if over: a burst can never overshoot the limit.
  if (in_flight_.fetch_add(1, std::memory_order_acq_rel) >= max_) {
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    refused_.fetch_add(1, std::memory_order_relaxed);
    return RpcStatus::make(RpcCode::kResourceExhausted,
                           "over the concurrency limit of " + std::to_string(max_));
  }
  return RpcStatus::ok();
}

void RpcConcurrencyLimit::on_complete(const RpcCall&, const RpcStatus&, std::chrono::nanoseconds) {
  in_flight_.fetch_sub(1, std::memory_order_acq_rel);  // only calls this filter passed
}

void RpcLogFilter::on_complete(const RpcCall& call, const RpcStatus& status,
                               std::chrono::nanoseconds latency) {
  const LogLevel level = status.is_ok() ? LogLevel::kInfo : LogLevel::kWarn;
  if (!log_enabled(level)) return;
  uint64_t dropped = 0;
  if (!limit_.allow(&dropped)) return;
  lines_.fetch_add(1, std::memory_order_relaxed);
  log(level, "rpc {}.{} {} {} us from {}{}", call.service().name(), call.method_name(),
      status.to_string(), std::chrono::duration_cast<std::chrono::microseconds>(latency).count(),
      call.peer().to_string(),
      dropped != 0 ? fmt::format(" ({} similar lines suppressed)", dropped) : std::string());
}

}  // namespace ringnet::proto
