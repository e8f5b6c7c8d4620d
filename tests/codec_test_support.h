// SPDX-License-Identifier: MIT
// Helpers shared by the codec suites (test_codec_simple, test_http1, test_resp,
// test_rpc_frame): exact-size input buffers, sinks that count calls, and decode drivers
// that work with any codec (`Decoded decode(std::string_view, Frame&) const`).
//
// Header-only templates, so that test_support_lib needs no dependency on ringnet_proto.
#pragma once

#include <gtest/gtest.h>
#include <ringnet/proto/codec.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace ringnet::test {

// `bytes` copied into a heap block of exactly that size, so that ASan reports any read
// past the end of what decode was given.
class ExactBuffer {
 public:
  explicit ExactBuffer(std::string_view bytes)
      : size_(bytes.size()), data_(new char[bytes.size() == 0 ? 1 : bytes.size()]) {
    if (size_ != 0) std::memcpy(data_.get(), bytes.data(), size_);
  }
  std::string_view view() const { return {data_.get(), size_}; }

 private:
  size_t size_;
  std::unique_ptr<char[]> data_;
};

// True when `part` lies inside `whole` (a view into it, not a copy).
inline bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

// A ByteSink without writev that counts its write() calls.
struct CountingSink {
  std::string out;
  int writes = 0;
  Status write(std::string_view bytes) {
    ++writes;
    out.append(bytes);
    return Status::ok();
  }
};

// A ByteSink that also has writev (as Conn does) and counts the calls of each.
struct VectorSink : CountingSink {
  int writevs = 0;
  Status writev(std::span<const std::string_view> parts) {
    ++writevs;
    for (std::string_view p : parts) out.append(p);
    return Status::ok();
  }
};

// No hint expected from any prefix (see needs_more_at_every_prefix).
inline uint8_t no_hint(size_t /*prefix*/) { return 0; }

// Decodes every prefix of `wire` shorter than `end` bytes, each from an ExactBuffer: each
// must be need-more, consume nothing and carry the hint `hint_at(prefix size)` gives.
// Fails naming the first prefix that does not.
template <typename C, typename HintAt = uint8_t (*)(size_t)>
testing::AssertionResult needs_more_at_every_prefix(const C& codec, std::string_view wire,
                                                    size_t end, HintAt hint_at = no_hint) {
  if (end > wire.size()) return testing::AssertionFailure() << "bad test: end past the input";
  for (size_t k = 0; k < end; ++k) {
    ExactBuffer prefix(wire.substr(0, k));
    typename C::Frame frame{};
    proto::Decoded d = codec.decode(prefix.view(), frame);
    if (d.kind != proto::Decoded::kNeedMore) {
      return testing::AssertionFailure() << "prefix of " << k << " bytes: kind " << int(d.kind)
                                         << " (" << d.error.reason << "), want kNeedMore";
    }
    if (d.consumed != 0) {
      return testing::AssertionFailure() << "prefix of " << k << " bytes: consumed "
                                         << d.consumed << " with kNeedMore";
    }
    if (uint8_t want = hint_at(k); d.hint != want) {
      return testing::AssertionFailure() << "prefix of " << k << " bytes: hint " << int(d.hint)
                                         << ", want " << int(want);
    }
  }
  return testing::AssertionSuccess();
}

// Decodes frames from the front of `in` into one reused frame object until a result other
// than a frame (or a frame that consumes nothing), calling take(frame, decoded) for each
// frame. Leaves `in` at the bytes not consumed and returns the last result.
template <typename C, typename Take>
proto::Decoded decode_each(const C& codec, std::string_view& in, Take&& take) {
  typename C::Frame frame{};
  for (;;) {
    proto::Decoded d = codec.decode(in, frame);
    if (d.kind != proto::Decoded::kFrame || d.consumed == 0) return d;
    take(frame, d);
    in.remove_prefix(d.consumed);
  }
}

}  // namespace ringnet::test
