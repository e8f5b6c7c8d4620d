// SPDX-License-Identifier: MIT
#include "ringnet/buffer.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace ringnet {

// ---------------------------------------------------------------- BufferPool

BufferPool::BufferPool(size_t cached_bytes_limit) : cached_limit_(cached_bytes_limit) {}

BufferPool::~BufferPool() {
  for (auto& list : free_) {
    for (char* p : list) std::free(p);
  }
}

size_t BufferPool::class_size(size_t size) {
  size_t min = size_t{1} << kMinClassShift;
  if (size <= min) return min;
  return std::bit_ceil(size);
}

char* BufferPool::acquire(size_t size, size_t* capacity) {
  size_t cap = class_size(size);
  *capacity = cap;
  ++outstanding_;
  size_t shift = static_cast<size_t>(std::countr_zero(cap));
  if (shift <= kMaxClassShift) {
    auto& list = free_[shift - kMinClassShift];
    if (!list.empty()) {
      char* p = list.back();
      list.pop_back();
      cached_bytes_ -= cap;
      return p;
    }
  }
  char* p = static_cast<char*>(std::malloc(cap));
  if (p == nullptr) throw std::bad_alloc();  // out of memory is not a recoverable state
  return p;
}

void BufferPool::release(char* data, size_t capacity) {
  if (data == nullptr) return;
  --outstanding_;
  size_t shift = static_cast<size_t>(std::countr_zero(capacity));
  bool pooled_class = std::has_single_bit(capacity) && shift >= kMinClassShift &&
                      shift <= kMaxClassShift;
  if (pooled_class && cached_bytes_ + capacity <= cached_limit_) {
    free_[shift - kMinClassShift].push_back(data);
    cached_bytes_ += capacity;
    return;
  }
  std::free(data);
}

// ---------------------------------------------------------------- Buffer

namespace {
// Storage for a Buffer or an OutboundQueue block: from `pool` when there is one, else from
// malloc, rounded up to the pool's class either way. Out of memory is not recoverable.
char* take_storage(BufferPool* pool, size_t want, size_t* capacity) {
  if (pool != nullptr) return pool->acquire(want, capacity);
  *capacity = BufferPool::class_size(want);
  auto* p = static_cast<char*>(std::malloc(*capacity));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void give_storage(BufferPool* pool, char* data, size_t capacity) {
  if (pool != nullptr) {
    pool->release(data, capacity);
  } else {
    std::free(data);
  }
}
}  // namespace

Buffer::Buffer(Buffer&& other) noexcept
    : pool_(other.pool_),
      data_(std::exchange(other.data_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      read_(std::exchange(other.read_, 0)),
      write_(std::exchange(other.write_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    free_storage();
    pool_ = other.pool_;
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    read_ = std::exchange(other.read_, 0);
    write_ = std::exchange(other.write_, 0);
  }
  return *this;
}

void Buffer::free_storage() {
  if (data_ == nullptr) return;
  give_storage(pool_, data_, capacity_);
  data_ = nullptr;
  capacity_ = read_ = write_ = 0;
}

size_t Buffer::consume(size_t n) {
  n = std::min(n, readable_bytes());
  read_ += n;
  if (read_ == write_) read_ = write_ = 0;  // reuse the whole region next time
  return n;
}

void Buffer::ensure_writable(size_t n) {
  if (writable_bytes() >= n) return;
  size_t live = readable_bytes();
  if (data_ != nullptr && read_ + writable_bytes() >= n && live <= capacity_ / 2) {
    // Enough room once the consumed prefix is reclaimed: slide the content down.
    std::memmove(data_, data_ + read_, live);
    read_ = 0;
    write_ = live;
    return;
  }
  size_t cap = 0;
  char* fresh = take_storage(pool_, live + n, &cap);
  if (live > 0) std::memcpy(fresh, data_ + read_, live);
  free_storage();
  data_ = fresh;
  capacity_ = cap;
  read_ = 0;
  write_ = live;
}

void Buffer::append(std::string_view bytes) {
  if (bytes.empty()) return;
  ensure_writable(bytes.size());
  std::memcpy(data_ + write_, bytes.data(), bytes.size());
  write_ += bytes.size();
}

size_t Buffer::append_in_place(std::string_view bytes) {
  size_t n = std::min(bytes.size(), writable_bytes());
  if (n > 0) {
    std::memcpy(data_ + write_, bytes.data(), n);
    write_ += n;
  }
  return n;
}

void Buffer::release_if_empty() {
  if (empty()) free_storage();
}

// ---------------------------------------------------------------- OutboundQueue

namespace {
// The largest block: the pool's largest class (bigger writes take several).
constexpr size_t kMaxBlockBytes = size_t{1} << BufferPool::kMaxClassShift;
}  // namespace

OutboundQueue::OutboundQueue(OutboundQueue&& other) noexcept
    : pool_(other.pool_),
      head_(std::exchange(other.head_, nullptr)),
      tail_(std::exchange(other.tail_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

OutboundQueue& OutboundQueue::operator=(OutboundQueue&& other) noexcept {
  if (this != &other) {
    clear();
    pool_ = other.pool_;
    head_ = std::exchange(other.head_, nullptr);
    tail_ = std::exchange(other.tail_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

OutboundQueue::Block* OutboundQueue::new_block(size_t data_bytes) {
  size_t cap = 0;
  char* mem = take_storage(pool_, std::min(data_bytes + sizeof(Block), kMaxBlockBytes), &cap);
  auto* b = new (mem) Block{nullptr, 0, 0, static_cast<uint32_t>(cap - sizeof(Block)),
                            static_cast<uint32_t>(cap)};
  if (tail_ != nullptr) {
    tail_->next = b;
  } else {
    head_ = b;
  }
  tail_ = b;
  return b;
}

void OutboundQueue::free_block(Block* b) {
  const size_t cap = b->size;
  b->~Block();
  give_storage(pool_, reinterpret_cast<char*>(b), cap);
}

void OutboundQueue::append(std::string_view bytes) {
  size_ += bytes.size();
  while (!bytes.empty()) {
    Block* b = tail_;
    if (b == nullptr || b->write == b->capacity) {
      // The first block fits the write (4 KiB at least): a reply queued until the end of
      // the iteration then holds 4 KiB, not 16, so thousands of connections written in
      // one iteration still come from the pool's free lists instead of malloc. Later
      // blocks are 16 KiB; big writes get one big block rather than many (fewer iovecs).
      b = new_block(b == nullptr ? bytes.size()
                                 : std::max(kBlockSize - sizeof(Block), bytes.size()));
    }
    const size_t n = std::min<size_t>(bytes.size(), b->capacity - b->write);
    std::memcpy(b->data() + b->write, bytes.data(), n);
    b->write += static_cast<uint32_t>(n);
    bytes.remove_prefix(n);
  }
}

void OutboundQueue::consume(size_t n) {
  size_ -= std::min(n, size_);
  while (n > 0 && head_ != nullptr) {
    Block* b = head_;
    const size_t k = std::min<size_t>(n, b->write - b->read);
    b->read += static_cast<uint32_t>(k);
    n -= k;
    if (b->read < b->write) break;
    head_ = b->next;
    if (head_ == nullptr) tail_ = nullptr;
    free_block(b);
  }
}

void OutboundQueue::clear() {
  while (head_ != nullptr) {
    Block* b = head_;
    head_ = b->next;
    free_block(b);
  }
  tail_ = nullptr;
  size_ = 0;
}

size_t OutboundQueue::block_count() const {
  size_t n = 0;
  for (const Block* b = head_; b != nullptr; b = b->next) ++n;
  return n;
}

}  // namespace ringnet
