// SPDX-License-Identifier: MIT
// Thin, errno-preserving wrappers over the socket calls the engine makes.
#pragma once

#include "ringnet/address.h"
#include "ringnet/options.h"
#include "ringnet/status.h"

namespace ringnet::sockets {

// Creates a non-blocking, close-on-exec listening socket bound to `addr`.
// `reuse_port` sets SO_REUSEPORT (one listener per loop). On success *fd is set.
Status open_listener(const SockAddr& addr, const Options& opts, bool reuse_port, int* fd);

// Applies per-connection options (TCP_NODELAY, keepalive, buffer sizes) to an accepted or
// connected socket. Failures are logged at debug level and otherwise ignored: a socket
// option the kernel refuses must not cost the connection.
void tune_accepted(int fd, int family, const Options& opts);

SockAddr local_address(int fd);
// Bytes received by the kernel and not yet read (FIONREAD); 0 when it cannot tell.
size_t unread_bytes(int fd);
// Unlinks a Unix socket path left by a previous run if nothing listens on it.
void remove_stale_unix_path(const SockAddr& addr);

}  // namespace ringnet::sockets
