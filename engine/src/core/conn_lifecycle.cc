// SPDX-License-Identifier: MIT
// A connection's life, in one place: every transition of Conn::State is made here.
//
//   accept -> adopt() ------------------------------------------+
//   dial() -> kConnecting --on_connect_result(0)--> on_open --> kOpen
//                  with a transport (TLS), either way: kOpen + handshaking, no on_open
//                  until the transport reports kEstablished (on_transport_result);
//                  a failure or handshake_timeout closes it, seen by a dial's handler only
//               |                                                |
//               | failed / timed out / stop                      | settle(): the peer's EOF
//               |                                                | (on_peer_eof) or the drain's
//               |                                                | stop_input, nothing holds
//               |                                                | it, its input was shown;
//               |                                                | or close() / kClose /
//               |                                                | a timeout / the drain
//               |                                                v  begin_close()
//               |                                             kClosing -- input still coming
//               |                                                |        is read and dropped
//               |                          output out (after_send)|        (on_input)
//               |                    peer may still send: FIN first|
//               |                     and linger (start_linger) until EOF or the deadline
//               v                                                v
//            kClosed <--------------------------------------- close_conn(): on_close
//               |     reset / error / over max_inbound_buffer / stop deadline: at once
//               v
//            kFree   free_slot(): the fd closes, the slot is reused (a completion backend
//                    may hold it until its operations finished)
//
// Input has one entry point (on_input) and so has the peer's EOF (on_peer_eof), whatever
// the backend; the handler sees bytes at once through run_traffic, even while reading is
// paused, and what it leaves is kept for the next look.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "core/event_loop.h"
#include "core/loop_group.h"
#include "net/socket_ops.h"
#include "ringnet/log.h"

namespace ringnet {
namespace {
// How long a close the engine decides on, with input still coming, reads it away.
const uint16_t kDefaultLingerTicks =
    static_cast<uint16_t>(TimerWheel::ticks_for(std::chrono::seconds(2)));
}  // namespace

Conn& EventLoop::new_slot(int fd, const SockAddr& peer, Conn::State state) {
  RINGNET_ASSERT_IN_LOOP(this);
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back(this, &pool_);
  }
  Conn& c = slots_[index];
  uint32_t gen = c.id_.generation + 1;
  c.id_ = ConnId{index, gen == 0 ? 1 : gen};
  c.fd_ = fd;
  c.state_ = state;
  c.dirty_ = c.readable_ = c.eof_ = c.read_to_eagain_ = c.read_paused_ = false;
  c.input_stopped_ = c.input_refused_ = false;
  c.send_error_ = 0;
  c.holds_ = 0;
  c.lingering_ = false;
  c.dialed_ = false;
  c.handshaking_ = false;
  c.linger_ticks_ = 0;
  c.remote_.assign(peer.raw(), peer.length());
  c.timer_.owner = &c;
  c.idle_ticks_ = idle_ticks_;
  c.read_since_ = c.write_since_ = 0;
  return c;
}

void EventLoop::release_source(const SockAddr& peer) {
  if (group_.sources != nullptr && peer.is_ip()) group_.sources->remove(peer);
}

void EventLoop::adopt(int fd, const SockAddr& peer, int spec) {
  if (stopping_ || draining_) {  // accepted just as the engine stopped: refuse, counted
    bump(counters_.refused_stopping);  // before the close the client sees
    ::close(fd);
    release_source(peer);
    load_.fetch_sub(1, std::memory_order_relaxed);
    group_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  Conn& c = new_slot(fd, peer, Conn::State::kOpen);
  if (timeouts_on_) {
    c.last_active_ = stamp(now_tick());
    update_timer(c);
  }
  if (Status s = poller_->add_conn(c); !s) {
    log(LogLevel::kWarn, "loop {}: cannot watch fd {}: {}", index_, fd, s.message());
    ::close(fd);
    c.fd_ = -1;
    c.state_ = Conn::State::kFree;
    free_slots_.push_back(c.id_.index);
    release_source(peer);
    load_.fetch_sub(1, std::memory_order_relaxed);
    group_.open_conns.fetch_sub(1, std::memory_order_relaxed);
    bump(counters_.accept_errors);
    return;
  }
  bump(counters_.accepted);
  bump(counters_.open);
  ++served_open_;
  group_.served.fetch_add(1, std::memory_order_relaxed);
  const auto& transports = group_.listen_transports;
  if (spec >= 0 && static_cast<size_t>(spec) < transports.size() && transports[spec] != nullptr) {
    c.handshaking_ = true;  // from here on the handler never hears of it unless it opens
    c.transport_ = transports[spec]->create(TransportPeer{false, {}, 0, spec});
    if (c.transport_ == nullptr) return close_conn(c, CloseInfo{CloseReason::kHandshakeFailed, 0});
    start_transport(c);  // on_open once the handshake is done
    return;
  }
  apply_action(c, handler_.on_open(c));
}

// The handshake runs under its own deadline (deadline_, as a dial's connect does); the
// usual timeouts run too.
bool EventLoop::start_transport(Conn& c) {
  c.handshaking_ = true;
  c.deadline_ = stamp(now_tick() + capped_ticks(c.transport_->handshake_timeout()) + 1);
  update_timer(c);
  TransportResult r = c.transport_->start(c.out_);
  if (!c.out_.empty()) mark_dirty(c);
  return on_transport_result(c, r);
}

bool EventLoop::on_transport_result(Conn& c, TransportResult r) {
  if (r.established) established(c);
  if (r.failed) transport_failed(c, r.error);
  return c.state_ == Conn::State::kOpen;
}

// The alert the transport queued goes out if the socket takes it now (best effort: on
// io_uring not while a send is in flight); no linger.
void EventLoop::transport_failed(Conn& c, int error) {
  if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) return;
  if (!c.out_.empty()) poller_->send_final(c);
  close_conn(c, CloseInfo{c.handshaking_ ? CloseReason::kHandshakeFailed : CloseReason::kError,
                          error});
}

void EventLoop::established(Conn& c) {
  if (!c.handshaking_ || c.state_ != Conn::State::kOpen) return;
  c.handshaking_ = false;
  wheel_.cancel(c.timer_);  // the handshake deadline is over
  if (timeouts_on_) {
    c.last_active_ = stamp(now_tick());
    update_timer(c);
  }
  if (c.dialed_) bump(counters_.dialed);
  apply_action(c, handler_.on_open(c));
  // During a graceful drain the connection gets what one arriving before the drain got:
  // one more poll for its first request, then the sweep stops it at a frame boundary.
  if (drain_swept_ && !c.dialed_) sweep_armed_ = true;
}

// Dialing.
// A dialed connection takes a slot at once, in kConnecting, so that a failure reaches the
// handler like any close (on_close, kConnectFailed, with its context) and the timer wheel
// can time the connect out. The poller starts the connect and reports with
// on_connect_result; only then does the connection become kOpen and see on_open.

void EventLoop::dial(const SockAddr& peer, const DialOptions& options) {
  bump(counters_.dials);
  // Queued as the engine stopped (maybe run after the loop thread left): no poller. A
  // graceful drain still dials; stop() does not.
  if (stopping_ || poller_ == nullptr || (draining_ && !graceful_)) {
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "loop {}: dial refused: engine stopping", index_);
    return fail_dial(peer, options, CloseReason::kConnectFailed, ECANCELED);
  }
  std::unique_ptr<Transport> transport;
  if (options.transport != nullptr) {
    const std::string host = options.server_name.empty() ? peer.ip_string() : options.server_name;
    transport = options.transport->create(TransportPeer{true, host, peer.port(), -1});
    if (transport == nullptr) return fail_dial(peer, options, CloseReason::kHandshakeFailed, 0);
  }
  int fd = ::socket(peer.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_dial(peer, options, CloseReason::kConnectFailed, errno);
  Conn& c = new_slot(fd, peer, Conn::State::kConnecting);
  c.dialed_ = true;
  c.context_ = options.context;
  c.transport_ = std::move(transport);
  bump(counters_.open);  // closing it (connected or not) counts it out again
  if (peer.is_ip()) sockets::tune_accepted(fd, peer.family(), group_.opts);
  c.deadline_ = stamp(now_tick() + capped_ticks(options.timeout) + 1);
  update_timer(c);
  if (int err = poller_->start_connect(c); err != 0) {
    return close_conn(c, CloseInfo{CloseReason::kConnectFailed, err});
  }
}

// The deadline covers the lookup too: a name that takes longer ends in kConnectFailed,
// ETIMEDOUT, as a connect would; the late answer then finds no connection waiting.
void EventLoop::dial_name(const NamedAddress& name, const DialOptions& options) {
  bump(counters_.dials);
  if (stopping_ || poller_ == nullptr || (draining_ && !graceful_) || group_.resolver == nullptr) {
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "loop {}: dial refused: engine stopping", index_);
    return fail_dial(SockAddr(), options, CloseReason::kConnectFailed, ECANCELED);
  }
  std::unique_ptr<Transport> transport;
  if (options.transport != nullptr) {
    const std::string& host = options.server_name.empty() ? name.host : options.server_name;
    transport = options.transport->create(TransportPeer{true, host, name.port, -1});
    if (transport == nullptr) return fail_dial(SockAddr(), options, CloseReason::kHandshakeFailed, 0);
  }
  Conn& c = new_slot(-1, SockAddr(), Conn::State::kConnecting);
  c.dialed_ = true;
  c.context_ = options.context;
  c.transport_ = std::move(transport);
  bump(counters_.open);
  c.deadline_ = stamp(now_tick() + capped_ticks(options.timeout) + 1);
  update_timer(c);
  const auto deadline = std::chrono::steady_clock::now() + std::max(options.timeout,
                                                                    std::chrono::milliseconds(0));
  group_.resolver->resolve(name, deadline, [this, id = c.id()](const SockAddr& peer,
                                                               int gai_error) {
    // On the resolver's thread. A loop that has left drops it (its dials were closed).
    TaskQueue::Task answer = [this, id, peer, gai_error] { on_resolved(id, peer, gai_error); };
    (void)try_post(answer);
  });
}

void EventLoop::on_resolved(ConnId id, const SockAddr& peer, int gai_error) {
  Conn* c = lookup(id);
  if (c == nullptr || c->state_ != Conn::State::kConnecting || c->fd_ >= 0) return;
  if (gai_error != 0) return close_conn(*c, CloseInfo{CloseReason::kResolveFailed, gai_error});
  const int fd = ::socket(peer.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return close_conn(*c, CloseInfo{CloseReason::kConnectFailed, errno});
  c->fd_ = fd;
  c->remote_.assign(peer.raw(), peer.length());
  sockets::tune_accepted(fd, peer.family(), group_.opts);
  if (int err = poller_->start_connect(*c); err != 0) {
    return close_conn(*c, CloseInfo{CloseReason::kConnectFailed, err});
  }
}

// A slot with no socket, closed at once: the handler hears on_close (kConnectFailed) with
// the dial's context, like any dial that failed, and the counts given at dial are returned.
void EventLoop::fail_dial(const SockAddr& peer, const DialOptions& options, CloseReason reason,
                          int err) {
  Conn& c = new_slot(-1, peer, Conn::State::kConnecting);
  c.dialed_ = true;
  c.context_ = options.context;
  bump(counters_.open);
  close_conn(c, CloseInfo{reason, err});
}

void EventLoop::on_connect_result(Conn& c, int err) {
  if (c.state_ != Conn::State::kConnecting) return;
  if (err != 0) return close_conn(c, CloseInfo{CloseReason::kConnectFailed, err});
  c.state_ = Conn::State::kOpen;
  wheel_.cancel(c.timer_);  // the connect deadline is over; the usual timeouts start now
  if (timeouts_on_) {
    c.last_active_ = stamp(now_tick());
    update_timer(c);
  }
  if (c.transport_ != nullptr) {
    start_transport(c);  // on_open (and the dialed count) once the handshake is done
    return;
  }
  bump(counters_.dialed);
  apply_action(c, handler_.on_open(c));
}

void EventLoop::on_input(Conn& c, std::string_view bytes) {
  bump(counters_.bytes_in, bytes.size());
  if (c.state_ != Conn::State::kOpen) {  // closing by our decision: the input is refused
    bump(counters_.inbound_dropped, bytes.size());
    c.input_refused_ = true;  // the peer is still sending: close with FIN first (after_send)
    return;
  }
  note_activity(c);
  if (c.transport_ != nullptr) return on_transport_input(c, bytes);
  on_plain_input(c, bytes);
}

void EventLoop::on_plain_input(Conn& c, std::string_view bytes) {
  if (c.in_ == nullptr) return run_traffic(c, bytes);  // zero-copy: the handler reads `bytes`
  c.in_->append(bytes);
  add_inbound_held(static_cast<ptrdiff_t>(bytes.size()));
  run_traffic(c);
}

// The plaintext of one arrival is shown like plain bytes from a transient area (the
// handler's leftovers are copied into c's buffer), so the scratch buffer is reused at once.
void EventLoop::on_transport_input(Conn& c, std::string_view bytes) {
  Buffer& plain = transport_plain_;
  TransportResult r = c.transport_->on_input(bytes, plain, c.out_);
  if (!c.out_.empty()) mark_dirty(c);
  if (r.established) established(c);
  // Plaintext decoded before an error or the end of the session reaches the handler.
  if (c.state_ == Conn::State::kOpen && !plain.empty() && !c.handshaking_) {
    on_plain_input(c, plain.view());
  } else if (c.state_ == Conn::State::kOpen && read_ticks_ != 0 && !c.handshaking_) {
    track_partial_input(c);  // an unfinished record is a partial request too
  }
  plain.clear();
  plain.release_if_empty();
  const bool live = c.state_ == Conn::State::kOpen || c.state_ == Conn::State::kClosing;
  if (!live) return;
  if (r.failed) {
    transport_failed(c, r.error);
  } else if (r.peer_closed) {
    on_peer_eof(c);  // the session ended in order: as a TCP EOF
  }
}

void EventLoop::on_peer_eof(Conn& c) {
  if (c.eof_) return;  // a transport's end of session came first
  c.eof_ = true;
  if (c.state_ == Conn::State::kClosing) {
    if (c.lingering_) close_conn(c, CloseInfo{c.close_reason(), 0});  // what we waited for
    return;
  }
  if (c.state_ != Conn::State::kOpen) return;
  // Input the handler left (a request it answers step by step) gets one more look.
  if (c.in_ != nullptr && c.holds_ == 0) return schedule_traffic(c);
  settle(c);
}

void EventLoop::on_released(Conn& c) {
  // Inside c's on_traffic its buffer is not settled yet: run_traffic decides after.
  if (c.state_ != Conn::State::kOpen || &c == in_traffic_) return;
  if (c.eof_ && c.in_ != nullptr) return schedule_traffic(c);  // the handler may take more now
  settle(c);
}

void EventLoop::settle(Conn& c) {
  if (c.state_ != Conn::State::kOpen || c.holds_ != 0) return;
  if (c.eof_) return begin_close(c, CloseReason::kPeerClosed);
  if (c.input_stopped_ && c.in_ == nullptr) begin_close(c, CloseReason::kShutdown);
}

void EventLoop::run_traffic(Conn& c, std::string_view fresh) {
  c.in_view_ = fresh.empty() ? input_view(c) : fresh;
  const size_t shown = c.in_view_.size();
  bump(counters_.traffic_calls);
  in_traffic_ = &c;
  Action action = handler_.on_traffic(c);
  in_traffic_ = nullptr;
  const size_t left = c.in_view_.size();
  if (!fresh.empty()) {
    if (left != 0) {
      attach_input(c).append(c.in_view_);  // the transient area is reused by the next read
      add_inbound_held(static_cast<ptrdiff_t>(left));
    }
  } else if (shown != left) {
    c.in_->consume(shown - left);
    detach_input_if_empty(c);
    add_inbound_held(-static_cast<ptrdiff_t>(shown - left));
  }
  c.in_view_ = input_view(c);
  if (read_ticks_ != 0) track_partial_input(c);
  if (left != 0 && check_inbound_limit(c)) return;
  if (c.state_ == Conn::State::kOpen) check_backpressure(c);
  apply_action(c, action);
  if (c.state_ != Conn::State::kOpen) return;
  if (c.eof_ && left != 0 && left < shown && c.holds_ == 0) {
    return schedule_traffic(c);  // it took some: it may take more, and nothing else will come
  }
  if (drain_swept_ && !c.dialed_ && !holds_input(c)) stop_input(c);  // a frame boundary
  settle(c);
}

void EventLoop::apply_action(Conn& c, Action action) {
  if (action == Action::kClose) begin_close(c, CloseReason::kLocalClose);
  if (action == Action::kShutdown) group_.request_stop(std::chrono::milliseconds(-1));
}

void EventLoop::begin_close(Conn& c, CloseReason reason) {
  // A dial closed before it connected: nothing to flush, and on_open never came.
  if (c.state_ == Conn::State::kConnecting) return close_conn(c, CloseInfo{reason, 0});
  if (c.state_ != Conn::State::kOpen) return;
  c.state_ = Conn::State::kClosing;
  c.set_close_reason(reason);
  if (c.transport_ != nullptr && !c.handshaking_) c.transport_->shutdown(c.out_);  // goodbye
  mark_dirty(c);  // flush_dirty sends what is queued and closes once it drained
}

// Why a connection whose handshake did not finish closed. A timeout is the handshake's;
// for a dial, the peer going away mid-handshake (or our stop) is a failed connect with
// its errno, so a pool may retry it, as it would a refused connect.
CloseInfo EventLoop::unfinished_close_info(CloseInfo info, bool dialed) {
  switch (info.reason) {
    case CloseReason::kHandshakeFailed:
    case CloseReason::kHandshakeTimeout:
      return info;
    case CloseReason::kIdleTimeout:
    case CloseReason::kReadTimeout:
    case CloseReason::kWriteTimeout:
      return CloseInfo{CloseReason::kHandshakeTimeout, ETIMEDOUT};
    case CloseReason::kShutdown:
    case CloseReason::kLocalClose:
      return dialed ? CloseInfo{CloseReason::kConnectFailed, ECANCELED} : info;
    default:
      return dialed ? CloseInfo{CloseReason::kConnectFailed, info.error != 0 ? info.error : ECONNRESET}
                    : info;
  }
}

CloseInfo EventLoop::error_close_info(int err) {
  bool reset = err == ECONNRESET || err == EPIPE;
  return CloseInfo{reset ? CloseReason::kReset : CloseReason::kError, err};
}

void EventLoop::send_or_close(Conn& c) {
  if (int err = poller_->send(c); err != 0) return close_conn(c, error_close_info(err));
  after_send(c);
}

// Conn::flush() runs inside handler code: an error is remembered and the connection is
// closed by flush_dirty at the end of the iteration, never under the handler's feet.
Status EventLoop::flush_now(Conn& c) {
  if (c.state_ != Conn::State::kOpen && c.state_ != Conn::State::kClosing) {
    return Status::invalid("flush on a closed connection");
  }
  if (c.send_error_ != 0) return Status::from_errno(c.send_error_, "flush");
  if (c.out_.empty()) return Status::ok();
  if (int err = poller_->send(c); err != 0) {
    c.send_error_ = err;
    mark_dirty(c);
    return Status::from_errno(err, "flush");
  }
  return Status::ok();
}

void EventLoop::after_send(Conn& c) {
  if (c.state_ == Conn::State::kClosing && c.out_.empty()) {
    if (c.lingering_) return;
    if (!c.eof_ && (c.linger_ticks_ != 0 || lingers_on_close(c))) return start_linger(c);
    close_conn(c, CloseInfo{c.close_reason(), 0});
    return;
  }
  if (timeouts_on_) {
    note_activity(c);
    if (write_ticks_ != 0) track_pending_output(c);
  }
  if (c.state_ == Conn::State::kOpen) check_backpressure(c);
}

// Closing with input unread makes the kernel send RST, which can destroy the answer
// before the peer has read it: a close the handler or the drain decided on, while the peer
// may still be sending, sends FIN first and reads the rest away (as close_lingering). A
// peer that finished (EOF) is owed no linger, nor one we close for a timeout.
bool EventLoop::lingers_on_close(const Conn& c) {
  if (c.close_reason() != CloseReason::kLocalClose && c.close_reason() != CloseReason::kShutdown) {
    return false;
  }
  return c.input_refused_ || c.in_ != nullptr || sockets::unread_bytes(c.fd_) > 0;
}

// Lingering close: our FIN goes out after the reply; the pollers keep reading (and
// dropping) input of a closing connection, and its EOF — or the deadline — closes it.
void EventLoop::start_linger(Conn& c) {
  if (::shutdown(c.fd_, SHUT_WR) != 0) return close_on_error(c, errno);
  c.lingering_ = true;
  if (c.linger_ticks_ == 0) c.linger_ticks_ = kDefaultLingerTicks;
  c.deadline_ = stamp(now_tick() + c.linger_ticks_ + 1);
  update_timer(c);
  if (c.read_paused_ || c.input_stopped_) {  // reading had stopped: the EOF must be seen
    c.read_paused_ = false;
    poller_->resume_reading(c);
  }
}

void EventLoop::close_conn(Conn& c, CloseInfo info) {
  if (c.state_ == Conn::State::kFree || c.state_ == Conn::State::kClosed) return;
  // A handshake that did not finish: an accepted socket the handler never saw closes
  // unseen (the transport counts it); a dial's handler hears why, as for a connect.
  const bool unfinished = c.handshaking_;
  c.handshaking_ = false;
  if (c.transport_ != nullptr) c.transport_->on_close(info);
  if (unfinished) info = unfinished_close_info(info, c.dialed_);
  if (c.dialed_ && never_connected(info.reason)) bump(counters_.dial_failures);
  c.state_ = Conn::State::kClosed;
  c.dirty_ = false;
  wheel_.cancel(c.timer_);
  if (!c.out_.empty()) bump(counters_.outbound_dropped, c.out_.size());
  bool reusable = poller_ == nullptr || poller_->detach(c);
  if (!unfinished || c.dialed_) handler_.on_close(c, info);
  // The fd itself is closed in free_slot: with a completion backend an operation may be
  // prepared but not yet submitted under this fd number, which must not be reused by then.
  c.in_view_ = {};
  add_inbound_held(-static_cast<ptrdiff_t>(unread(c)));
  if (c.in_ != nullptr) {
    c.in_->clear();
    detach_input_if_empty(c);
  }
  c.context_ = nullptr;
  c.codec_word_ = 0;
  c.protocol_state_.reset();
  c.transport_.reset();
  bump(counters_.closed);
  bump(counters_.closed_by_reason[static_cast<int>(info.reason)]);
  counters_.open.store(counters_.open.load(std::memory_order_relaxed) - 1,
                       std::memory_order_relaxed);
  load_.fetch_sub(1, std::memory_order_relaxed);
  group_.open_conns.fetch_sub(1, std::memory_order_relaxed);
  if (!c.dialed_) {
    release_source(c.remote_addr());
    --served_open_;
    // The last accepted connection of the engine: loops waiting to close their dialed
    // connections at the end of a graceful drain look again.
    if (group_.served.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
        group_.graceful_stop.load(std::memory_order_acquire)) {
      group_.wake_loops();  // this loop may not have begun its own drain yet
    }
  }
  if (reusable) free_slot(c);
}

// The fd and the outbound queue are kept until here: a completion backend may still be
// sending from them.
void EventLoop::free_slot(Conn& c) {
  if (c.state_ != Conn::State::kClosed) {
    log(LogLevel::kError, "loop {}: freeing slot {} in state {}; ignored", index_, c.id_.index,
        static_cast<int>(c.state_));
    return;
  }
  if (c.fd_ >= 0) ::close(c.fd_);
  c.fd_ = -1;
  c.out_.clear();
  c.remote_.reset();
  c.state_ = Conn::State::kFree;
  free_slots_.push_back(c.id_.index);
}

}  // namespace ringnet
