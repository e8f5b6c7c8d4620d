// SPDX-License-Identifier: MIT
// libFuzzer target for FixedLengthCodec. The first input byte picks frame_length
// (value % 17: 0 must fail, 1..16 frame), the rest is the byte stream. Frames are consumed
// until need-more or error; checked: sizes, views inside the input, encode -> decode.
#include <ringnet/proto/fixed_length_codec.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "resume_check.h"

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::FixedLengthCodec;
using ringnet::proto::FixedLengthOptions;
using ringnet::proto::StringSink;

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t n = data[0] % 17;
  const FixedLengthCodec codec(FixedLengthOptions{n});
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  for (;;) {
    std::string_view frame;
    Decoded d = codec.decode(in, frame);
    if (d.kind == Decoded::kError) {
      check(n == 0 && d.error.reason != nullptr && d.error.reason[0] != '\0');
      break;
    }
    if (d.kind == Decoded::kNeedMore) {
      check(n != 0 && in.size() < n);
      break;
    }
    check(d.kind == Decoded::kFrame && n != 0);
    check(d.consumed == n && n <= in.size());
    check(frame.data() == in.data() && frame.size() == n);

    std::string wire;
    StringSink sink{wire};
    check(codec.encode(frame, sink).is_ok() && wire == frame);
    std::string_view again;
    Decoded d2 = codec.decode(wire, again);
    check(d2.kind == Decoded::kFrame && d2.consumed == n && again == frame);
    in.remove_prefix(d.consumed);
  }
  ringnet::fuzz::check_resume(codec, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
                              size, [](std::string_view a, std::string_view b) { return a == b; });
  return 0;
}
