// SPDX-License-Identifier: MIT
#include "uring/buffer_ring.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>

namespace ringnet {

void BufferRing::release() {
  if (registered_) io_uring_unregister_buf_ring(ring_, group_);
  registered_ = false;
  if (br_ != nullptr) ::munmap(br_, ring_bytes_);
  br_ = nullptr;
  if (buffers_ != nullptr) ::munmap(buffers_, buffers_bytes_);
  buffers_ = nullptr;
}

namespace {
// liburing 2.3's headers predate incremental consumption (kernel 6.12): the flag goes in
// io_uring_buf_reg's 16-bit field after bgid (`pad` there, `flags` in the kernel's).
constexpr uint16_t kPbufRingInc = 2;  // IOU_PBUF_RING_INC
}  // namespace

Status BufferRing::init(io_uring* ring, uint16_t group, unsigned entries, size_t buffer_size,
                        bool incremental, unsigned initial) {
  if (!std::has_single_bit(entries) || entries > 32768 || buffer_size == 0) {
    return Status::invalid("buffer ring entries must be a power of two <= 32768");
  }
  if (initial == 0 || initial > entries) initial = entries;
  ring_ = ring;
  group_ = group;
  entries_ = entries;
  buffer_size_ = buffer_size;
  ring_bytes_ = entries * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                     -1, 0);
  if (mem == MAP_FAILED) return Status::from_errno(errno, "mmap buffer ring");
  br_ = static_cast<io_uring_buf_ring*>(mem);
  buffers_bytes_ = entries * buffer_size;
  mem = ::mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1,
               0);
  if (mem == MAP_FAILED) return Status::from_errno(errno, "mmap provided buffers");
  buffers_ = static_cast<char*>(mem);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = entries;
  reg.bgid = group;
  int rc = -EINVAL;
  if (incremental) {
    reg.pad = kPbufRingInc;
    rc = io_uring_register_buf_ring(ring_, &reg, 0);
    incremental_ = rc == 0;
    reg.pad = 0;
  }
  if (rc == -EINVAL) rc = io_uring_register_buf_ring(ring_, &reg, 0);  // an older kernel
  if (rc != 0) return Status::from_errno(-rc, "io_uring_register_buf_ring");
  registered_ = true;
  if (incremental_) used_.assign(entries, 0);
  io_uring_buf_ring_init(br_);
  order_.assign(entries, 0);
  position_.assign(entries, 0);
  offer(initial);
  return Status::ok();
}

bool BufferRing::grow() {
  if (offered_ == entries_) return false;
  offer(std::min(entries_, offered_ * 2));
  return true;
}

// Hands buffer ids [offered_, upto) to the kernel in one ring advance.
void BufferRing::offer(unsigned upto) {
  const unsigned first = offered_;
  for (unsigned i = first; i < upto; ++i) {
    add(static_cast<uint16_t>(i), static_cast<int>(i - first));
  }
  io_uring_buf_ring_advance(br_, static_cast<int>(upto - first));
  tail_ += upto - first;
  offered_ = upto;
}

// `offset` is how far past the current tail this entry goes (several adds, one advance).
void BufferRing::add(uint16_t id, int offset) {
  io_uring_buf_ring_add(br_, buffer(id), static_cast<unsigned>(buffer_size_), id,
                        io_uring_buf_ring_mask(entries_), offset);
  uint32_t pos = tail_ + static_cast<uint32_t>(offset);
  order_[pos & (entries_ - 1)] = id;
  position_[id] = pos;
}

void BufferRing::recycle(uint16_t id) {
  if (incremental_) used_[id] = 0;
  add(id, 0);
  io_uring_buf_ring_advance(br_, 1);
  ++tail_;
}

}  // namespace ringnet
