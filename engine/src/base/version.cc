// SPDX-License-Identifier: MIT
#include "ringnet/version.h"

namespace ringnet {

// Compiled into the library, so these are the macros of the headers it was built from.
Version version() noexcept {
  return {RINGNET_VERSION_MAJOR, RINGNET_VERSION_MINOR, RINGNET_VERSION_PATCH};
}

const char* version_string() noexcept { return RINGNET_VERSION_STRING; }

}  // namespace ringnet
