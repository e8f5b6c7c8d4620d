// SPDX-License-Identifier: MIT
// Connection timeouts on the loop's timer wheel: idle, read (a partial request), write
// (output that does not drain), and the connect, handshake and linger deadlines.
#include <algorithm>

#include "core/event_loop.h"

namespace ringnet {

// Activity only stores a tick; the wheel node is armed at the earliest deadline and, when
// it fires, either closes the connection or re-arms at the deadline as it stands now. So
// a busy connection touches the wheel about once per timeout period, not per message.

void EventLoop::track_partial_input(Conn& c) {
  if (c.in_ == nullptr && (c.transport_ == nullptr || !c.transport_->has_pending_input())) {
    c.read_since_ = 0;
  } else if (c.read_since_ == 0 && c.state_ == Conn::State::kOpen) {
    c.read_since_ = stamp(now_tick());
    update_timer(c);
  }
}

void EventLoop::track_pending_output(Conn& c) {
  if (c.out_.empty()) {
    c.write_since_ = 0;
  } else if (c.write_since_ == 0) {
    c.write_since_ = stamp(now_tick());
    update_timer(c);
  }
}

void EventLoop::set_idle_timeout(Conn& c, std::chrono::milliseconds timeout) {
  c.idle_ticks_ = capped_ticks(timeout);
  if (c.idle_ticks_ == 0) return;  // a later deadline, if any, re-arms itself when reached
  timeouts_on_ = true;
  c.last_active_ = stamp(now_tick());
  // Re-arm from scratch: the new timeout may be shorter than what the node waits for.
  wheel_.cancel(c.timer_);
  update_timer(c);
}

void EventLoop::update_timer(Conn& c) {
  const uint64_t now = now_tick();
  uint64_t due = UINT64_MAX;
  if (c.state_ == Conn::State::kConnecting) {
    // Only the connect deadline: the other timeouts start at on_connect_result.
    due = at(c.deadline_, now);
  } else {
    // +1: a deadline falls inside a tick; firing on the tick after never fires early.
    if (c.idle_ticks_ != 0) due = std::min(due, at(c.last_active_, now) + c.idle_ticks_ + 1);
    if (c.read_since_ != 0 && read_ticks_ != 0) {
      due = std::min(due, at(c.read_since_, now) + read_ticks_ + 1);
    }
    if (c.write_since_ != 0 && write_ticks_ != 0) {
      due = std::min(due, at(c.write_since_, now) + write_ticks_ + 1);
    }
    if (c.lingering_ || c.handshaking_) due = std::min(due, at(c.deadline_, now));
  }
  if (due == UINT64_MAX) return;
  if (c.timer_.armed() && c.timer_.expires <= due) return;  // fires first, then re-checks
  wheel_.arm(c.timer_, due);
}

void EventLoop::on_conn_timer(Conn& c) {
  if (c.state_ == Conn::State::kFree || c.state_ == Conn::State::kClosed) return;
  const uint64_t now = wheel_.now_tick();
  if (c.state_ == Conn::State::kConnecting) {
    if (now >= at(c.deadline_, now)) {
      return close_conn(c, CloseInfo{CloseReason::kConnectFailed, ETIMEDOUT});
    }
    return update_timer(c);
  }
  if (c.lingering_) {  // the reply is out; only the peer's EOF is still awaited
    if (now >= at(c.deadline_, now)) return close_conn(c, CloseInfo{c.close_reason(), 0});
    return update_timer(c);
  }
  if (c.handshaking_ && now >= at(c.deadline_, now)) {
    return close_conn(c, CloseInfo{CloseReason::kHandshakeTimeout, ETIMEDOUT});
  }
  if (c.write_since_ != 0 && write_ticks_ != 0 && now > at(c.write_since_, now) + write_ticks_) {
    // The output cannot drain: flushing first would wait for ever.
    return close_conn(c, CloseInfo{CloseReason::kWriteTimeout, 0});
  }
  if (c.read_since_ != 0 && read_ticks_ != 0 && now > at(c.read_since_, now) + read_ticks_) {
    if (c.state_ == Conn::State::kOpen) {
      begin_close(c, CloseReason::kReadTimeout);
      update_timer(c);  // the flush may in turn time out (write_timeout)
      return;
    }
  }
  if (c.idle_ticks_ != 0 && now > at(c.last_active_, now) + c.idle_ticks_) {
    if (c.state_ == Conn::State::kOpen) {
      begin_close(c, CloseReason::kIdleTimeout);
    } else {
      return close_conn(c, CloseInfo{CloseReason::kIdleTimeout, 0});
    }
  }
  update_timer(c);
}

}  // namespace ringnet
