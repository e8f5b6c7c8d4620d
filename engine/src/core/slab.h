// SPDX-License-Identifier: MIT
// Slab<T>: slots that never move once made (the loop, its pollers and handlers hold T&),
// in chunks of kChunk, so each costs its own size. std::deque, used before, gave every
// Conn (232-376 bytes) a 512-byte node of its own plus a map pointer: what an idle
// connection costs is what its slot costs. Slots are made one at a time at the end and
// live as long as the slab.
//
// Thread-safety: none; the owning loop's thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace ringnet {

template <typename T, size_t kChunk = 64>
class Slab {
 public:
  Slab() = default;
  ~Slab() {
    for (size_t i = size_; i-- > 0;) (*this)[i].~T();
  }
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  size_t size() const { return size_; }
  T& operator[](size_t i) {
    return *std::launder(reinterpret_cast<T*>(chunks_[i / kChunk]->bytes + (i % kChunk) * sizeof(T)));
  }

  template <typename... Args>
  T& emplace_back(Args&&... args) {
    // `new Chunk`, not make_unique: no zeroing, so untouched slots cost no memory.
    if (size_ == chunks_.size() * kChunk) chunks_.push_back(std::unique_ptr<Chunk>(new Chunk));
    void* at = chunks_[size_ / kChunk]->bytes + (size_ % kChunk) * sizeof(T);
    T* t = new (at) T(std::forward<Args>(args)...);
    ++size_;
    return *t;
  }

  class iterator {
   public:
    iterator(Slab* s, size_t i) : s_(s), i_(i) {}
    T& operator*() const { return (*s_)[i_]; }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator!=(const iterator& o) const { return i_ != o.i_; }

   private:
    Slab* s_;
    size_t i_;
  };
  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }

 private:
  struct Chunk {
    alignas(T) std::byte bytes[kChunk * sizeof(T)];  // uninitialized until emplace_back
  };
  std::vector<std::unique_ptr<Chunk>> chunks_;
  size_t size_ = 0;
};

}  // namespace ringnet
