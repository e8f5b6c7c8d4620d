// SPDX-License-Identifier: MIT
#include "runtime/backends.h"

#include "core/event_loop.h"
#include "epoll/poller_epoll.h"
#include "ringnet/log.h"
#include "uring/poller_uring.h"
#include "uring/uring_setup.h"

namespace ringnet {

Status resolve_backend(Options& opts) {
  if (opts.backend == Backend::kEpoll) return Status::ok();
  Status probe = probe_io_uring(opts);
  if (probe.is_ok()) {
    opts.backend = Backend::kIoUring;
    return Status::ok();
  }
  if (opts.backend == Backend::kIoUring) {
    return Status::invalid("backend io_uring unavailable: " + probe.message());
  }
  log(LogLevel::kInfo, "backend auto: io_uring unavailable ({}); using epoll", probe.message());
  opts.backend = Backend::kEpoll;
  return Status::ok();
}

Status make_poller(EventLoop& loop, const Options& opts, std::unique_ptr<Poller>* out) {
  if (opts.backend == Backend::kIoUring) {
    auto uring = std::make_unique<UringPoller>(loop);
    if (Status s = uring->init(opts); !s) return s;
    if (loop.index() <= 0) {
      log(LogLevel::kDebug, "loop {}: io_uring ring mode {}", loop.index(), uring->mode());
    }
    *out = std::move(uring);
    return Status::ok();
  }
  auto epoll = std::make_unique<EpollPoller>(loop);
  if (Status s = epoll->init(); !s) return s;
  *out = std::move(epoll);
  return Status::ok();
}

}  // namespace ringnet
