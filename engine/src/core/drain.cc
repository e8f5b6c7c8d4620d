// SPDX-License-Identifier: MIT
// Stopping a loop: stop() flushes and closes; shutdown(deadline) drains gracefully, serving
// accepted connections until they finish (see Engine::shutdown).
#include <cerrno>

#include "core/event_loop.h"
#include "core/loop_group.h"

namespace ringnet {

// A graceful drain serves accepted connections to the end; connections this engine
// dialed stay up meanwhile (a draining proxy still needs its backends) until no loop has
// an accepted connection left, and a loop with nothing left stays until then too (it may
// still be dialed on). The acceptor (index -1) holds no connections and is never dialed
// on. Returns true once this loop has nothing more to wait for.
bool EventLoop::drain_step(bool sweep) {
  if (!graceful_ || index_ < 0) return true;
  if (sweep) drain_sweep();
  if (!drain_swept_ || !served_all()) return false;
  close_dialed();
  return true;
}

// Accept nothing more. stop(): connections with nothing queued close now, the others
// flush (as kClosing: input is no longer shown to the handler) until they drained or the
// deadline. shutdown(deadline): connections keep being served; drain_sweep, after one
// more poll, stops their input at frame boundaries and they close once done.
void EventLoop::begin_shutdown() {
  if (stopping_ || poller_ == nullptr) return;  // the loop never ran, or has left run()
  draining_ = true;
  const std::chrono::milliseconds drain = group_.drain_for;
  graceful_ = drain.count() >= 0;
  drain_deadline_ = Clock::now() + (graceful_ ? drain : group_.opts.stop_flush_timeout);
  close_listeners();
  if (graceful_) {
    sweep_armed_ = true;
    return;
  }
  for (Conn& c : slots_) {
    if (c.state_ == Conn::State::kConnecting) {  // a dial not done: given up, not drained
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
      continue;
    }
    if (c.state_ != Conn::State::kOpen) continue;
    if (c.out_.empty()) {
      close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
    } else {
      begin_close(c, CloseReason::kShutdown);
    }
  }
}

// Runs one poll after the drain began: by then every byte the kernel held for an
// accepted connection when the drain began has been read and shown to the handler (a
// request on a keep-alive connection that looked idle, or on one accepted just before).
void EventLoop::drain_sweep() {
  sweep_armed_ = false;
  drain_swept_ = true;
  for (Conn& c : slots_) {
    // After an EOF the connection settles by its own path (input it left gets a look).
    if (c.state_ != Conn::State::kOpen || c.dialed_ || c.eof_) continue;
    // Input known to wait in the kernel is still read: epoll's budget left some
    // (readable_), or backpressure paused reading; the next frame boundary stops them.
    // A handshake still running finishes first (under its deadline); its first request
    // then gets the same look (established() arms another sweep).
    if (!holds_input(c) && !c.readable_ && !c.read_paused_) stop_input(c);
    settle(c);
  }
}

void EventLoop::stop_input(Conn& c) {
  if (c.input_stopped_) return;
  c.input_stopped_ = true;
  poller_->pause_reading(c);
}

bool EventLoop::served_all() const {
  return served_open_ == 0 && group_.served.load(std::memory_order_acquire) == 0;
}

void EventLoop::close_dialed() {
  for (Conn& c : slots_) {
    if (!c.dialed_) continue;
    if (c.state_ == Conn::State::kConnecting) {
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
    } else if (c.state_ == Conn::State::kOpen) {
      begin_close(c, CloseReason::kShutdown);
    }
  }
}

// Leaving run(): whatever the drain did not finish is closed now, after one last
// non-blocking attempt to hand its output to the kernel.
void EventLoop::shutdown_all() {
  close_listeners();
  for (Conn& c : slots_) {
    if (c.state_ == Conn::State::kConnecting) {
      close_conn(c, CloseInfo{CloseReason::kConnectFailed, ECANCELED});
      continue;
    }
    if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) continue;
    // Still busy at the deadline (a lingering close was done; a dialed one serves no one).
    if (graceful_ && !c.lingering_ && !c.dialed_) bump(counters_.drain_deadline_closed);
    if (!c.out_.empty()) poller_->send_final(c);
    close_conn(c, CloseInfo{CloseReason::kShutdown, 0});
  }
  dirty_.clear();
}

}  // namespace ringnet
