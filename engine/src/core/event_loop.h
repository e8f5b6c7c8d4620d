// SPDX-License-Identifier: MIT
// EventLoop: one thread's reactor. It owns its connections (a slab of Conn slots reused
// with a generation number), their buffers (a per-loop BufferPool), its timers and its
// task queue, and drives a Poller.
//
// One iteration, in order:
//   1. poll      wait for I/O (not at all when tasks, reads or wakes are pending) and
//                dispatch it: accepts, reads -> on_traffic, writable edges -> flush
//   2. timers    run what is due (on_tick, accept back-off)
//   3. tasks     cross-thread work, at most Options::task_budget
//                (ConnHandle::wake/async_write/close arrive this way)
//   4. flush     one send per connection written to during 1-4 (write coalescing);
//                closing connections whose output drained are closed here
//
// Thread-safety: post(), wake_conn(), request_stop() and the stats getters may be called
// from any thread; everything else only on the loop's own thread.
//
// One class, defined by concern: event_loop.cc (the iteration, tasks, the flush),
// conn_lifecycle.cc (every transition of a connection's state), conn_limits.cc
// (backpressure, inbound caps), conn_timeouts.cc, drain.cc (stop and graceful shutdown),
// accept.cc (listeners, fd exhaustion). The engine above is a LoopGroup; the backend below
// is a Poller.
#pragma once

#include <atomic>
#include <cassert>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "core/loop_counters.h"
#include "core/poller.h"
#include "core/slab.h"
#include "core/task_queue.h"
#include "core/timer_queue.h"
#include "core/timer_wheel.h"
#include "net/listener.h"
#include "net/resolver.h"
#include "ringnet/buffer.h"
#include "ringnet/conn.h"
#include "ringnet/engine.h"
#include "ringnet/handler.h"
#include "ringnet/log.h"

namespace ringnet {

class LoopGroup;

class EventLoop {
 public:
  // index >= 0 for connection loops; -1 for the acceptor loop.
  EventLoop(LoopGroup& group, int index);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Before the thread starts: hands the loop a listening socket it will own.
  void assign_listener(int fd, int spec, const SockAddr& addr);
  // Thread body: sets up the poller on this thread (io_uring rings are per issuer thread)
  // and reports the result through `ready`; on success runs iterations until stopped,
  // then closes what it owns.
  void run(std::promise<Status>& ready);
  // After the thread was joined: run tasks still queued (late accepted sockets are closed),
  // then close the queue: try_post fails from now on.
  void drain_after_exit();

  // ---- any thread ----
  void post(TaskQueue::Task task) { tasks_.post(std::move(task)); }
  // False (task untouched) once the loop has exited for good (see drain_after_exit).
  bool try_post(TaskQueue::Task& task) { return tasks_.try_post(task); }
  void wake_conn(ConnId id);
  // Asks the loop to stop: it closes its listeners at once, runs `then` (on the loop
  // thread), lets queued output flush until Options::stop_flush_timeout, closes its
  // connections and leaves run().
  void request_stop(std::function<void()> then = {});
  int index() const { return index_; }
  const LoopCounters& counters() const { return counters_; }
  uint64_t queued_tasks() const { return tasks_.depth(); }
  // Connections assigned to this loop and not yet closed (least-connections balancer).
  std::atomic<int64_t>& load() { return load_; }

  bool in_loop_thread() const { return thread_id_ == std::this_thread::get_id(); }
  // Any thread: the loop has left run() (or never ran); work posted now runs only when
  // the engine is joined.
  bool exited() const { return exited_.load(std::memory_order_acquire); }
  // Closes this loop's listeners (Engine::stop_accepting; the stop paths). Loop thread.
  void close_listeners();

  // ---- loop thread ----
  // An accepted socket from Engine::listen() call `spec` (its transport, if any).
  void adopt(int fd, const SockAddr& peer, int spec);
  // Engine::dial, on this loop (load and open_conns already counted by the caller).
  void dial(const SockAddr& peer, const DialOptions& options);
  // ... to a host name: the connection waits in kConnecting, without a socket and under
  // the dial's deadline, while the resolver looks the name up; on_resolved goes on.
  void dial_name(const NamedAddress& name, const DialOptions& options);
  // The poller's report on a dial: 0 = connected, else the errno.
  void on_connect_result(Conn& c, int err);
  Conn* lookup(ConnId id);
  Conn* lookup_slot(uint32_t index);
  Listener* listener(uint32_t slot);
  TimerQueue& timers() { return timers_; }

  // Called by the poller (see poller.h).
  void accept_ready(Listener& listener);           // readiness: accept4 until EAGAIN
  void on_accepted(Listener& listener, int fd);     // completion: one accepted socket
  bool on_accept_error(Listener& listener, int err);
  void arm_accept_retry(Listener& listener);  // resume_accept after a back-off
  char* spill() { return spill_.get(); }
  static constexpr size_t kSpillSize = 64 * 1024;
  void on_wakeup() { task_signal_ = true; }  // the task eventfd fired (poller consumed it)
  // The wait returned with `events` ready, before any is dispatched: where the busy part
  // of an iteration starts (Options::metrics). One clock read, shared with the timeouts.
  void begin_batch(size_t events) {
    if (!metrics_on_) return;
    batch_start_ = Clock::now();
    batch_started_ = true;
    if (timeouts_on_) {
      now_tick_ = wheel_.tick_of(batch_start_);
      tick_fresh_ = true;
    }
    counters_.batch_events.record(events);
  }
  // A send syscall handed `bytes` to the kernel.
  void note_flush(uint64_t bytes) {
    if (metrics_on_) counters_.flush_bytes.record(bytes);
  }
  // ---- a connection's input: the loop is its only owner ----
  // Bytes the kernel handed over for `c` (the one entry point, both backends). `bytes`
  // need only live until this returns (spill area, provided buffer): they are shown to
  // on_traffic at once, and what the handler leaves is copied into c's buffer. A closing
  // connection drops them (counted in inbound_dropped).
  void on_input(Conn& c, std::string_view bytes);
  // The peer's orderly EOF (the one entry point, both backends).
  void on_peer_eof(Conn& c);
  // A transport's report (see transport.h): `established` ends the handshake and runs
  // on_open; `failed` closes c. False when c is no longer open for traffic.
  bool on_transport_result(Conn& c, TransportResult r);
  // Whether the poller should read from `c` now (false: paused, stopped, or EOF seen).
  // A closing connection is still read, to drop its input and notice EOF or a reset.
  static bool wants_input(const Conn& c) {
    if (c.eof_) return false;
    if (c.state_ == Conn::State::kClosing) return true;
    return c.state_ == Conn::State::kOpen && !c.read_paused_ && !c.input_stopped_;
  }
  void after_send(Conn& c);
  // Sends and settles the outcome: closes on a fatal error, or once a closing
  // connection drained. Never called from inside a handler callback.
  void send_or_close(Conn& c);
  void close_conn(Conn& c, CloseInfo info);
  // Timeouts (Options::idle/read/write_timeout): bytes moved for `c` now.
  void note_activity(Conn& c) {
    if (timeouts_on_) c.last_active_ = stamp(now_tick());
  }
  void set_idle_timeout(Conn& c, std::chrono::milliseconds timeout);
  // Engine::shutdown(): connections are still served, and close once done.
  bool graceful_draining() const { return graceful_; }
  // Conn::release(): the last hold on `c` is gone.
  void on_released(Conn& c);
  // Closes after a socket error: ECONNRESET/EPIPE are a reset, anything else an error.
  void close_on_error(Conn& c, int err) { close_conn(c, error_close_info(err)); }
  static CloseInfo error_close_info(int err);
  // The poller calls this for a slot detach() could not free at once, when it may.
  void free_slot(Conn& c);
  LoopCounters& counters_mut() { return counters_; }
  const Options& options() const;

  // Called by Conn.
  void mark_dirty(Conn& c);
  // ConnHandle::async_write, on this loop: refused (EAGAIN, counted) while the
  // connection's output is over the high watermark.
  Status write_from_handle(ConnId id, std::string_view bytes);
  void begin_close(Conn& c, CloseReason reason);
  Status flush_now(Conn& c);
  size_t write_direct(Conn& c, std::span<const std::string_view> parts) {
    return poller_->write_direct(c, parts);
  }

 private:
  Status init();
  // A fresh slot for `fd` (not yet watched by the poller), in state `state`.
  Conn& new_slot(int fd, const SockAddr& peer, Conn::State state);
  // Gives back an accepted connection's place under max_connections_per_source.
  void release_source(const SockAddr& peer);
  void iterate();
  void flush_dirty();
  // What on_input does with plain bytes (after the transport, if any).
  void on_plain_input(Conn& c, std::string_view bytes);
  // Bytes from the socket of a connection with a transport: its plaintext goes on as
  // plain input, its handshake progress to on_transport_result.
  void on_transport_input(Conn& c, std::string_view bytes);
  // Gives c the transport `t` and starts its handshake (under its timeout). False when
  // the transport failed at once (c is closed then).
  bool start_transport(Conn& c);
  // The handshake is done: the usual timeouts start, the handler hears on_open.
  void established(Conn& c);
  // The transport failed: its alert is sent if it can be at once, c closes.
  void transport_failed(Conn& c, int error);
  // Why a connection whose handshake did not finish closed, as its handler (a dial's)
  // hears it.
  static CloseInfo unfinished_close_info(CloseInfo info, bool dialed);
  static bool never_connected(CloseReason r) {
    return r == CloseReason::kConnectFailed || r == CloseReason::kResolveFailed ||
           r == CloseReason::kHandshakeFailed || r == CloseReason::kHandshakeTimeout;
  }
  // Input c holds that the handler has not taken: unread bytes, a handshake still
  // running, or an unfinished record inside the transport. Without any, c is at a frame
  // boundary (where a graceful drain stops reading).
  static bool holds_input(const Conn& c) {
    return c.in_ != nullptr || c.handshaking_ ||
           (c.transport_ != nullptr && c.transport_->has_pending_input());
  }
  // Shows c's unread input to on_traffic: `fresh` (bytes from a transient area, only when
  // c's buffer is empty) or the buffer. Then keeps exactly what the handler left.
  void run_traffic(Conn& c, std::string_view fresh = {});
  // Runs on_traffic for c from a loop task (after the peer's EOF, for input it left).
  void schedule_traffic(Conn& c) { wake_conn(c.id_); }
  void apply_action(Conn& c, Action action);
  // The one place that decides an open connection is finished: the peer's EOF, or the
  // drain stopped its input; nothing holds it; input the handler can still take was
  // shown. Then it closes (flushing first).
  void settle(Conn& c);
  // Graceful drain: read nothing more from c (it is at a frame boundary).
  void stop_input(Conn& c);
  void begin_shutdown();
  // Graceful drain, one poll after it began (so what the kernel already held was read):
  // connections at a frame boundary stop reading, and those with nothing to do close.
  void drain_sweep();
  // Graceful drain, once per iteration before the flush: true when this loop has nothing
  // more to wait for (then its dialed connections are closing).
  bool drain_step(bool sweep);
  // Graceful drain: no accepted connection is left on any loop.
  bool served_all() const;
  void close_dialed();
  // The dial cannot be made (the loop is stopping): it still ends in on_close.
  void fail_dial(const SockAddr& peer, const DialOptions& options, CloseReason reason, int err);
  // The resolver's answer for dial_name's connection `id` (if it is still waiting).
  void on_resolved(ConnId id, const SockAddr& peer, int gai_error);
  // The wheel tick of "now", read from the clock at most once per iteration.
  uint64_t now_tick() {
    if (!tick_fresh_) {
      now_tick_ = wheel_.tick_of(Clock::now());
      tick_fresh_ = true;
    }
    return now_tick_;
  }
  // A connection keeps ticks as 32-bit stamps (0: none), 497 days of 10 ms ticks, to stay
  // small. at() gives a stamp's tick back, right within 2^31 ticks (248 days) of `now`:
  // every timeout is capped at kMaxTimeoutTicks, far below that.
  static constexpr uint64_t kMaxTimeoutTicks = uint64_t{1} << 30;
  static uint32_t stamp(uint64_t tick) {
    const auto s = static_cast<uint32_t>(tick);
    return s != 0 ? s : 1;  // one tick late once in 2^32 rather than "none"
  }
  static uint64_t at(uint32_t stamp, uint64_t now) {
    const auto delta = static_cast<int32_t>(stamp - static_cast<uint32_t>(now));
    return now + static_cast<uint64_t>(static_cast<int64_t>(delta));
  }
  static uint32_t capped_ticks(std::chrono::nanoseconds d) {
    return d.count() <= 0 ? 0u
                          : static_cast<uint32_t>(
                                std::min(TimerWheel::ticks_for(d), kMaxTimeoutTicks));
  }
  // A connection's unread-input Buffer exists only while it holds bytes (so `c.in_ !=
  // nullptr` means "has unread input"): an idle connection keeps 8 bytes for it, not 40.
  // Spare ones wait here for the next connection that needs one.
  Buffer& attach_input(Conn& c) {
    if (c.in_ == nullptr) {
      if (spare_inputs_.empty()) {
        c.in_ = std::make_unique<Buffer>(&pool_);
      } else {
        c.in_ = std::move(spare_inputs_.back());
        spare_inputs_.pop_back();
      }
    }
    return *c.in_;
  }
  void detach_input_if_empty(Conn& c) {
    if (c.in_ == nullptr || !c.in_->empty()) return;
    c.in_->release_if_empty();  // its storage goes back to the pool
    if (spare_inputs_.size() < kSpareInputs) spare_inputs_.push_back(std::move(c.in_));
    c.in_.reset();
  }
  static std::string_view input_view(const Conn& c) {
    return c.in_ != nullptr ? c.in_->view() : std::string_view();
  }
  static size_t unread(const Conn& c) { return c.in_ != nullptr ? c.in_->readable_bytes() : 0; }
  // Arms c's wheel node at its earliest deadline unless it already fires no later.
  void update_timer(Conn& c);
  void on_conn_timer(Conn& c);
  void start_linger(Conn& c);
  void track_partial_input(Conn& c);
  void track_pending_output(Conn& c);
  void check_backpressure(Conn& c);
  // Closes c when it holds more unread input than Options::max_inbound_buffer, or when
  // this loop's connections together hold more than its share of max_inbound_total;
  // true then.
  bool check_inbound_limit(Conn& c);
  bool enforce_inbound_budget(Conn& c);  // true when c was closed
  void add_inbound_held(ptrdiff_t delta) {
    if (delta == 0) return;
    inbound_held_ += static_cast<size_t>(delta);
    counters_.inbound_held.store(inbound_held_, std::memory_order_relaxed);
  }
  // Whether closing c (its output sent, no EOF seen) should linger: the close was the
  // handler's or the drain's decision, and the peer may still be sending what nobody will
  // read (bytes in c's buffer or in the kernel, input that came while c was closing).
  static bool lingers_on_close(const Conn& c);
  void shutdown_all();
  bool handle_fd_exhaustion(Listener& l, int err);

  LoopGroup& group_;
  EventHandler& handler_;
  int index_;
  std::thread::id thread_id_;
  std::unique_ptr<Poller> poller_;
  TaskQueue tasks_;
  TimerQueue timers_;
  TimerWheel wheel_;                    // connection timeouts
  bool timeouts_on_ = false;            // any timeout option set (else no clock reads)
  bool metrics_on_ = false;             // Options::metrics: histograms recorded
  bool batch_started_ = false;          // begin_batch ran this iteration
  Clock::time_point batch_start_;
  bool tick_fresh_ = false;             // now_tick_ read since this iteration's poll
  uint64_t now_tick_ = 0;
  uint32_t idle_ticks_ = 0, read_ticks_ = 0, write_ticks_ = 0;  // from Options
  BufferPool pool_;
  std::unique_ptr<char[]> spill_;
  Buffer transport_plain_{&pool_};      // a transport's plaintext of one arrival
  Slab<Conn> slots_;                    // stable addresses; never shrinks while running
  static constexpr size_t kSpareInputs = 256;
  std::vector<std::unique_ptr<Buffer>> spare_inputs_;  // see attach_input()
  std::vector<uint32_t> free_slots_;
  std::vector<Conn*> dirty_;            // written to this iteration
  std::vector<std::unique_ptr<Listener>> listeners_;
  int spare_fd_ = -1;                   // reserved fd for the EMFILE trick
  bool exhausted_logged_ = false;
  bool stopping_ = false;               // leave run() after this iteration
  bool draining_ = false;               // stop requested: flushing until drain_deadline_
  bool graceful_ = false;               // shutdown(deadline): still serving while draining
  bool sweep_armed_ = false;            // graceful drain: sweep after the next poll
  bool drain_swept_ = false;            // ... done: input stops at frame boundaries
  int64_t served_open_ = 0;             // accepted connections not yet closed
  size_t inbound_held_ = 0;             // unread bytes in this loop's connections' buffers
  size_t inbound_budget_ = 0;           // this loop's share of max_inbound_total (0: none)
  Conn* in_traffic_ = nullptr;          // the connection whose on_traffic is running
  Clock::time_point drain_deadline_;
  bool task_signal_ = false;            // eventfd fired since tasks last ran
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> exited_{false};
  std::atomic<int64_t> load_{0};
  LoopCounters counters_;
  LogRateLimit inbound_log_limit_{5};
};

// Debug-build check that loop-owned state is touched on its own thread.
#ifndef NDEBUG
#define RINGNET_ASSERT_IN_LOOP(loop) assert((loop)->in_loop_thread())
#else
#define RINGNET_ASSERT_IN_LOOP(loop) ((void)0)
#endif

}  // namespace ringnet
