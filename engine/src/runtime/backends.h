// SPDX-License-Identifier: MIT
// The two backends, chosen and built: the one place above core/ that knows both.
#pragma once

#include <memory>

#include "core/poller.h"
#include "ringnet/options.h"
#include "ringnet/status.h"

namespace ringnet {

class EventLoop;

// Turns Backend::kAuto into the backend this kernel supports (one log line when falling
// back); kIoUring fails here, clearly, where io_uring is unavailable.
Status resolve_backend(Options& opts);

// The poller for `loop`, set up on the calling thread (the loop's own: an io_uring ring
// belongs to its issuer). opts.backend is resolved already.
Status make_poller(EventLoop& loop, const Options& opts, std::unique_ptr<Poller>* out);

}  // namespace ringnet
