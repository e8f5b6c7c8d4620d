// SPDX-License-Identifier: MIT
// Poller: the seam between the event loop and a kernel I/O interface.
//
// The loop owns connections, their inbound and outbound bytes, their end-of-stream state,
// timers and tasks; a poller only moves bytes and reports what happened, by calling back
// into the loop, one entry point per kind of news:
//
//   loop.accept_ready(listener)          a listener has connections waiting (readiness)
//   loop.on_accepted(listener, fd)       a connection was accepted (completion)
//   loop.on_input(conn, bytes)           bytes arrived (valid only during the call)
//   loop.on_peer_eof(conn)               orderly EOF
//   loop.after_send(conn)                a completed send drained what it could
//   loop.close_conn(conn, info)          reset / error found while reading or completing
//
// EventLoop::wants_input(conn) says whether to go on reading a connection: a poller never
// decides that from its own state, and never holds input back from the loop.
//
// Poller::send never closes anything itself: it may run inside Conn::flush() from a
// handler, where closing (and on_close) must not happen under the handler's feet.
//
// A readiness poller (epoll) does the syscalls itself when told an fd is ready; a
// completion poller (io_uring) keeps operations in flight and reports their results the
// same way. Either way the engine, not the poller, decides what is read and when to close.
#pragma once

#include <span>
#include <string_view>

#include "ringnet/conn.h"
#include "ringnet/status.h"

namespace ringnet {

struct Listener;

class Poller {
 public:
  virtual ~Poller() = default;
  virtual const char* name() const = 0;

  // Watches the loop's task-queue eventfd.
  virtual Status add_wakeup(int fd) = 0;
  virtual Status add_listener(Listener& listener) = 0;
  virtual void remove_listener(Listener& listener) = 0;
  // Starts watching/reading a freshly adopted connection.
  virtual Status add_conn(Conn& conn) = 0;
  // A dialed connection (kConnecting, fd a fresh non-blocking socket): start connecting
  // to conn.remote_addr() and watching it. The outcome comes later through
  // loop.on_connect_result(conn, errno or 0) — never from inside this call; a failure
  // known at once is returned as an errno instead (0: under way).
  virtual int start_connect(Conn& conn) = 0;
  // Starts accepting on a listener again after a back-off.
  virtual void resume_accept(Listener& listener) = 0;
  // Out of descriptors with no connection waiting: accept again when one arrives, not
  // before (an accept tried now fails at once the same way: the kernel reserves the
  // descriptor before it looks at the queue).
  virtual void accept_when_ready(Listener& listener) = 0;
  // Sends what the connection's outbound queue holds (now, or by queueing an operation).
  // Returns 0, or the errno of a fatal socket error for the caller to close with.
  virtual int send(Conn& conn) = 0;
  // A large write with nothing queued before it: hand it to the kernel right away, saving
  // the copy into the outbound queue. Returns the bytes taken (0: queue them all). Only
  // readiness backends can; a completion backend must not send from the caller's memory.
  virtual size_t write_direct(Conn& conn, std::span<const std::string_view> parts) {
    (void)conn;
    (void)parts;
    return 0;
  }
  // Stop taking input from the connection (backpressure, a drain) / take it again. Bytes
  // already on their way (a completion in flight) may still be delivered after the pause;
  // the loop shows them. resume_reading must read what waits in the socket.
  virtual void pause_reading(Conn& conn) { (void)conn; }
  virtual void resume_reading(Conn& conn) { (void)conn; }
  // At shutdown, just before the connection is closed: one last non-blocking attempt to
  // hand its queued bytes to the kernel.
  virtual void send_final(Conn& conn) = 0;
  // Stops all I/O on the connection before its fd is closed. Returns true when the slot
  // may be reused at once (no operation still refers to it).
  virtual bool detach(Conn& conn) = 0;
  // Before the loop thread exits: let operations still in flight (cancellations) finish,
  // so closed sockets really close (a pending io_uring op holds its file open).
  virtual void drain_before_exit() {}
  // Waits up to timeout_ms (-1 = no limit) and dispatches what happened to the loop.
  virtual Status poll(int timeout_ms) = 0;
};

}  // namespace ringnet
