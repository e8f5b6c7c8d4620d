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
  if (pool_ != nullptr) {
    pool_->release(data_, capacity_);
  } else {
    std::free(data_);
  }
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
  size_t want = live + n;
  size_t cap = 0;
  char* fresh = nullptr;
  if (pool_ != nullptr) {
    fresh = pool_->acquire(want, &cap);
  } else {
    cap = BufferPool::class_size(want);
    fresh = static_cast<char*>(std::malloc(cap));
    if (fresh == nullptr) throw std::bad_alloc();
  }
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

void OutboundQueue::append(std::string_view bytes) {
  size_ += bytes.size();
  if (!blocks_.empty()) {
    bytes.remove_prefix(blocks_.back().append_in_place(bytes));
  }
  while (!bytes.empty()) {
    // The first block fits the write (4 KiB at least): a reply queued until the end of
    // the iteration then holds 4 KiB, not 16, so thousands of connections written in one
    // iteration still come from the pool's free lists instead of malloc. Later blocks are
    // 16 KiB; big writes get one big block rather than many (fewer iovecs).
    size_t want = blocks_.empty() ? bytes.size() : std::max(kBlockSize, bytes.size());
    Buffer block(pool_);
    block.ensure_writable(std::min(want, size_t{1} << 22));
    bytes.remove_prefix(block.append_in_place(bytes));
    blocks_.push_back(std::move(block));
  }
}

void OutboundQueue::consume(size_t n) {
  size_ -= std::min(n, size_);
  while (n > 0 && head_ < blocks_.size()) {
    n -= blocks_[head_].consume(n);
    if (!blocks_[head_].empty()) break;
    blocks_[head_].release_if_empty();
    ++head_;
  }
  // Drop spent blocks from the front once the queue empties (or they pile up).
  // A live queue keeps its list (no allocation per reply); clear() gives a deep one back.
  if (head_ == blocks_.size()) {
    blocks_.clear();
    head_ = 0;
  } else if (head_ >= 16) {
    blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
}

// Called when a connection slot is freed. The cleared queue keeps room for kKeptBlocks
// entries at most: a slot is reused for the life of the loop, so keeping the capacity a
// once-deep queue grew to (up to 4 MiB / 16 KiB = 256+ entries) would make every slot
// converge to the worst queue it ever held. Not on each drain: that is the hot path.
void OutboundQueue::clear() {
  if (blocks_.capacity() > kKeptBlocks) {
    std::vector<Buffer>().swap(blocks_);
  } else {
    blocks_.clear();
  }
  head_ = 0;
  size_ = 0;
}

}  // namespace ringnet
