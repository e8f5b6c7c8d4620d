// SPDX-License-Identifier: MIT
// The three simple framing codecs (delimiter, fixed length, length field): decode and encode
// on plain strings — every frame split at every byte, several frames per buffer, each limit
// and each error — and then each codec under FramedHandler over real loopback sockets,
// once per backend.
#include <gtest/gtest.h>
#include <ringnet/proto/delimiter_codec.h>
#include <ringnet/proto/fixed_length_codec.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/length_field_codec.h>

#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "codec_test_support.h"
#include "test_support.h"

namespace ringnet::proto {
namespace {

using namespace std::literals;
using test::ExactBuffer;
using test::inside;
using test::Millis;
using test::VectorSink;

// ---- helpers --------------------------------------------------------------------------

// `wire` starts with one complete frame of `consumed` bytes that decodes to `want`: every
// shorter prefix must ask for more, the whole must give the frame (a view into the input),
// and so must the frame followed by trailing bytes.
template <typename C>
testing::AssertionResult frame_at_every_split(const C& codec, std::string_view wire,
                                              std::string_view want, size_t consumed) {
  if (auto r = test::needs_more_at_every_prefix(codec, wire, consumed); !r) return r;
  for (std::string_view in : {wire.substr(0, consumed), wire}) {
    ExactBuffer whole(in);
    std::string_view frame;
    Decoded d = codec.decode(whole.view(), frame);
    if (d.kind != Decoded::kFrame) {
      return testing::AssertionFailure() << "whole frame (" << in.size() << " bytes): kind "
                                         << int(d.kind) << " (" << d.error.reason << ")";
    }
    if (d.consumed != consumed) {
      return testing::AssertionFailure() << "consumed " << d.consumed << ", want " << consumed;
    }
    if (!inside(frame, whole.view())) return testing::AssertionFailure() << "view outside input";
    if (frame != want) {
      return testing::AssertionFailure() << "frame '" << frame << "', want '" << want << "'";
    }
  }
  return testing::AssertionSuccess();
}

// Decodes frames from the front of `in` until need-more or error; returns the frames.
// *leftover gets the bytes not consumed, *last the final result.
template <typename C>
std::vector<std::string> decode_all(const C& codec, std::string_view in,
                                    std::string* leftover = nullptr, Decoded* last = nullptr) {
  std::vector<std::string> frames;
  Decoded d = test::decode_each(
      codec, in, [&](std::string_view frame, const Decoded&) { frames.emplace_back(frame); });
  if (leftover) *leftover = std::string(in);
  if (last) *last = d;
  return frames;
}

template <typename C>
Decoded decode_once(const C& codec, std::string_view in, std::string_view* frame = nullptr) {
  std::string_view f;
  Decoded d = codec.decode(in, f);
  if (frame) *frame = f;
  return d;
}

template <typename C>
std::string encoded(const C& codec, std::string_view frame) {
  std::string out;
  StringSink sink{out};
  Status s = codec.encode(frame, sink);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return out;
}

// ---- DelimiterCodec -------------------------------------------------------------------

DelimiterCodec delimiter(std::string delim, size_t max_frame = 64 * 1024, bool strip = true) {
  return DelimiterCodec(DelimiterOptions{std::move(delim), max_frame, strip});
}

TEST(DelimiterCodec, DefaultsAreNewlineStripped64KiB) {
  DelimiterCodec codec;
  EXPECT_EQ(codec.options().delimiter, "\n");
  EXPECT_EQ(codec.options().max_frame, 64u * 1024);
  EXPECT_TRUE(codec.options().strip_delimiter);
  EXPECT_TRUE(frame_at_every_split(codec, "hello\nnext", "hello", 6));
}

TEST(DelimiterCodec, EveryFrameSplitAtEveryByte) {
  EXPECT_TRUE(frame_at_every_split(delimiter("\n"), "one line\n", "one line", 9));
  EXPECT_TRUE(frame_at_every_split(delimiter("\n"), "\n", "", 1));
  EXPECT_TRUE(frame_at_every_split(delimiter("\r\n"), "GET / HTTP/1.1\r\n", "GET / HTTP/1.1", 16));
  EXPECT_TRUE(frame_at_every_split(delimiter("\r\n"), "\r\n", "", 2));
  EXPECT_TRUE(frame_at_every_split(delimiter("--END--"), "a\nb--END--x", "a\nb", 10));
  // Not stripped: the frame keeps its delimiter.
  EXPECT_TRUE(frame_at_every_split(delimiter("\r\n", 100, false), "abc\r\nz", "abc\r\n", 5));
  EXPECT_TRUE(frame_at_every_split(delimiter("\n", 100, false), "\n", "\n", 1));
  // Any byte may be in a line or be the delimiter, NUL and 0xFF included.
  EXPECT_TRUE(frame_at_every_split(delimiter("\0"s), "a\nb\xff\0"s, "a\nb\xff", 5));
  EXPECT_TRUE(frame_at_every_split(delimiter("\xff\xfe"), "\0\xff\0\xff\xfe"s, "\0\xff\0"s, 5));
}

TEST(DelimiterCodec, FindsTheFirstDelimiterWhenItsPrefixRepeats) {
  // "\r\r\n": the line is "\r"; "aaab" with "aab": the line is "a".
  EXPECT_TRUE(frame_at_every_split(delimiter("\r\n"), "\r\r\n", "\r", 3));
  EXPECT_TRUE(frame_at_every_split(delimiter("aab"), "aaab", "a", 4));
  EXPECT_TRUE(frame_at_every_split(delimiter("abab"), "xabababab", "x", 5));
}

TEST(DelimiterCodec, SeveralFramesInOneBuffer) {
  std::string rest;
  Decoded last;
  auto frames = decode_all(delimiter("\r\n"), "a\r\n\r\nbc\r\nd\re\r\nf\r", &rest, &last);
  EXPECT_EQ(frames, (std::vector<std::string>{"a", "", "bc", "d\re"}));
  EXPECT_EQ(rest, "f\r");
  EXPECT_EQ(last.kind, Decoded::kNeedMore);

  frames = decode_all(delimiter("\n", 100, false), "x\n\ny\n", &rest, &last);
  EXPECT_EQ(frames, (std::vector<std::string>{"x\n", "\n", "y\n"}));
  EXPECT_EQ(rest, "");
}

TEST(DelimiterCodec, LineOfExactlyMaxFrameIsAccepted) {
  const std::string line(16, 'x');
  EXPECT_TRUE(frame_at_every_split(delimiter("\n", 16), line + "\n", line, 17));
  EXPECT_TRUE(frame_at_every_split(delimiter("\r\n", 16), line + "\r\n", line, 18));
  EXPECT_TRUE(frame_at_every_split(delimiter("\r\n", 16, false), line + "\r\n", line + "\r\n", 18));
  EXPECT_TRUE(frame_at_every_split(delimiter("\n", 0), "\n", "", 1));
}

// The error comes as soon as the buffered bytes prove the line too long: max_frame bytes
// plus a delimiter cut short may still be fine; one byte more is not.
TEST(DelimiterCodec, OverlongLineFailsBeforeTheDelimiterArrives) {
  const std::string reason = "delimiter codec: line longer than max_frame";
  auto nl = delimiter("\n", 16);
  EXPECT_EQ(decode_once(nl, std::string(16, 'x')).kind, Decoded::kNeedMore);
  Decoded d = decode_once(nl, std::string(17, 'x'));
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_EQ(d.error.reason, reason);

  auto crlf = delimiter("\r\n", 16);
  EXPECT_EQ(decode_once(crlf, std::string(16, 'x') + "\r").kind, Decoded::kNeedMore);
  EXPECT_EQ(decode_once(crlf, std::string(17, 'x')).kind, Decoded::kNeedMore);
  EXPECT_EQ(decode_once(crlf, std::string(18, 'x')).kind, Decoded::kError);
  EXPECT_EQ(decode_once(crlf, std::string(17, 'x') + "\r").kind, Decoded::kError);

  auto end = delimiter("--END--", 4);
  EXPECT_EQ(decode_once(end, "abcd--END-").kind, Decoded::kNeedMore);
  EXPECT_EQ(decode_once(end, "abcd--END-x").kind, Decoded::kError);
  EXPECT_EQ(decode_once(end, "abcde-END-x").kind, Decoded::kError);

  // The delimiter is there, but after too long a line: still an error.
  d = decode_once(crlf, std::string(17, 'x') + "\r\n");
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_EQ(d.error.reason, reason);
  d = decode_once(crlf, std::string(1000, 'x') + "\r\nok\r\n");
  EXPECT_EQ(d.kind, Decoded::kError);
  // Frames before the long line are delivered first.
  std::string rest;
  Decoded last;
  auto frames = decode_all(nl, "ok\n" + std::string(17, 'y'), &rest, &last);
  EXPECT_EQ(frames, std::vector<std::string>{"ok"});
  EXPECT_EQ(last.kind, Decoded::kError);
}

TEST(DelimiterCodec, HugeMaxFrameDoesNotOverflow) {
  auto codec = delimiter("\r\n", SIZE_MAX);
  EXPECT_EQ(decode_once(codec, std::string(1000, 'x')).kind, Decoded::kNeedMore);
  EXPECT_TRUE(frame_at_every_split(codec, "abc\r\n", "abc", 5));
}

TEST(DelimiterCodec, EmptyDelimiterIsRejectedEverywhere) {
  DelimiterOptions bad{"", 100, true};
  Status s = DelimiterCodec::validate(bad);
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.message(), "delimiter codec: empty delimiter");
  EXPECT_TRUE(DelimiterCodec::validate(DelimiterOptions{}).is_ok());

  DelimiterCodec codec(bad);  // constructing is fine
  for (std::string_view in : {""sv, "abc"sv, "\n"sv}) {
    Decoded d = decode_once(codec, in);
    EXPECT_EQ(d.kind, Decoded::kError);
    EXPECT_STREQ(d.error.reason, "delimiter codec: empty delimiter");
  }
  std::string out;
  StringSink sink{out};
  EXPECT_FALSE(codec.encode("abc", sink).is_ok());
  EXPECT_EQ(out, "");
}

TEST(DelimiterCodec, EncodeWritesLineThenDelimiter) {
  EXPECT_EQ(encoded(delimiter("\n"), "hello"), "hello\n");
  EXPECT_EQ(encoded(delimiter("\r\n"), ""), "\r\n");
  EXPECT_EQ(encoded(delimiter("\r\n", 100, false), "a\rb"), "a\rb\r\n");
  EXPECT_EQ(encoded(delimiter("\r\n", 5), "12345"), "12345\r\n");
  // Round trip, also for a line ending in a part of the delimiter that cannot straddle.
  for (std::string line : {"x"s, "a\r"s, "\n\n"s, ""s}) {
    auto codec = delimiter("\r\n");
    std::string wire = encoded(codec, line);
    EXPECT_TRUE(frame_at_every_split(codec, wire, line, wire.size()));
  }
}

TEST(DelimiterCodec, EncodeRefusesLinesThatWouldNotDecodeAsOne) {
  auto refuses = [](const DelimiterCodec& codec, std::string_view line) {
    std::string out;
    StringSink sink{out};
    Status s = codec.encode(line, sink);
    return !s.is_ok() && out.empty();
  };
  EXPECT_TRUE(refuses(delimiter("\n"), "two\nlines"));
  EXPECT_TRUE(refuses(delimiter("\r\n"), "a\r\nb"));
  EXPECT_TRUE(refuses(delimiter("\n", 4), "12345"));
  // "xab" + "abab" would decode as "x": the delimiter straddles the end of the line.
  EXPECT_TRUE(refuses(delimiter("abab"), "xab"));
  EXPECT_TRUE(refuses(delimiter("aa"), "a"));
  EXPECT_FALSE(refuses(delimiter("abab"), "xa"));
  EXPECT_FALSE(refuses(delimiter("\r\n"), "a\r"));
}

// ---- FixedLengthCodec -----------------------------------------------------------------

FixedLengthCodec fixed(size_t n) { return FixedLengthCodec(FixedLengthOptions{n}); }

TEST(FixedLengthCodec, EveryFrameSplitAtEveryByte) {
  EXPECT_TRUE(frame_at_every_split(fixed(1), "ab", "a", 1));
  EXPECT_TRUE(frame_at_every_split(fixed(4), "abcdefg", "abcd", 4));
  EXPECT_TRUE(frame_at_every_split(fixed(5), "\0\n\xff\r\0"s, "\0\n\xff\r\0"s, 5));
  const std::string big = test::make_payload(1000, 7);
  EXPECT_TRUE(frame_at_every_split(fixed(1000), big + "tail", big, 1000));
}

TEST(FixedLengthCodec, SeveralFramesInOneBuffer) {
  std::string rest;
  Decoded last;
  auto frames = decode_all(fixed(3), "abcdefghij", &rest, &last);
  EXPECT_EQ(frames, (std::vector<std::string>{"abc", "def", "ghi"}));
  EXPECT_EQ(rest, "j");
  EXPECT_EQ(last.kind, Decoded::kNeedMore);
  EXPECT_EQ(decode_once(fixed(3), "").kind, Decoded::kNeedMore);
}

TEST(FixedLengthCodec, ZeroLengthIsRejectedEverywhere) {
  Status s = FixedLengthCodec::validate(FixedLengthOptions{0});
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.message(), "fixed-length codec: frame_length is 0");
  EXPECT_TRUE(FixedLengthCodec::validate(FixedLengthOptions{1}).is_ok());

  FixedLengthCodec codec;  // default options: frame_length 0
  for (std::string_view in : {""sv, "abc"sv}) {
    Decoded d = decode_once(codec, in);
    EXPECT_EQ(d.kind, Decoded::kError);
    EXPECT_STREQ(d.error.reason, "fixed-length codec: frame_length is 0");
  }
  std::string out;
  StringSink sink{out};
  EXPECT_FALSE(codec.encode("", sink).is_ok());
  EXPECT_EQ(out, "");
}

TEST(FixedLengthCodec, EncodeNeedsExactlyFrameLength) {
  auto codec = fixed(4);
  EXPECT_EQ(encoded(codec, "wxyz"), "wxyz");
  for (std::string_view wrong : {""sv, "abc"sv, "abcde"sv}) {
    std::string out;
    StringSink sink{out};
    Status s = codec.encode(wrong, sink);
    EXPECT_FALSE(s.is_ok()) << wrong;
    EXPECT_EQ(s.message(), "fixed-length codec: frame size differs from frame_length");
    EXPECT_EQ(out, "");
  }
}

// ---- LengthFieldCodec -----------------------------------------------------------------

LengthFieldCodec length_field(LengthFieldOptions o) {
  EXPECT_TRUE(LengthFieldCodec::validate(o).is_ok());
  return LengthFieldCodec(o);
}

const std::string kHello = "HELLO, WORLD";  // 12 bytes, as in Netty's documentation

TEST(LengthFieldCodec, DefaultsAreFourByteBigEndian10MiB) {
  LengthFieldCodec codec;
  EXPECT_EQ(codec.options().length_size, 4);
  EXPECT_TRUE(codec.options().big_endian);
  EXPECT_EQ(codec.options().max_frame, 10u * 1024 * 1024);
  EXPECT_TRUE(frame_at_every_split(codec, "\0\0\0\x0c"s + kHello, "\0\0\0\x0c"s + kHello, 16));
}

// The configurations of Netty's LengthFieldBasedFrameDecoder documentation.
TEST(LengthFieldCodec, NettyTwoByteLengthNoStrip) {
  auto codec = length_field({.length_size = 2});
  const std::string wire = "\x00\x0c"s + kHello;
  EXPECT_TRUE(frame_at_every_split(codec, wire + "next", wire, 14));
}

TEST(LengthFieldCodec, NettyTwoByteLengthStripHeader) {
  auto codec = length_field({.length_size = 2, .bytes_to_strip = 2});
  EXPECT_TRUE(frame_at_every_split(codec, "\x00\x0c"s + kHello, kHello, 14));
}

TEST(LengthFieldCodec, NettyLengthIncludesHeader) {
  auto codec = length_field({.length_size = 2, .length_adjustment = -2});
  const std::string wire = "\x00\x0e"s + kHello;
  EXPECT_TRUE(frame_at_every_split(codec, wire, wire, 14));
  auto stripped = length_field({.length_size = 2, .length_adjustment = -2, .bytes_to_strip = 2});
  EXPECT_TRUE(frame_at_every_split(stripped, wire, kHello, 14));
}

TEST(LengthFieldCodec, NettyLeadingHeaderBeforeLength) {
  // Two header bytes (CA FE), then a 3-byte length.
  auto codec = length_field({.length_offset = 2, .length_size = 3});
  const std::string wire = "\xca\xfe\x00\x00\x0c"s + kHello;
  EXPECT_TRUE(frame_at_every_split(codec, wire, wire, 17));
}

TEST(LengthFieldCodec, NettyExtraHeaderAfterLength) {
  // 3-byte length, then two header bytes the length does not count.
  auto codec = length_field({.length_size = 3, .length_adjustment = 2});
  const std::string wire = "\x00\x00\x0c\xca\xfe"s + kHello;
  EXPECT_TRUE(frame_at_every_split(codec, wire, wire, 17));
}

TEST(LengthFieldCodec, NettyHeaderAroundLengthStripFirstThree) {
  auto codec = length_field({.length_offset = 1, .length_size = 2, .length_adjustment = 1,
                             .bytes_to_strip = 3});
  EXPECT_TRUE(frame_at_every_split(codec, "\xca\x00\x0c\xfe"s + kHello, "\xfe"s + kHello, 16));
  // The same, with a length that counts the whole frame.
  auto whole = length_field({.length_offset = 1, .length_size = 2, .length_adjustment = -3,
                             .bytes_to_strip = 3});
  EXPECT_TRUE(frame_at_every_split(whole, "\xca\x00\x10\xfe"s + kHello, "\xfe"s + kHello, 16));
}

TEST(LengthFieldCodec, EverySizeAndByteOrder) {
  EXPECT_TRUE(frame_at_every_split(length_field({.length_size = 1, .bytes_to_strip = 1}),
                                   "\x03" "abcd", "abc", 4));
  EXPECT_TRUE(frame_at_every_split(
      length_field({.length_size = 2, .big_endian = false, .bytes_to_strip = 2}),
      "\x03\x00" "abcd"s, "abc", 5));
  EXPECT_TRUE(frame_at_every_split(
      length_field({.length_size = 3, .big_endian = false, .bytes_to_strip = 3}),
      "\x0c\x00\x00"s + kHello, kHello, 15));
  EXPECT_TRUE(frame_at_every_split(
      length_field({.length_size = 4, .big_endian = false, .bytes_to_strip = 4}),
      "\x02\x00\x00\x00" "ab"s, "ab", 6));
  EXPECT_TRUE(frame_at_every_split(length_field({.length_size = 8, .bytes_to_strip = 8}),
                                   "\0\0\0\0\0\0\0\x0c"s + kHello, kHello, 20));
  EXPECT_TRUE(frame_at_every_split(
      length_field({.length_size = 8, .big_endian = false, .bytes_to_strip = 8}),
      "\x0c\0\0\0\0\0\0\0"s + kHello, kHello, 20));
  // Multi-byte values: every byte of the field counts, in the right order.
  const std::string body(0x0102, 'b');
  EXPECT_TRUE(frame_at_every_split(length_field({.length_size = 2, .bytes_to_strip = 2}),
                                   "\x01\x02"s + body, body, 0x0104));
  EXPECT_TRUE(frame_at_every_split(
      length_field({.length_size = 3, .big_endian = false, .bytes_to_strip = 3}),
      "\x02\x01\x00"s + body, body, 0x0105));
  // Empty bodies.
  EXPECT_TRUE(frame_at_every_split(length_field({.length_size = 2, .bytes_to_strip = 2}),
                                   "\0\0"s, "", 2));
  EXPECT_TRUE(frame_at_every_split(length_field({.length_size = 2}), "\0\0"s, "\0\0"s, 2));
}

TEST(LengthFieldCodec, SeveralFramesInOneBuffer) {
  auto codec = length_field({.length_size = 1, .bytes_to_strip = 1});
  std::string rest;
  Decoded last;
  auto frames = decode_all(codec, "\x01" "a" "\x00" "\x03" "bcd" "\x02" "e"s, &rest, &last);
  EXPECT_EQ(frames, (std::vector<std::string>{"a", "", "bcd"}));
  EXPECT_EQ(rest, "\x02" "e");
  EXPECT_EQ(last.kind, Decoded::kNeedMore);
}

TEST(LengthFieldCodec, MaxFrameCountsTheWholeWireFrame) {
  // max_frame 16 with a 2-byte field: a 14-byte body fits, 15 does not.
  auto codec = length_field({.length_size = 2, .bytes_to_strip = 2, .max_frame = 16});
  const std::string body14(14, 'x');
  EXPECT_TRUE(frame_at_every_split(codec, "\x00\x0e"s + body14, body14, 16));
  Decoded d = decode_once(codec, "\x00\x0f"s + std::string(15, 'x'));
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_STREQ(d.error.reason, "length-field codec: frame longer than max_frame");
}

// The limit is checked from the header alone: nothing of the body is needed.
TEST(LengthFieldCodec, HugeLengthFailsWithOnlyTheHeader) {
  auto codec = length_field({.length_size = 4, .bytes_to_strip = 4, .max_frame = 1024});
  Decoded d = decode_once(codec, "\x7f\xff\xff\xff"s);
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_STREQ(d.error.reason, "length-field codec: frame longer than max_frame");
  EXPECT_EQ(decode_once(codec, "\x00\x00\x04\x01"s).kind, Decoded::kError);  // 1025 + 4
  EXPECT_EQ(decode_once(codec, "\x00\x00\x03\xfc"s).kind, Decoded::kNeedMore);  // 1020 + 4
  // Default limit, 10 MiB: a 4-byte header announcing 10 MiB of body is one byte too many
  // with its header.
  LengthFieldCodec defaults;
  EXPECT_EQ(decode_once(defaults, "\x00\xa0\x00\x00"s).kind, Decoded::kError);
  EXPECT_EQ(decode_once(defaults, "\x00\x9f\xff\xfc"s).kind, Decoded::kNeedMore);
}

TEST(LengthFieldCodec, LengthSmallerThanHeaderFails) {
  // The field counts the whole frame (adjustment -2) but says 1: less than the header.
  auto codec = length_field({.length_size = 2, .length_adjustment = -2});
  for (std::string wire : {"\x00\x01"s, "\x00\x00"s}) {
    Decoded d = decode_once(codec, wire);
    EXPECT_EQ(d.kind, Decoded::kError);
    EXPECT_STREQ(d.error.reason, "length-field codec: frame length smaller than its header");
  }
  EXPECT_TRUE(frame_at_every_split(codec, "\x00\x02"s, "\x00\x02"s, 2));  // header only
  auto very_negative = length_field({.length_size = 8, .length_adjustment = INT64_MIN});
  EXPECT_EQ(decode_once(very_negative, "\x7f\xff\xff\xff\xff\xff\xff\xff"s).kind,
            Decoded::kError);
}

TEST(LengthFieldCodec, EightByteValueOverflowingWhenAdjustedFails) {
  const char* overflow = "length-field codec: adjusted frame length overflows";
  LengthFieldOptions o{.length_size = 8, .length_adjustment = 1, .max_frame = SIZE_MAX};
  Decoded d = decode_once(length_field(o), "\xff\xff\xff\xff\xff\xff\xff\xff"s);
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_STREQ(d.error.reason, overflow);
  // No adjustment: the value plus the 8 header bytes passes 2^64.
  o.length_adjustment = 0;
  d = decode_once(length_field(o), "\xff\xff\xff\xff\xff\xff\xff\xf8"s);
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_STREQ(d.error.reason, overflow);
  // One less fits in 64 bits and then only waits for its (absurd) body.
  d = decode_once(length_field(o), "\xff\xff\xff\xff\xff\xff\xff\xf7"s);
  EXPECT_EQ(d.kind, Decoded::kNeedMore);
  o.length_adjustment = INT64_MAX;
  d = decode_once(length_field(o), "\x80\x00\x00\x00\x00\x00\x00\x01"s);
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_STREQ(d.error.reason, overflow);
}

TEST(LengthFieldCodec, StripMoreThanTheFrameFails) {
  auto codec = length_field({.length_size = 2, .bytes_to_strip = 6});
  Decoded d = decode_once(codec, "\x00\x03"s);  // frame of 5 bytes, strip 6
  EXPECT_EQ(d.kind, Decoded::kError);
  EXPECT_STREQ(d.error.reason, "length-field codec: bytes_to_strip exceeds frame length");
  EXPECT_TRUE(frame_at_every_split(codec, "\x00\x04" "abcd"s, "", 6));  // strip all of it
}

TEST(LengthFieldCodec, InvalidOptionsAreRejectedEverywhere) {
  for (int size : {0, 5, 6, 7, 9, 16, -1}) {
    LengthFieldOptions o{.length_size = size};
    Status s = LengthFieldCodec::validate(o);
    EXPECT_FALSE(s.is_ok()) << size;
    EXPECT_EQ(s.message(), "length-field codec: length_size must be 1, 2, 3, 4 or 8");
    LengthFieldCodec codec(o);
    Decoded d = decode_once(codec, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"s);
    EXPECT_EQ(d.kind, Decoded::kError) << size;
    EXPECT_STREQ(d.error.reason, "length-field codec: length_size must be 1, 2, 3, 4 or 8");
    EXPECT_EQ(decode_once(codec, "").kind, Decoded::kError);
    std::string out;
    StringSink sink{out};
    EXPECT_FALSE(codec.encode("x", sink).is_ok());
    EXPECT_EQ(out, "");
  }
  // A header that alone exceeds max_frame can never frame anything.
  for (LengthFieldOptions o : {LengthFieldOptions{.length_size = 4, .max_frame = 3},
                               LengthFieldOptions{.length_offset = 2, .length_size = 2,
                                                  .max_frame = 3},
                               LengthFieldOptions{.length_offset = SIZE_MAX, .length_size = 8,
                                                  .max_frame = SIZE_MAX}}) {
    Status s = LengthFieldCodec::validate(o);
    EXPECT_EQ(s.message(), "length-field codec: length_offset + length_size exceeds max_frame");
    EXPECT_EQ(decode_once(LengthFieldCodec(o), "\0\0\0\0"s).kind, Decoded::kError);
  }
  EXPECT_TRUE(LengthFieldCodec::validate({.length_size = 4, .max_frame = 4}).is_ok());
  EXPECT_TRUE(LengthFieldCodec::validate({.length_offset = 1, .length_size = 2}).is_ok());
}

TEST(LengthFieldCodec, EncodeWritesFieldThenBody) {
  EXPECT_EQ(encoded(length_field({.length_size = 2}), kHello), "\x00\x0c"s + kHello);
  EXPECT_EQ(encoded(length_field({.length_size = 2, .length_adjustment = -2}), kHello),
            "\x00\x0e"s + kHello);
  EXPECT_EQ(encoded(length_field({.length_size = 3, .big_endian = false}), kHello),
            "\x0c\x00\x00"s + kHello);
  EXPECT_EQ(encoded(length_field({.length_size = 1}), ""), "\x00"s);
  EXPECT_EQ(encoded(length_field({}), "ab"), "\x00\x00\x00\x02" "ab"s);
  EXPECT_EQ(encoded(length_field({.length_size = 4, .big_endian = false}), "ab"),
            "\x02\x00\x00\x00" "ab"s);
  EXPECT_EQ(encoded(length_field({.length_size = 8}), "ab"), "\0\0\0\0\0\0\0\x02" "ab"s);
  EXPECT_EQ(encoded(length_field({.length_size = 8, .big_endian = false}), "ab"),
            "\x02\0\0\0\0\0\0\0" "ab"s);
  // A positive adjustment: the field counts fewer bytes than follow it.
  EXPECT_EQ(encoded(length_field({.length_size = 1, .length_adjustment = 2}), "\xca\xfe" "ab"),
            "\x02\xca\xfe" "ab"s);
  const std::string body(0x0102, 'q');
  EXPECT_EQ(encoded(length_field({.length_size = 2, .big_endian = false}), body),
            "\x02\x01"s + body);
}

TEST(LengthFieldCodec, EncodeThenDecodeGivesTheBody) {
  for (int size : {1, 2, 3, 4, 8}) {
    for (bool big : {true, false}) {
      for (int64_t adj : {int64_t{0}, int64_t{-size}, int64_t{3}}) {
        LengthFieldOptions o{.length_size = size, .big_endian = big, .length_adjustment = adj,
                             .bytes_to_strip = size_t(size)};
        auto codec = length_field(o);
        const std::string body = test::make_payload(200, uint64_t(size));
        const std::string wire = encoded(codec, body);
        SCOPED_TRACE(testing::Message() << "size " << size << " big " << big << " adj " << adj);
        EXPECT_EQ(wire.size(), size_t(size) + body.size());
        EXPECT_TRUE(frame_at_every_split(codec, wire, body, wire.size()));
      }
    }
  }
}

TEST(LengthFieldCodec, EncodeRefusesWhatCannotBeSent) {
  auto refuses = [](LengthFieldOptions o, std::string_view body) {
    LengthFieldCodec codec(o);
    std::string out;
    StringSink sink{out};
    Status s = codec.encode(body, sink);
    return !s.is_ok() && out.empty();
  };
  EXPECT_TRUE(refuses({.length_size = 1}, std::string(256, 'x')));   // 256 > 0xff
  EXPECT_FALSE(refuses({.length_size = 1}, std::string(255, 'x')));
  EXPECT_TRUE(refuses({.length_size = 1, .length_adjustment = -1}, std::string(255, 'x')));
  EXPECT_TRUE(refuses({.length_size = 3, .max_frame = SIZE_MAX}, std::string(1 << 24, 'x')));
  EXPECT_FALSE(
      refuses({.length_size = 3, .max_frame = SIZE_MAX}, std::string((1 << 24) - 1, 'x')));
  EXPECT_TRUE(refuses({.length_size = 2, .length_adjustment = 3}, "ab"));  // value -1
  EXPECT_TRUE(refuses({.length_offset = 2, .length_size = 2}, "ab"));     // offset unknown
  EXPECT_TRUE(refuses({.length_size = 2, .max_frame = 5}, "abcd"));       // 6 > 5
  EXPECT_FALSE(refuses({.length_size = 2, .max_frame = 5}, "abc"));
  // 2 + 2^63 does not fit in 4 bytes, but does in 8 (and decodes back to "ab").
  EXPECT_TRUE(refuses({.length_size = 4, .length_adjustment = INT64_MIN}, "ab"));
  auto wide = length_field({.length_size = 8, .length_adjustment = INT64_MIN,
                            .bytes_to_strip = 8});
  EXPECT_EQ(encoded(wide, "ab"), "\x80\0\0\0\0\0\0\x02" "ab"s);
  EXPECT_TRUE(frame_at_every_split(wide, "\x80\0\0\0\0\0\0\x02" "ab"s, "ab", 10));
}

// ---- sinks with writev ------------------------------------------------------------------

TEST(SimpleCodecEncode, HeaderAndBodyGoOutInOneWritev) {
  VectorSink lines;
  ASSERT_TRUE(delimiter("\r\n").encode("abc", lines).is_ok());
  EXPECT_EQ(lines.out, "abc\r\n");
  EXPECT_EQ(lines.writevs, 1);
  EXPECT_EQ(lines.writes, 0);

  VectorSink frames;
  ASSERT_TRUE(length_field({.length_size = 2}).encode("abc", frames).is_ok());
  EXPECT_EQ(frames.out, "\x00\x03" "abc"s);
  EXPECT_EQ(frames.writevs, 1);
  EXPECT_EQ(frames.writes, 0);

  VectorSink refused;  // nothing at all on error
  EXPECT_FALSE(length_field({.length_size = 1}).encode(std::string(256, 'x'), refused).is_ok());
  EXPECT_FALSE(delimiter("\n").encode("a\nb", refused).is_ok());
  EXPECT_EQ(refused.writevs + refused.writes, 0);
}

// ---- over loopback sockets, through FramedHandler ---------------------------------------

// Counts closes so a test can wait for the server to have dropped a connection.
template <typename C>
class CountingHandler : public FramedHandler<C> {
 public:
  explicit CountingHandler(C codec) : FramedHandler<C>(std::move(codec)) {}
  void on_close(Conn&, CloseInfo) override { closes_.fetch_add(1); }
  size_t closes() const { return closes_.load(); }

 private:
  std::atomic<size_t> closes_{0};
};

// Answers each line with "<" + line, through the codec's encoder.
class LineEchoHandler : public CountingHandler<DelimiterCodec> {
 public:
  using CountingHandler::CountingHandler;
  Action on_message(Conn& c, const std::string_view& line) override {
    if (!c.write("<")) return Action::kClose;
    return codec().encode(line, c) ? Action::kNone : Action::kClose;
  }
};

// Answers each frame with its bytes reversed.
class ReverseHandler : public CountingHandler<FixedLengthCodec> {
 public:
  using CountingHandler::CountingHandler;
  Action on_message(Conn& c, const std::string_view& frame) override {
    std::string reversed(frame.rbegin(), frame.rend());
    return codec().encode(reversed, c) ? Action::kNone : Action::kClose;
  }
};

// Answers each body with the same body, length field in front.
class BodyEchoHandler : public CountingHandler<LengthFieldCodec> {
 public:
  using CountingHandler::CountingHandler;
  Action on_message(Conn& c, const std::string_view& body) override {
    return codec().encode(body, c) ? Action::kNone : Action::kClose;
  }
};

// Lets a partial frame reach the server on its own before the rest is sent.
void pause_between_sends() { std::this_thread::sleep_for(Millis(20)); }

class SimpleCodecOverSockets : public testing::TestWithParam<Backend> {};

// "\r\n" lines split at awkward points (inside the delimiter, inside a line) and several
// in one write come back exactly; an over-long line closes only its own connection.
TEST_P(SimpleCodecOverSockets, DelimiterEchoesLinesAndDropsOverlongLine) {
  LineEchoHandler handler(DelimiterCodec({.delimiter = "\r\n", .max_frame = 16}));
  test::TestServer server(handler, test::test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  test::Client good, bad;
  ASSERT_TRUE(good.connect_tcp(server.port()));
  ASSERT_TRUE(bad.connect_tcp(server.port()));

  ASSERT_TRUE(good.send_all("hello\r"));
  pause_between_sends();
  ASSERT_TRUE(good.send_all("\nwor"));
  std::string got;
  ASSERT_TRUE(good.recv_exact(8, &got));
  EXPECT_EQ(got, "<hello\r\n");
  EXPECT_FALSE(good.readable_within(Millis(50)));  // "wor" is not a line yet
  got.clear();
  const std::string sixteen(16, 's');
  const std::string want = "<world\r\n<\r\n<a\rb\r\n<" + sixteen + "\r\n";
  ASSERT_TRUE(good.exchange("ld\r\n\r\na\rb\r\n" + sixteen + "\r\n", want.size(), &got));
  EXPECT_EQ(got, want);

  // 18 bytes and no "\r\n": longer than 16 whatever comes next. The line before it is
  // answered, then the server closes (orderly: nothing unread is left behind).
  ASSERT_TRUE(bad.send_all("ok\r\n" + std::string(18, 'z')));
  got.clear();
  ASSERT_TRUE(bad.recv_until_eof(&got));
  EXPECT_EQ(got, "<ok\r\n");
  ASSERT_TRUE(test::wait_until([&] { return handler.closes() == 1; }, test::kIoTimeout));
  EXPECT_EQ(handler.protocol_errors(), 1u);

  // The other connection goes on, many lines per write.
  std::string lines, replies;
  for (int i = 0; i < 500; ++i) {
    lines += "line " + std::to_string(i) + "\r\n";
    replies += "<line " + std::to_string(i) + "\r\n";
  }
  got.clear();
  ASSERT_TRUE(good.exchange(lines, replies.size(), &got));
  EXPECT_TRUE(test::same_bytes(replies, got));
  EXPECT_EQ(handler.protocol_errors(), 1u);
  EXPECT_EQ(handler.closes(), 1u);
  EXPECT_TRUE(test::wait_until([&] { return handler.frames_decoded() == 5 + 1 + 500; },
                               test::kIoTimeout))
      << handler.frames_decoded();
}

// 4-byte frames split across writes and many per write are each answered reversed; a
// connection that leaves with half a frame is not a protocol error.
TEST_P(SimpleCodecOverSockets, FixedLengthAnswersEachFrame) {
  ReverseHandler handler(FixedLengthCodec({.frame_length = 4}));
  test::TestServer server(handler, test::test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  test::Client c, quitter;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(quitter.connect_tcp(server.port()));

  ASSERT_TRUE(c.send_all("abc"));
  EXPECT_FALSE(c.readable_within(Millis(50)));  // three bytes are no frame
  ASSERT_TRUE(c.send_all("defgh"));
  pause_between_sends();
  ASSERT_TRUE(c.send_all("i"));
  std::string got;
  ASSERT_TRUE(c.recv_exact(8, &got));
  EXPECT_EQ(got, "dcbahgfe");
  EXPECT_FALSE(c.readable_within(Millis(50)));  // "i" waits for three more bytes

  std::string frames = "jkl", replies = "lkji";
  for (int i = 0; i < 1000; ++i) {
    std::string frame = test::make_payload(4, uint64_t(i));
    frames += frame;
    replies.append(frame.rbegin(), frame.rend());
  }
  got.clear();
  ASSERT_TRUE(c.exchange(frames, replies.size(), &got));
  EXPECT_TRUE(test::same_bytes(replies, got));

  ASSERT_TRUE(quitter.send_all("xy"));
  pause_between_sends();
  quitter.close();
  ASSERT_TRUE(test::wait_until([&] { return handler.closes() == 1; }, test::kIoTimeout));
  EXPECT_EQ(handler.protocol_errors(), 0u);
  EXPECT_TRUE(test::wait_until([&] { return handler.frames_decoded() == 3 + 1000; },
                               test::kIoTimeout))
      << handler.frames_decoded();
}

// Bodies behind a 2-byte length (stripped on decode, written again by encode) split inside
// the header and the body, and many per write; a header announcing more than max_frame
// closes its connection before any body is sent, and the other connection goes on.
TEST_P(SimpleCodecOverSockets, LengthFieldEchoesBodiesAndDropsHugeHeader) {
  const LengthFieldOptions options{.length_size = 2, .bytes_to_strip = 2, .max_frame = 1024};
  BodyEchoHandler handler{LengthFieldCodec(options)};
  const LengthFieldCodec client_codec(options);
  test::TestServer server(handler, test::test_options(GetParam(), 2));
  ASSERT_TRUE(server.start());
  test::Client good, bad;
  ASSERT_TRUE(good.connect_tcp(server.port()));
  ASSERT_TRUE(bad.connect_tcp(server.port()));

  const std::string hello = encoded(client_codec, "hello");
  ASSERT_TRUE(good.send_all(hello.substr(0, 1)));  // half the length field
  pause_between_sends();
  ASSERT_TRUE(good.send_all(hello.substr(1, 3)));  // the rest of it and "he"
  EXPECT_FALSE(good.readable_within(Millis(50)));
  const std::string largest(1022, 'L');            // 1022 + 2 = max_frame
  const std::string tail = hello.substr(4) + encoded(client_codec, "") +
                           encoded(client_codec, largest);
  std::string want = hello + encoded(client_codec, "") + encoded(client_codec, largest);
  std::string got;
  ASSERT_TRUE(good.exchange(tail, want.size(), &got));
  EXPECT_TRUE(test::same_bytes(want, got));

  // 0xFFFF + 2 bytes is over 1024: refused from the two header bytes alone.
  ASSERT_TRUE(bad.send_all("\xff\xff"));
  got.clear();
  ASSERT_TRUE(bad.recv_until_eof(&got));
  EXPECT_EQ(got, "");
  ASSERT_TRUE(test::wait_until([&] { return handler.closes() == 1; }, test::kIoTimeout));
  EXPECT_EQ(handler.protocol_errors(), 1u);

  std::string frames;
  for (int i = 0; i < 300; ++i) frames += encoded(client_codec, test::make_payload(i, i));
  got.clear();
  ASSERT_TRUE(good.exchange(frames, frames.size(), &got));
  EXPECT_TRUE(test::same_bytes(frames, got));
  EXPECT_EQ(handler.protocol_errors(), 1u);
  EXPECT_EQ(handler.closes(), 1u);
  EXPECT_TRUE(test::wait_until([&] { return handler.frames_decoded() == 3 + 300; },
                               test::kIoTimeout))
      << handler.frames_decoded();
}

INSTANTIATE_TEST_SUITE_P(Backends, SimpleCodecOverSockets, testing::ValuesIn(test::test_backends()),
                         test::backend_param_name);

}  // namespace
}  // namespace ringnet::proto
