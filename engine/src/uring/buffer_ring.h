// SPDX-License-Identifier: MIT
// BufferRing: a provided-buffer ring (IORING_REGISTER_PBUF_RING) for multishot receives.
// The kernel picks a buffer per completion and reports its id; the loop hands the bytes
// to the connection and gives the buffer back with recycle() — the only way back in.
//
// Incremental consumption (IOU_PBUF_RING_INC, kernel 6.12+): a receive takes only the
// bytes it needs from the buffer at the ring's head, and the next receive (on any
// connection) goes on in the same buffer, so small messages do not each spend a whole
// buffer (a small ring serves many connections; no CPU gain measured, see
// Options::uring_buffer_incremental). A completion then says whether its last buffer
// still has room (IORING_CQE_F_BUF_MORE), and used() keeps how far into each buffer the
// kernel has written.
//
// Sized to load: the ring has room for `entries` buffers and all their memory is mapped
// (untouched pages cost no RSS), but the kernel is offered only `initial` of them at
// first. When receives find the ring empty, grow() offers twice as many, up to `entries`
// (the poller grows it once per poll at most). A buffer's first page becomes resident
// the first time the kernel fills it, so a quiet loop keeps a small working set (32
// buffers: 128 KiB) instead of one page per ring entry (512: 2 MiB), and a busy one grows
// to what its bursts need.
//
// liburing 2.3 has io_uring_register_buf_ring but not io_uring_setup_buf_ring, so the
// ring memory is mapped here. Kernel 5.19+.
//
// Thread-safety: loop thread only.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ringnet/status.h"

namespace ringnet {

class BufferRing {
 public:
  BufferRing() = default;
  ~BufferRing() { release(); }
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  // entries must be a power of two (<= 32768); `initial` buffers (1..entries; 0: all)
  // are offered at once. `incremental`: ask for incremental consumption, and register
  // without it where the kernel refuses (see incremental()).
  Status init(io_uring* ring, uint16_t group, unsigned entries, size_t buffer_size,
              bool incremental = false, unsigned initial = 0);
  // Offers the kernel twice as many buffers (up to entries); false when all are offered.
  bool grow();
  // Buffers the kernel has been offered (in the ring or lent out).
  unsigned offered() const { return offered_; }
  bool incremental() const { return incremental_; }
  uint16_t group() const { return group_; }
  size_t buffer_size() const { return buffer_size_; }
  char* buffer(uint16_t id) const { return buffers_ + size_t{id} * buffer_size_; }
  // Bytes of buffer `id` the kernel has filled and the loop has taken (0 unless
  // incremental); a completion's data in this buffer starts there.
  size_t used(uint16_t id) const { return incremental_ ? used_[id] : 0; }
  // The kernel keeps buffer `id` (IORING_CQE_F_BUF_MORE) after filling `n` more bytes.
  void keep(uint16_t id, size_t n) { used_[id] += static_cast<uint32_t>(n); }
  // Gives buffer `id` back to the kernel.
  void recycle(uint16_t id);
  // The buffer the kernel will hand out after `id` (ring order): a bundle receive fills
  // consecutive ring entries, and its completion names only the first.
  uint16_t next_in_ring(uint16_t id) const {
    return order_[(position_[id] + 1) & (entries_ - 1)];
  }
  // Unregisters and unmaps; must run before the ring itself exits.
  void release();

 private:
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  size_t ring_bytes_ = 0;
  char* buffers_ = nullptr;
  size_t buffers_bytes_ = 0;
  unsigned entries_ = 0;
  unsigned offered_ = 0;              // buffer ids [0, offered_) belong to the kernel's ring
  size_t buffer_size_ = 0;
  uint16_t group_ = 0;
  bool registered_ = false;
  bool incremental_ = false;
  std::vector<uint32_t> used_;        // incremental: buffer id -> bytes taken so far
  uint32_t tail_ = 0;                 // ring positions handed to the kernel so far
  std::vector<uint16_t> order_;       // ring position (mod entries) -> buffer id
  std::vector<uint32_t> position_;    // buffer id -> its ring position
  void add(uint16_t id, int offset);
  void offer(unsigned upto);
};

}  // namespace ringnet
