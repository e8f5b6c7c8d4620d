// SPDX-License-Identifier: MIT
// Message contents for the echo load generator, derived from (connection id, sequence).
//
// Message (conn, seq) is the window of a fixed random table that starts at
// hash(conn, seq) mod 1 MiB, wrapping around the table. So a byte that is shifted, dropped,
// duplicated or delivered to the wrong connection fails the comparison with high probability,
// and both sending and checking are memcpy/memcmp of table slices (no per-byte arithmetic
// at 1 MiB messages). The table is stored twice back to back so any slice of up to kSpan
// bytes that starts inside the first copy is contiguous.
//
// Thread-safety: instance() is built once (thread-safe static init) and read-only after.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace bench {

class EchoPayload {
 public:
  static constexpr size_t kSpan = size_t{1} << 20;

  static const EchoPayload& instance() {
    static const EchoPayload payload;
    return payload;
  }

  // Contiguous bytes of message (conn, seq) starting at `offset`, at most min(len, kSpan).
  std::string_view slice(uint64_t conn, uint64_t seq, size_t offset, size_t len) const {
    size_t pos = (start_of(conn, seq) + offset) & (kSpan - 1);
    return {table_.data() + pos, len < kSpan ? len : kSpan};
  }

  // True when `data` equals bytes [offset, offset + len) of message (conn, seq).
  bool matches(uint64_t conn, uint64_t seq, size_t offset, const char* data, size_t len) const {
    while (len > 0) {
      std::string_view want = slice(conn, seq, offset, len);
      if (std::memcmp(data, want.data(), want.size()) != 0) return false;
      data += want.size();
      offset += want.size();
      len -= want.size();
    }
    return true;
  }

 private:
  static uint64_t mix(uint64_t x) {  // splitmix64 finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }

  static size_t start_of(uint64_t conn, uint64_t seq) {
    return static_cast<size_t>(mix(mix(conn) ^ seq)) & (kSpan - 1);
  }

  EchoPayload() : table_(2 * kSpan) {
    uint64_t state = 0x72696e676e6574ull;  // fixed seed: runs are reproducible
    for (size_t i = 0; i < kSpan; i += 8) {
      uint64_t word = mix(state++);
      std::memcpy(&table_[i], &word, sizeof word);
    }
    std::memcpy(&table_[kSpan], &table_[0], kSpan);
  }

  std::vector<char> table_;
};

}  // namespace bench
