// SPDX-License-Identifier: MIT
// Creating io_uring rings, and the probe behind Backend::kAuto.
#pragma once

#include <liburing.h>

#include <string>

#include "ringnet/options.h"
#include "ringnet/status.h"

namespace ringnet {

// Sets up `ring` with the best flags this kernel takes, in order:
//   SINGLE_ISSUER | DEFER_TASKRUN   (completion work runs only when we wait: no IPIs)
//   COOP_TASKRUN | TASKRUN_FLAG     (no interrupts; the flag says when to enter)
//   none
// always with a CQ four times the SQ. *mode names what was taken. Must run on the thread
// that will submit (SINGLE_ISSUER binds the ring to it).
Status setup_ring(io_uring* ring, unsigned entries, std::string* mode);

// Checks that io_uring is usable for the engine here: not disabled (by sysctl, seccomp,
// or RINGNET_DISABLE_IO_URING=1 in the environment), kernel 6.0+ (multishot receive),
// and a ring and provided-buffer ring of the sizes `opts` asks for can be set up (memory
// limits bite there, not on a toy ring). Returns the reason when it is not.
Status probe_io_uring(const Options& opts);

// True when the running kernel's version is at least major.minor.
bool kernel_at_least(int major, int minor);

}  // namespace ringnet
