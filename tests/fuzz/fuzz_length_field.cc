// SPDX-License-Identifier: MIT
// libFuzzer target for LengthFieldCodec. The first four input bytes pick the options, the
// rest is the byte stream:
//   byte 0  bits 0-2: length_size from {1, 2, 3, 4, 8, 0, 5, 1} (0 and 5 are invalid);
//           bit 3: big_endian; bits 4-5: length_offset (0..3)
//   byte 1  length_adjustment: a signed byte, except 0x80 = INT64_MIN, 0x7f = INT64_MAX
//   byte 2  bytes_to_strip = value % 16
//   byte 3  max_frame = 4 * value, or SIZE_MAX for 255
// Frames are consumed until need-more or error. Each result is checked against a reference
// computed in 128-bit arithmetic; views must lie inside the input; with length_offset 0 the
// frame is re-encoded (same bytes as the input) and decoded again (same frame).
#include <ringnet/proto/length_field_codec.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "resume_check.h"

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::LengthFieldCodec;
using ringnet::proto::LengthFieldOptions;
using ringnet::proto::StringSink;

void check(bool ok) {
  if (!ok) std::abort();
}

LengthFieldOptions options_from(const uint8_t* b) {
  static const int kSizes[] = {1, 2, 3, 4, 8, 0, 5, 1};
  LengthFieldOptions o;
  o.length_size = kSizes[b[0] & 7];
  o.big_endian = (b[0] & 8) != 0;
  o.length_offset = (b[0] >> 4) & 3;
  o.length_adjustment = b[1] == 0x80 ? INT64_MIN
                        : b[1] == 0x7f ? INT64_MAX
                                       : static_cast<int8_t>(b[1]);
  o.bytes_to_strip = b[2] % 16;
  o.max_frame = b[3] == 255 ? SIZE_MAX : size_t{b[3]} * 4;
  return o;
}

bool valid(const LengthFieldOptions& o) {
  const int s = o.length_size;
  return (s == 1 || s == 2 || s == 3 || s == 4 || s == 8) &&
         o.length_offset + size_t(s) <= o.max_frame;
}

uint64_t field_value(std::string_view p, const LengthFieldOptions& o) {
  uint64_t v = 0;
  for (int i = 0; i < o.length_size; ++i) {
    const int at = o.big_endian ? i : o.length_size - 1 - i;
    v = v * 256 + static_cast<unsigned char>(p[o.length_offset + at]);
  }
  return v;
}

void check_one(const LengthFieldCodec& codec, std::string_view in, std::string_view frame,
               const Decoded& d) {
  const LengthFieldOptions& o = codec.options();
  if (!valid(o)) {
    check(d.kind == Decoded::kError);
    return;
  }
  const size_t header_end = o.length_offset + size_t(o.length_size);
  if (in.size() < header_end) {
    check(d.kind == Decoded::kNeedMore);
    return;
  }
  const __int128 length = __int128{field_value(in, o)} + o.length_adjustment + header_end;
  if (length < __int128{header_end} || length > __int128{UINT64_MAX} ||
      length > __int128{o.max_frame} || __int128{o.bytes_to_strip} > length) {
    check(d.kind == Decoded::kError && d.error.reason != nullptr && d.error.reason[0] != '\0');
    return;
  }
  if (__int128{in.size()} < length) {
    check(d.kind == Decoded::kNeedMore);
    return;
  }
  check(d.kind == Decoded::kFrame && __int128{d.consumed} == length && d.consumed <= in.size());
  check(frame.data() == in.data() + o.bytes_to_strip);
  check(frame.size() == d.consumed - o.bytes_to_strip);
  if (o.length_offset != 0) return;

  // Re-encode: the body is what follows the field; the bytes must be the input's own.
  std::string wire;
  StringSink sink{wire};
  check(codec.encode(in.substr(header_end, d.consumed - header_end), sink).is_ok());
  check(wire == in.substr(0, d.consumed));
  std::string_view again;
  Decoded d2 = codec.decode(wire, again);
  check(d2.kind == Decoded::kFrame && d2.consumed == wire.size() && again == frame);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const LengthFieldCodec codec(options_from(data));
  std::string_view in(reinterpret_cast<const char*>(data) + 4, size - 4);
  for (;;) {
    std::string_view frame;
    Decoded d = codec.decode(in, frame);
    check_one(codec, in, frame, d);
    if (d.kind != Decoded::kFrame) break;
    check(d.consumed > 0);
    in.remove_prefix(d.consumed);
  }
  ringnet::fuzz::check_resume(codec, std::string_view(reinterpret_cast<const char*>(data) + 4, size - 4),
                              size, [](std::string_view a, std::string_view b) { return a == b; });
  return 0;
}
