// SPDX-License-Identifier: MIT
// PeerAddress: a connection's peer address in 32 bytes, where a SockAddr takes 136. IPv4,
// IPv6 and unnamed Unix peers (what accept gives for most Unix clients) are kept inline;
// a longer address (a named or abstract Unix socket) goes to the heap. Conn keeps one per
// slot, so this is what an idle connection pays for knowing its peer.
//
// Thread-safety: owned by one loop, like the Conn that holds it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>

#include "ringnet/config.h"

namespace ringnet::detail {

class alignas(8) RINGNET_EXPORT PeerAddress {
 public:
  PeerAddress() = default;
  ~PeerAddress() { reset(); }
  PeerAddress(const PeerAddress&) = delete;
  PeerAddress& operator=(const PeerAddress&) = delete;

  // Copies `len` bytes of `sa` (len 0: no address).
  void assign(const sockaddr* sa, socklen_t len);
  void reset();
  // Stable until the next assign/reset: a connect in flight may point the kernel at it.
  const sockaddr* raw() const {
    return reinterpret_cast<const sockaddr*>(len_ > kInline ? heap() : bytes_);
  }
  socklen_t length() const { return len_; }

 private:
  static constexpr socklen_t kInline = sizeof(sockaddr_in6);  // 28
  const unsigned char* heap() const {
    const unsigned char* p;
    std::memcpy(&p, bytes_, sizeof p);
    return p;
  }

  unsigned char bytes_[kInline] = {};  // the address, or (len_ > kInline) a heap pointer
  socklen_t len_ = 0;
};
static_assert(sizeof(PeerAddress) == 32);

}  // namespace ringnet::detail
