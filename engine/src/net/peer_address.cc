// SPDX-License-Identifier: MIT
#include "ringnet/detail/peer_address.h"

#include <cstdlib>

namespace ringnet::detail {

void PeerAddress::assign(const sockaddr* sa, socklen_t len) {
  reset();
  if (len == 0) return;
  if (len <= kInline) {
    std::memcpy(bytes_, sa, len);
  } else {
    void* p = std::malloc(len);
    if (p == nullptr) return;  // no address rather than a wrong one
    std::memcpy(p, sa, len);
    std::memcpy(bytes_, &p, sizeof p);
  }
  len_ = len;
}

void PeerAddress::reset() {
  if (len_ > kInline) std::free(const_cast<unsigned char*>(heap()));
  len_ = 0;
}

}  // namespace ringnet::detail
