// SPDX-License-Identifier: MIT
/// @file
/// Byte buffers and the per-loop pool they draw from.
///
/// Buffer is one contiguous region with a read and a write index (muduo's layout):
///
///   +-------------------+------------------+------------------+
///   | consumed (free    |  readable bytes  |  writable bytes  |
///   | to prepend into)  |    (content)     |                  |
///   +-------------------+------------------+------------------+
///   0      <=       read_index   <=   write_index    <=    capacity
///
/// An empty Buffer owns no memory; storage comes from a BufferPool when the first byte is
/// written and goes back when the buffer is drained (release_if_empty) or destroyed, so an
/// idle connection holds no buffer at all.
///
/// Thread-safety: none. A BufferPool belongs to one event loop; its buffers are touched only
/// on that loop's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "ringnet/config.h"

namespace ringnet {

/// Power-of-two size classes from 4 KiB to 4 MiB, each with a bounded free list; larger
/// requests go straight to malloc. The C++ analogue of Go's sync.Pool, minus the sharing.
/// Threads: none; the pool belongs to one event loop (see the file comment).
class RINGNET_EXPORT BufferPool {
 public:
  static constexpr size_t kMinClassShift = 12;  ///< 4 KiB
  static constexpr size_t kMaxClassShift = 22;  ///< 4 MiB
  /// Number of size classes.
  static constexpr size_t kClasses = kMaxClassShift - kMinClassShift + 1;

  /// cached_bytes_limit bounds the memory parked on free lists (not memory in use).
  explicit BufferPool(size_t cached_bytes_limit = 32u << 20);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  /// Returns storage of at least `size` bytes; *capacity receives the real size.
  char* acquire(size_t size, size_t* capacity);
  /// Gives back storage from acquire() with the capacity it reported.
  void release(char* data, size_t capacity);

  /// Bytes parked on the free lists now.
  size_t cached_bytes() const { return cached_bytes_; }
  /// Blocks acquired and not yet released.
  size_t outstanding_blocks() const { return outstanding_; }

  /// Rounds up to the size class that acquire() would hand out.
  static size_t class_size(size_t size);

 private:
  std::vector<char*> free_[kClasses];
  size_t cached_bytes_ = 0;
  size_t cached_limit_;
  size_t outstanding_ = 0;
};

/// A growable byte buffer with a read and a write offset, its storage from a BufferPool.
/// Threads: none; used by one thread, its pool's loop thread.
class RINGNET_EXPORT Buffer {
 public:
  /// pool may be null: storage then comes from malloc directly.
  explicit Buffer(BufferPool* pool = nullptr) : pool_(pool) {}
  ~Buffer() { free_storage(); }
  /// Takes over `other`'s storage; `other` is left empty.
  Buffer(Buffer&& other) noexcept;
  /// Frees this buffer's storage and takes over `other`'s.
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  /// Bytes written and not yet consumed.
  size_t readable_bytes() const { return write_ - read_; }
  /// Room left at the end without growing.
  size_t writable_bytes() const { return capacity_ - write_; }
  /// Size of the storage.
  size_t capacity() const { return capacity_; }
  /// True when no readable bytes are left.
  bool empty() const { return read_ == write_; }
  /// The first readable byte.
  const char* read_ptr() const { return data_ + read_; }
  /// The readable bytes, without copying; invalidated by ensure_writable().
  std::string_view view() const { return {data_ + read_, write_ - read_}; }

  /// Drops up to n readable bytes from the front; returns how many were dropped.
  size_t consume(size_t n);
  /// Drops every readable byte; keeps the storage.
  void clear() { read_ = write_ = 0; }

  /// Makes room for n more bytes at the end, compacting or growing (through the pool).
  /// Existing bytes may move: views taken earlier are invalidated.
  void ensure_writable(size_t n);
  /// Where the next bytes go; room for writable_bytes().
  char* write_ptr() { return data_ + write_; }
  /// Marks n bytes (written at write_ptr) as readable. n <= writable_bytes().
  void commit(size_t n) { write_ += n; }

  /// Appends `bytes`, growing the storage as needed.
  void append(std::string_view bytes);
  /// Appends as much of `bytes` as fits without moving or growing; returns bytes taken.
  size_t append_in_place(std::string_view bytes);

  /// Returns the storage to the pool when no readable bytes are left.
  void release_if_empty();

 private:
  void free_storage();
  BufferPool* pool_;
  char* data_ = nullptr;
  size_t capacity_ = 0;
  size_t read_ = 0;
  size_t write_ = 0;
};

/// Outbound bytes of one connection: a chain of pool blocks, each carrying its own header
/// (next, read and write offsets) at its front. Appending never moves bytes already
/// queued, so a completion-based backend may send from them while more is appended. An
/// empty queue holds no memory at all, and the queue itself is four words: this is what
/// an idle connection pays for its output side.
class RINGNET_EXPORT OutboundQueue {
 public:
  /// Later blocks of a deep queue, header included (a pool class: no rounding up).
  static constexpr size_t kBlockSize = 16 * 1024;

  /// An empty queue taking its blocks from `pool`.
  explicit OutboundQueue(BufferPool* pool) : pool_(pool) {}
  ~OutboundQueue() { clear(); }
  /// Takes over `other`'s blocks; `other` is left empty.
  OutboundQueue(OutboundQueue&& other) noexcept;
  /// Frees this queue's blocks and takes over `other`'s.
  OutboundQueue& operator=(OutboundQueue&& other) noexcept;
  OutboundQueue(const OutboundQueue&) = delete;
  OutboundQueue& operator=(const OutboundQueue&) = delete;

  /// Copies `bytes` to the end of the queue.
  void append(std::string_view bytes);
  /// Bytes queued.
  size_t size() const { return size_; }
  /// True when nothing is queued.
  bool empty() const { return size_ == 0; }

  /// Fills up to max_iov iovec-like (pointer, length) pairs with queued bytes, in order.
  /// Returns the number filled.
  template <typename IoVec>
  size_t gather(IoVec* iov, size_t max_iov) const {
    size_t n = 0;
    for (const Block* b = head_; b != nullptr && n < max_iov; b = b->next) {
      if (b->read == b->write) continue;
      iov[n].iov_base = const_cast<char*>(b->data() + b->read);
      iov[n].iov_len = b->write - b->read;
      ++n;
    }
    return n;
  }

  /// Drops n bytes from the front (they were sent); drained blocks go back to the pool.
  void consume(size_t n);
  /// Drops everything queued; every block goes back to the pool.
  void clear();
  /// Blocks in the chain (for tests).
  size_t block_count() const;

 private:
  struct Block {
    Block* next;
    uint32_t read;      ///< data offsets: [read, write) is queued
    uint32_t write;
    uint32_t capacity;  ///< data bytes after the header
    uint32_t size;      ///< the whole allocation, header included (for the pool)
    char* data() { return reinterpret_cast<char*>(this + 1); }
    const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  };
  static_assert(sizeof(Block) == 24);
  Block* new_block(size_t data_bytes);
  void free_block(Block* b);

  BufferPool* pool_;
  Block* head_ = nullptr;
  Block* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ringnet
