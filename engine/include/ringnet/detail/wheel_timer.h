// SPDX-License-Identifier: MIT
// The node a timer-wheel entry embeds in its owner (a Conn): linked into one wheel slot
// while armed. Engine-internal; public only because Conn holds one.
#pragma once

#include <cstdint>

#include "ringnet/config.h"

namespace ringnet::detail {

struct WheelTimer {
  WheelTimer* prev = nullptr;
  WheelTimer* next = nullptr;
  uint64_t expires = 0;   // absolute wheel tick it fires at; 0 = not armed
  void* owner = nullptr;  // what the fire callback acts on
  bool armed() const { return expires != 0; }
};

}  // namespace ringnet::detail
