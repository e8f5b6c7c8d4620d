// SPDX-License-Identifier: MIT
// libFuzzer target for DelimiterCodec. The first input byte picks the options, the rest is
// the byte stream:
//   bits 0-1  delimiter: "\n", "\r\n", "\0", "abab" (a delimiter that overlaps itself)
//   bit  2    strip_delimiter
//   bits 3-7  max_frame = 3 * value (0..90), or 64 KiB for 31
// Frames are consumed until need-more or error. Checked: every result against a plain
// reference (first delimiter, limit), views inside the input, and encode -> decode giving
// the same line back.
#include <ringnet/proto/delimiter_codec.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "resume_check.h"

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::DelimiterCodec;
using ringnet::proto::DelimiterOptions;
using ringnet::proto::StringSink;

void check(bool ok) {
  if (!ok) std::abort();
}

DelimiterOptions options_from(uint8_t b) {
  static const std::string kDelimiters[] = {"\n", "\r\n", std::string(1, '\0'), "abab"};
  DelimiterOptions o;
  o.delimiter = kDelimiters[b & 3];
  o.strip_delimiter = (b & 4) != 0;
  const size_t v = b >> 3;
  o.max_frame = v == 31 ? 64 * 1024 : 3 * v;
  return o;
}

// Re-encodes a decoded line and decodes it again: the same line, the whole encoding used.
void check_round_trip(const DelimiterCodec& codec, std::string_view line) {
  std::string wire;
  StringSink sink{wire};
  check(codec.encode(line, sink).is_ok());
  check(wire.size() == line.size() + codec.options().delimiter.size());
  std::string_view again;
  Decoded d = codec.decode(wire, again);
  check(d.kind == Decoded::kFrame && d.consumed == wire.size());
  const std::string_view want_frame =
      codec.options().strip_delimiter ? std::string_view(line) : std::string_view(wire);
  check(again == want_frame);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const DelimiterCodec codec(options_from(data[0]));
  const std::string_view delim = codec.options().delimiter;
  const size_t max_frame = codec.options().max_frame;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  for (;;) {
    std::string_view frame;
    Decoded d = codec.decode(in, frame);
    const size_t pos = in.find(delim);  // the reference answer
    if (d.kind == Decoded::kNeedMore) {
      check(pos == std::string_view::npos && in.size() < max_frame + delim.size());
      break;
    }
    if (d.kind == Decoded::kError) {
      check(d.error.reason != nullptr && d.error.reason[0] != '\0');
      check(in.size() >= max_frame + delim.size() && (pos == std::string_view::npos ||
                                                       pos > max_frame));
      break;
    }
    check(d.kind == Decoded::kFrame);
    check(pos != std::string_view::npos && pos <= max_frame);
    check(d.consumed == pos + delim.size() && d.consumed <= in.size());
    check(frame.data() == in.data());
    check(frame.size() == (codec.options().strip_delimiter ? pos : d.consumed));
    check_round_trip(codec, in.substr(0, pos));
    in.remove_prefix(d.consumed);
  }
  ringnet::fuzz::check_resume(codec, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
                              size, [](std::string_view a, std::string_view b) { return a == b; });
  return 0;
}
