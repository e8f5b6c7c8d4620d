// SPDX-License-Identifier: MIT
#include "uring/uring_setup.h"

#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "uring/buffer_ring.h"

namespace ringnet {

Status setup_ring(io_uring* ring, unsigned entries, std::string* mode) {
  struct Attempt {
    unsigned flags;
    const char* name;
  };
  const Attempt attempts[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single_issuer+defer_taskrun"},
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, "coop_taskrun"},
      {0, "plain"},
  };
  int rc = 0;
  for (const Attempt& a : attempts) {
    io_uring_params params{};
    params.flags = a.flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    params.cq_entries = entries * 4;
    rc = io_uring_queue_init_params(entries, ring, &params);
    if (rc == 0) {
      *mode = a.name;
      return Status::ok();
    }
    if (rc != -EINVAL) break;  // EPERM/ENOSYS/ENOMEM: no flag choice will help
  }
  return Status::from_errno(-rc, "io_uring_setup");
}

bool kernel_at_least(int major, int minor) {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int ma = 0;
  int mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

Status probe_io_uring(const Options& opts) {
  if (const char* off = std::getenv("RINGNET_DISABLE_IO_URING"); off != nullptr && *off != '\0' &&
                                                                 std::strcmp(off, "0") != 0) {
    return Status::invalid("io_uring disabled by RINGNET_DISABLE_IO_URING");
  }
  if (!kernel_at_least(6, 0)) {
    return Status::invalid("kernel older than 6.0 (no multishot receive)");
  }
  io_uring ring{};
  std::string mode;
  if (Status s = setup_ring(&ring, opts.uring_entries, &mode); !s) return s;
  Status result;
  {
    BufferRing probe_ring;  // destroyed (unregistered) before the ring exits
    result = probe_ring.init(&ring, 0, opts.uring_buffer_count, opts.uring_buffer_size);
  }
  io_uring_queue_exit(&ring);
  return result;
}

}  // namespace ringnet
