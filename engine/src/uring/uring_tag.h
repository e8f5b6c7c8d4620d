// SPDX-License-Identifier: MIT
// The io_uring user_data layout, defined once. Every submission carries a tag that says
// what it was for and, for connections, which incarnation of the slot it belongs to, so a
// completion that arrives after its connection closed never touches a newer one.
//
//   63      56 55                  32 31                          0
//   +---------+----------------------+-----------------------------+
//   |   op    |   slot index (24)    |   generation (32)           |   recv, send, connect,
//   |         |                      |                             |   files (fixed table)
//   |   op    |   listener slot      |   0 (1: readiness poll)     |   accept
//   |   op    |   0                  |   0                         |   wakeup, cancel
//   +---------+----------------------+-----------------------------+
#pragma once

#include <cstdint>

#include "ringnet/conn.h"

namespace ringnet {

enum class UringOp : uint8_t { kWake = 1, kAccept, kRecv, kSend, kCancel, kConnect, kFiles };

struct UringTag {
  UringOp op;
  uint32_t index;       // 24 bits used
  uint32_t generation;

  static constexpr uint32_t kMaxIndex = (1u << 24) - 1;

  uint64_t pack() const {
    return (uint64_t{static_cast<uint8_t>(op)} << 56) | (uint64_t{index & kMaxIndex} << 32) |
           generation;
  }
  static UringTag unpack(uint64_t v) {
    return {static_cast<UringOp>(v >> 56), static_cast<uint32_t>(v >> 32) & kMaxIndex,
            static_cast<uint32_t>(v)};
  }
  static UringTag for_conn(UringOp op, ConnId id) { return {op, id.index, id.generation}; }
};
static_assert(sizeof(uint64_t) == 8);

// kAccept's generation when the operation is the poll that waits for a connection while
// the process is out of descriptors (UringPoller::accept_when_ready).
constexpr uint32_t kAcceptPollGen = 1;

}  // namespace ringnet
