// SPDX-License-Identifier: MIT
/// @file
/// Conn: one connection, owned by one event loop for its whole life.
///
/// States: a dial starts kConnecting, an accepted connection kOpen (on_open); a close
/// the handler, a timeout or the drain decides on makes it kClosing, which sends what is
/// queued (and, if the peer may still be sending, sends FIN first and lingers until its
/// EOF) before kClosed (on_close); a reset, an error or a stop deadline closes at once.
/// The full diagram, with the function of each transition, heads
/// engine/src/core/conn_lifecycle.cc.
///
/// Input, owned by the loop: the bytes the kernel hands over go through one entry point
/// (EventLoop::on_input) to on_traffic at once, whatever the backend, even while reading
/// is paused; what the handler leaves unread is kept and shown again with the next bytes.
/// The peer's EOF has one entry point too (EventLoop::on_peer_eof). A connection whose
/// peer finished stays kOpen, for writing, while work holds it (hold()); unread input is
/// shown again as long as the handler keeps taking some of it; then it closes
/// (kPeerClosed). Reading stops while output is over the high watermark (backpressure),
/// after the peer's EOF, and, during a graceful drain, at a frame boundary (no unread
/// input), after which the connection closes once nothing holds it.
///
/// Reading: inside on_traffic, peek/next/discard give views of the inbound bytes without
/// copying. Views stay valid until on_traffic returns (or until the next read call that
/// says otherwise); unread bytes are kept for the next on_traffic.
///
/// Writing: write/writev append to the outbound queue; the loop flushes every connection
/// written to in one iteration once, at the end of that iteration (write coalescing), and
/// flushes leftovers when the socket becomes writable again.
///
/// Thread-safety: every method is loop-thread only, except handle(), which returns a
/// ConnHandle usable from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ringnet/address.h"
#include "ringnet/buffer.h"
#include "ringnet/config.h"
#include "ringnet/detail/peer_address.h"
#include "ringnet/detail/wheel_timer.h"
#include "ringnet/handler.h"
#include "ringnet/status.h"
#include "ringnet/transport.h"

namespace ringnet {

class EventLoop;

/// Identifies a connection across threads: slot index and a generation that changes every
/// time the slot is reused, so a stale id never reaches a newer connection.
struct ConnId {
  /// The connection's slot in its loop.
  uint32_t index = 0;
  /// Changes every time the slot is reused.
  uint32_t generation = 0;
  /// Both fields in one word (generation high, index low).
  uint64_t pack() const { return (uint64_t{generation} << 32) | index; }
  /// The inverse of pack().
  static ConnId unpack(uint64_t v) {
    return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)};
  }
  /// Same slot and same generation.
  bool operator==(const ConnId&) const = default;
};
static_assert(sizeof(ConnId) == 8);

/// Per-connection state of a protocol layer: a decoder's checkpoint between arrivals, so a
/// frame that trickles in is never parsed again from its start. The connection owns it and
/// destroys it when it closes, right after on_close.
class RINGNET_EXPORT ConnState {
 public:
  virtual ~ConnState() = default;
};

/// Completion of an async write: ok when the bytes were queued on the connection (and a
/// flush started), or an error when the connection had closed.
using WriteCallback = std::function<void(Status)>;

/// A copyable, thread-safe reference to a connection. Operations on a connection that has
/// closed fail softly (the callback gets an error; wake() is ignored). A handle must not be
/// used after its Engine is destroyed (it points at the engine's loop). Work posted before
/// wait() returns still runs (wait() drains the loops' queues: async_write completions
/// then report an error); work posted after wait() returned never runs.
class RINGNET_EXPORT ConnHandle {
 public:
  ConnHandle() = default;
  /// Made by the engine (Conn::handle()); a default-constructed handle is invalid.
  ConnHandle(EventLoop* loop, ConnId id) : loop_(loop), id_(id) {}

  /// Any thread. Copies `bytes`, queues them on the connection's loop, calls `done` there.
  /// Refused (code EAGAIN, counted in EngineStats::writes_refused) while the connection's
  /// queued output is over Options::outbound_high_watermark: a peer that does not read
  /// cannot grow the server's memory this way either. Retry after on_backpressure(false).
  void async_write(std::string_view bytes, WriteCallback done = {}) const;
  /// Any thread. Schedules on_traffic for the connection even without new bytes.
  void wake() const;
  /// Any thread. Asks the loop to close the connection (flushing first).
  void close() const;
  /// Any thread. Runs `task` on the connection's loop thread with the connection, or with
  /// nullptr when it has closed meanwhile (or is closing: it takes no more writes). What
  /// the task writes is flushed at the end of that loop iteration, as from a callback.
  void dispatch(std::function<void(Conn*)> task) const;

  /// False for a default-constructed handle.
  bool valid() const { return loop_ != nullptr; }
  /// The connection this handle refers to.
  ConnId id() const { return id_; }

 private:
  EventLoop* loop_ = nullptr;
  ConnId id_;
};

/// One connection, owned by one event loop; handed to every EventHandler callback.
/// Threads: every method is loop-thread only (the loop that owns the connection), except
/// handle(), which returns a ConnHandle usable from any thread.
class RINGNET_EXPORT Conn {
 public:
  /// kConnecting: dialed, connect() not finished (no on_open yet; writes are refused).
  enum class State : uint8_t { kFree, kConnecting, kOpen, kClosing, kClosed };

  // ---- inbound (loop thread only) ----
  /// Number of inbound bytes not yet consumed.
  size_t inbound_buffered() const { return in_view_.size(); }
  /// Up to n bytes from the front without consuming them (all bytes if n is npos).
  std::string_view peek(size_t n = std::string_view::npos) const {
    return in_view_.substr(0, n);
  }
  /// Up to n bytes from the front, consumed.
  std::string_view next(size_t n = std::string_view::npos) {
    std::string_view v = in_view_.substr(0, n);
    in_view_.remove_prefix(v.size());
    return v;
  }
  /// Drops up to n bytes from the front; returns how many were dropped.
  size_t discard(size_t n = std::string_view::npos) { return next(n).size(); }

  // ---- outbound (loop thread only) ----
  /// Queues bytes; they are sent at the end of this loop iteration.
  Status write(std::string_view bytes);
  /// write() of several parts, in order, as one call.
  Status writev(std::span<const std::string_view> parts);
  /// Sends queued bytes now rather than at the end of the iteration.
  Status flush();
  /// Bytes queued and not yet accepted by the kernel.
  size_t outbound_buffered() const { return out_.size(); }
  /// True once Engine::shutdown() began a graceful drain: finish what was received, stop
  /// keep-alive (e.g. answer with "Connection: close"); the engine closes the connection
  /// as soon as it is idle.
  bool draining() const;
  /// True while reading is paused by backpressure (see EventHandler::on_backpressure).
  bool read_paused() const { return read_paused_; }
  /// Convenience for the loop thread; from other threads use handle().async_write.
  void async_write(std::string_view bytes, WriteCallback done = {}) {
    handle().async_write(bytes, std::move(done));
  }
  /// handle().wake(): schedules on_traffic even without new bytes.
  void wake() { handle().wake(); }

  /// Flushes what is queued, then closes. on_close follows with kLocalClose.
  void close();
  /// Closes after an answer to a peer that may still be sending (an error reply to a
  /// request whose body is still coming): flushes what is queued, sends FIN, then reads
  /// and drops input until the peer closes or `linger` passes, and only then closes.
  /// Closing at once with input unread makes the kernel answer with RST, which can destroy
  /// the reply before the peer has read it. on_close follows with kLocalClose.
  void close_lingering(std::chrono::milliseconds linger = std::chrono::seconds(2));

  /// Work for this connection is in flight elsewhere (a WorkerPool job does this for you,
  /// or your own async call): until the matching release(), neither a graceful drain nor
  /// the peer's EOF (a half-close) closes the connection, so the answer still gets out.
  /// A hold never outlives the connection; the drain deadline still closes it. Loop thread.
  void hold() { ++holds_; }
  /// Ends one hold(). Loop thread.
  void release();
  /// Holds not yet released.
  uint32_t holds() const { return holds_; }

  // ---- identity ----
  /// A copyable reference to this connection for other threads.
  ConnHandle handle() const;
  /// The connection's id (what handle() refers to).
  ConnId id() const { return id_; }
  /// The socket's file descriptor (do not close it).
  int fd() const { return fd_; }
  /// The index of the loop that owns the connection.
  int loop_index() const;
  /// Asks the kernel (getsockname): not stored, so an idle connection stays small.
  SockAddr local_addr() const;
  /// A copy: the connection keeps its peer in a compact form.
  SockAddr remote_addr() const {
    return remote_.length() == 0 ? SockAddr() : SockAddr(remote_.raw(), remote_.length());
  }
  /// Where the connection is in its life (see State).
  State state() const { return state_; }
  /// True for a connection this side opened with Engine::dial (a client), false for one
  /// a listener accepted.
  bool dialed() const { return dialed_; }

  /// A slot for the application; the engine never reads it. Clear it in on_close.
  void* context() const { return context_; }
  /// Sets context().
  void set_context(void* ctx) { context_ = ctx; }
  /// A word of per-connection state for a protocol adapter layered over the handler (the
  /// HTTP adapter remembers "100 Continue sent" here), so the application keeps context().
  /// Zero when the connection opens.
  uint32_t codec_word() const { return codec_word_; }
  /// Sets codec_word().
  void set_codec_word(uint32_t w) { codec_word_ = w; }
  /// A protocol adapter's per-connection state (see ConnState); null until one is set.
  /// Owned by the connection, destroyed after on_close. Loop thread.
  ConnState* protocol_state() const { return protocol_state_.get(); }
  /// Sets protocol_state(), destroying the previous one.
  void set_protocol_state(std::unique_ptr<ConnState> state) { protocol_state_ = std::move(state); }
  /// The transport under this connection (TLS: see `<ringnet/proto/tls.h>`'s tls_info),
  /// or nullptr for plain bytes. Loop thread.
  Transport* transport() const { return transport_.get(); }

  // ---- timeouts (loop thread only) ----
  /// This connection's idle timeout, replacing Options::idle_timeout (zero: none), counted
  /// from now; e.g. a short keep-alive timeout between HTTP requests.
  void set_idle_timeout(std::chrono::milliseconds timeout);

  /// Engine-internal construction; applications receive Conn& from callbacks only.
  explicit Conn(EventLoop* loop, BufferPool* pool) : loop_(loop), out_(pool) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

 private:
  friend class EventLoop;
  friend class EpollPoller;
  friend class UringPoller;

  // Laid out for size: an idle connection costs what this object costs (see
  // bench/README "Memory per idle connection"), so pointers first, then 4-byte fields,
  // then flags as bits.
  EventLoop* loop_;
  ConnId id_;
  void* context_ = nullptr;
  std::unique_ptr<ConnState> protocol_state_;  // see protocol_state()
  std::unique_ptr<Transport> transport_;       // see transport(); reset when it closes
  // Timeouts: one wheel node serves them all (see Options::idle_timeout); it is armed at
  // the earliest deadline and re-checks the others when it fires.
  detail::WheelTimer timer_;
  std::string_view in_view_;    // unread inbound bytes shown to the handler
  std::unique_ptr<Buffer> in_;  // unread bytes between arrivals; only while there are any
  OutboundQueue out_;
  detail::PeerAddress remote_;
  int fd_ = -1;
  uint32_t codec_word_ = 0;     // scratch for the protocol layer (see codec_word())
  uint32_t holds_ = 0;          // hold() minus release(): work in flight elsewhere
  int send_error_ = 0;          // fatal send error seen by flush(); closed at iteration end
  // Ticks of the loop's timer wheel, kept mod 2^32 (see EventLoop::stamp): 0 means none.
  uint32_t idle_ticks_ = 0;     // 0: no idle timeout
  uint32_t last_active_ = 0;    // stamp of the last bytes in or out
  uint32_t read_since_ = 0;     // stamp since unconsumed inbound bytes wait
  uint32_t write_since_ = 0;    // stamp since queued output waits
  uint32_t deadline_ = 0;       // stamp a dial (kConnecting) or a lingering close gives up
  uint16_t linger_ticks_ = 0;   // close_lingering asked for (0: plain close)
  State state_ = State::kFree;
  uint8_t close_reason_ = static_cast<uint8_t>(CloseReason::kLocalClose);  // see below
  bool dirty_ : 1 = false;          // on the loop's flush list this iteration
  bool readable_ : 1 = false;       // on the loop's still-readable list (read budget hit)
  bool eof_ : 1 = false;            // peer sent FIN (read returned 0): no more input
  bool read_paused_ : 1 = false;    // backpressure: output over the high watermark
  bool input_stopped_ : 1 = false;  // graceful drain: no more input read (frame boundary)
  bool read_to_eagain_ : 1 = false; // epoll: a short read does not prove the socket drained
  bool input_refused_ : 1 = false;  // input came while closing: the peer may still send
  bool lingering_ : 1 = false;      // close_lingering: FIN sent, dropping input until EOF
  bool dialed_ : 1 = false;         // opened by Engine::dial
  bool handshaking_ : 1 = false;    // kOpen, the transport's handshake running: no on_open yet

  Status seal(std::span<const std::string_view> parts);  // write() through the transport
  // Why a deferred (kClosing) close closes, kept in a byte.
  CloseReason close_reason() const { return static_cast<CloseReason>(close_reason_); }
  void set_close_reason(CloseReason r) { close_reason_ = static_cast<uint8_t>(r); }
};

}  // namespace ringnet
