// SPDX-License-Identifier: MIT
// Listener: a bound listening socket owned by one loop (the acceptor, or each loop in
// SO_REUSEPORT mode), and the accept loop that drains it.
#pragma once

#include "ringnet/address.h"

namespace ringnet {

struct Listener {
  int fd = -1;
  int spec = 0;        // index of the Engine::listen() address it serves
  uint32_t slot = 0;   // index in its loop's listener table (poller tag)
  SockAddr addr;       // bound address (port resolved)
  bool retry_armed = false;  // a back-off retry timer is pending
};

}  // namespace ringnet
