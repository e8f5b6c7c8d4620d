// SPDX-License-Identifier: MIT
#include "ringnet/status.h"

#include <cstring>
#include <string>

namespace ringnet {

Status Status::from_errno(int err, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Status(err, std::move(msg));
}

}  // namespace ringnet
