// SPDX-License-Identifier: MIT
// FixedLengthCodec: see fixed_length_codec.h.
#include "ringnet/proto/fixed_length_codec.h"

namespace ringnet::proto {

namespace {
constexpr const char* kZeroLength = "fixed-length codec: frame_length is 0";
}  // namespace

Status FixedLengthCodec::validate(const Options& options) {
  if (options.frame_length == 0) return Status::invalid(kZeroLength);
  return Status::ok();
}

Decoded FixedLengthCodec::decode(std::string_view in, Frame& frame) const {
  const size_t n = options_.frame_length;
  if (n == 0) return Decoded::fail(kZeroLength);
  if (in.size() < n) return Decoded::need_more(0, n);
  frame = in.substr(0, n);
  return Decoded::frame(n);
}

Status FixedLengthCodec::check_encodable(std::string_view frame) const {
  if (options_.frame_length == 0) return Status::invalid(kZeroLength);
  if (frame.size() != options_.frame_length) {
    return Status::invalid("fixed-length codec: frame size differs from frame_length");
  }
  return Status::ok();
}

}  // namespace ringnet::proto
