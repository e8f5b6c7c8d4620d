// SPDX-License-Identifier: MIT
// Printable names of the public enums.
#include "ringnet/handler.h"
#include "ringnet/options.h"

namespace ringnet {

const char* close_reason_name(CloseReason reason) {
  switch (reason) {
    case CloseReason::kPeerClosed: return "peer_closed";
    case CloseReason::kReset: return "reset";
    case CloseReason::kError: return "error";
    case CloseReason::kLocalClose: return "local_close";
    case CloseReason::kShutdown: return "shutdown";
    case CloseReason::kIdleTimeout: return "idle_timeout";
    case CloseReason::kReadTimeout: return "read_timeout";
    case CloseReason::kWriteTimeout: return "write_timeout";
    case CloseReason::kConnectFailed: return "connect_failed";
    case CloseReason::kResolveFailed: return "resolve_failed";
    case CloseReason::kHandshakeFailed: return "handshake_failed";
    case CloseReason::kHandshakeTimeout: return "handshake_timeout";
  }
  return "unknown";
}

const char* balancer_name(Balancer b) {
  switch (b) {
    case Balancer::kRoundRobin: return "round-robin";
    case Balancer::kLeastConnections: return "least-connections";
    case Balancer::kSourceHash: return "source-hash";
  }
  return "unknown";
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kAuto: return "auto";
    case Backend::kEpoll: return "epoll";
    case Backend::kIoUring: return "io_uring";
  }
  return "unknown";
}

}  // namespace ringnet
