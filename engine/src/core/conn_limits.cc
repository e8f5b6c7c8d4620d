// SPDX-License-Identifier: MIT
// What one connection may hold: backpressure on its output (reading pauses over the high
// watermark) and caps on its unread input (max_inbound_buffer, the loop's share of
// max_inbound_total).
#include <cerrno>
#include <string>

#include "core/event_loop.h"
#include "core/loop_group.h"
#include "ringnet/log.h"

namespace ringnet {

void EventLoop::check_backpressure(Conn& c) {
  const size_t high = group_.opts.outbound_high_watermark;
  if (high == 0) return;
  if (!c.read_paused_ && c.out_.size() > high) {
    c.read_paused_ = true;
    bump(counters_.read_pauses);
    poller_->pause_reading(c);
    handler_.on_backpressure(c, true);
  } else if (c.read_paused_ && c.out_.size() <= group_.opts.outbound_low_watermark) {
    c.read_paused_ = false;
    if (!c.input_stopped_) poller_->resume_reading(c);
    handler_.on_backpressure(c, false);
    // Input a handler left while paused is shown again, from the loop rather than from
    // inside the send that drained the queue.
    if (c.in_ != nullptr) schedule_traffic(c);
  }
}

bool EventLoop::check_inbound_limit(Conn& c) {
  // A closing connection takes no more input (on_input refuses it) and is not cut short:
  // its queued answer still goes out.
  if (c.state_ != Conn::State::kOpen) return false;
  const size_t limit = group_.opts.max_inbound_buffer;
  if (limit == 0 || unread(c) <= limit) {
    return inbound_budget_ != 0 && inbound_held_ > inbound_budget_ && enforce_inbound_budget(c);
  }
  bump(counters_.inbound_overflows);
  uint64_t dropped = 0;
  if (inbound_log_limit_.allow(&dropped)) {
    log(LogLevel::kWarn, "loop {}: {} holds {} unread bytes, over max_inbound_buffer {}; closing{}",
        index_, c.remote_addr().to_string(), unread(c), limit,
        dropped ? fmt::format(" ({} similar lines suppressed)", dropped) : std::string());
  }
  close_conn(c, CloseInfo{CloseReason::kError, EMSGSIZE});
  return true;
}

// Over the loop's share of max_inbound_total: close the open connections holding the most
// unread input until the rest fit. The largest, not the one whose bytes crossed the line:
// otherwise one peer parked just under the share would get every other connection that
// leaves a byte unread closed. A scan of the slots, only when the share is passed.
bool EventLoop::enforce_inbound_budget(Conn& c) {
  bool closed_c = false;
  while (inbound_held_ > inbound_budget_) {
    Conn* largest = nullptr;
    for (Conn& x : slots_) {
      if (x.state_ != Conn::State::kOpen) continue;
      if (largest == nullptr || unread(x) > unread(*largest)) largest = &x;
    }
    if (largest == nullptr || largest->in_ == nullptr) break;  // closing ones hold the rest
    bump(counters_.inbound_budget_closed);
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1,
                        "loop {}: connections hold {} unread bytes, over this loop's share {} "
                        "of max_inbound_total; closing {}, which holds the most: {}",
                        index_, inbound_held_, inbound_budget_, largest->remote_addr().to_string(),
                        unread(*largest));
    closed_c = closed_c || largest == &c;
    close_conn(*largest, CloseInfo{CloseReason::kError, ENOBUFS});
  }
  return closed_c;
}

}  // namespace ringnet
