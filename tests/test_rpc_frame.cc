// SPDX-License-Identifier: MIT
// RpcFrameCodec: the exact header bytes, decode of every valid frame split at every byte,
// several frames in one buffer, each protocol error with only the header (or less)
// present, the body-size limits at their edges, encode/decode round trips for every type;
// the budget field (flags bit 1): its bytes, its place in body_length and the limits,
// every split of a budget frame through read_frames; then FramedHandler<RpcFrameCodec>
// over real loopback sockets on every backend: pipelined calls answered in order, a bad
// connection closed while others go on, an oversized body_length refused without waiting
// for the body, a budget frame dribbled in answered with its budget.
#include <gtest/gtest.h>
#include <ringnet/proto/frame_reader.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/rpc_frame.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "codec_test_support.h"
#include "test_support.h"

namespace ringnet::proto {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;

std::string encode_to_string(const RpcFrameCodec& codec, const RpcFrame& frame) {
  std::string out;
  StringSink sink{out};
  Status s = codec.encode(frame, sink);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return out;
}

std::string encode_to_string(const RpcFrame& frame) {
  return encode_to_string(RpcFrameCodec{}, frame);
}

// A header as raw bytes, with every field under the test's control.
std::string raw_header(uint16_t magic, uint8_t version, uint8_t type, uint32_t body_length) {
  std::string h(kRpcHeaderSize, '\0');
  h[0] = static_cast<char>(magic >> 8);
  h[1] = static_cast<char>(magic & 0xFF);
  h[2] = static_cast<char>(version);
  h[3] = static_cast<char>(type);
  for (int i = 0; i < 4; ++i) h[16 + i] = static_cast<char>(body_length >> (24 - 8 * i));
  return h;
}

std::string valid_header(uint32_t body_length) {
  return raw_header(kRpcMagic, kRpcVersion, 0, body_length);
}

// Frames that cover each type, empty and binary bodies, reserved flag bits, extreme ids.
std::vector<RpcFrame> sample_frames() {
  static const std::string binary_body("\0\x01\xff\r\nRN\0"sv);
  static const std::string big_body = test::make_payload(300, 7);
  return {
      {RpcType::kRequest, 0, 1, 1, ""},
      {RpcType::kRequest, kRpcFlagIdempotent, 2, 42, "hello"},
      {RpcType::kResponse, 0, 0xFFFF, std::numeric_limits<uint64_t>::max(), binary_body},
      {RpcType::kOneWay, 0xFFFE, 9, 0, "x"},
      {RpcType::kError, 0xFFFF, 7, 0x0102030405060708ull, "unknown method 7"},
      {RpcType::kRequest, 0x8001, 0x1234, 1ull << 40, big_body},
  };
}

// ---- layout ---------------------------------------------------------------------------

TEST(RpcFrameLayout, HeaderBytesAreBigEndianAtFixedOffsets) {
  RpcHeaderBytes h = encode_rpc_header(RpcType::kOneWay, 0xA1B2, 0xC3D4,
                                       0x0102030405060708ull, 0x0A0B0C0D);
  const std::string expected(
      "\x52\x4E"                          // magic "RN"
      "\x01"                              // version
      "\x02"                              // type one-way
      "\xA1\xB2"                          // flags
      "\xC3\xD4"                          // method
      "\x01\x02\x03\x04\x05\x06\x07\x08"  // request_id
      "\x0A\x0B\x0C\x0D",                 // body_length
      20);
  EXPECT_EQ(std::string(h.data(), h.size()), expected);
  EXPECT_EQ(kRpcHeaderSize, 20u);
  EXPECT_EQ(kRpcMagic, 0x524E);
  EXPECT_EQ(kRpcVersion, 1);
}

TEST(RpcFrameLayout, EncodeWritesHeaderThenBody) {
  RpcFrame f{RpcType::kRequest, kRpcFlagIdempotent, 2, 258, "abc"};
  const std::string expected(
      "RN\x01\x00"
      "\x00\x01"
      "\x00\x02"
      "\x00\x00\x00\x00\x00\x00\x01\x02"
      "\x00\x00\x00\x03"
      "abc",
      23);
  EXPECT_EQ(encode_to_string(f), expected);
}

TEST(RpcFrameLayout, DecodesHandWrittenFrame) {
  const std::string wire(
      "RN\x01\x01"
      "\x80\x01"
      "\x00\x07"
      "\xFF\x00\x00\x00\x00\x00\x00\x09"
      "\x00\x00\x00\x02"
      "ok",
      22);
  RpcFrame f;
  Decoded d = RpcFrameCodec{}.decode(wire, f);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(d.consumed, 22u);
  EXPECT_EQ(f.type, RpcType::kResponse);
  EXPECT_EQ(f.flags, 0x8001);  // reserved bit 15 passed through
  EXPECT_TRUE(f.idempotent());
  EXPECT_EQ(f.method, 7);
  EXPECT_EQ(f.request_id, 0xFF00000000000009ull);
  EXPECT_EQ(f.body, "ok");
  // The body is a view into the input, not a copy.
  EXPECT_EQ(f.body.data(), wire.data() + 20);
}

TEST(RpcFrameLayout, TypeNames) {
  EXPECT_STREQ(rpc_type_name(RpcType::kRequest), "request");
  EXPECT_STREQ(rpc_type_name(RpcType::kResponse), "response");
  EXPECT_STREQ(rpc_type_name(RpcType::kOneWay), "one-way");
  EXPECT_STREQ(rpc_type_name(RpcType::kError), "error");
  EXPECT_STREQ(rpc_type_name(static_cast<RpcType>(9)), "unknown");
}

// ---- decode: splits, several frames, round trips --------------------------------------

// Every prefix of a valid frame needs more; the whole frame (alone, or followed by the
// start of another) decodes to the same frame and consumes exactly its bytes.
TEST(RpcFrameDecode, EveryValidFrameSplitAtEveryByte) {
  const RpcFrameCodec codec;
  for (const RpcFrame& original : sample_frames()) {
    const std::string wire = encode_to_string(original);
    ASSERT_TRUE(test::needs_more_at_every_prefix(codec, wire, wire.size()))
        << "frame of " << wire.size() << " bytes";
    RpcFrame whole;
    Decoded d = codec.decode(wire, whole);
    ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
    EXPECT_EQ(d.consumed, wire.size());
    EXPECT_EQ(whole, original);

    const std::string with_tail = wire + "RN\x01";
    RpcFrame again;
    d = codec.decode(with_tail, again);
    ASSERT_EQ(d.kind, Decoded::kFrame);
    EXPECT_EQ(d.consumed, wire.size());
    EXPECT_EQ(again, original);
  }
}

TEST(RpcFrameDecode, SeveralFramesInOneBuffer) {
  const RpcFrameCodec codec;
  const std::vector<RpcFrame> frames = sample_frames();
  std::string buffer;
  for (const RpcFrame& f : frames) buffer += encode_to_string(f);
  const std::string partial = encode_to_string({RpcType::kRequest, 0, 1, 99, "later"});
  buffer += partial.substr(0, 23);

  std::string_view rest = buffer;
  std::vector<RpcFrame> got;
  Decoded last = test::decode_each(codec, rest,
                                   [&](const RpcFrame& f, const Decoded&) { got.push_back(f); });
  EXPECT_EQ(got, frames);
  EXPECT_EQ(rest.size(), 23u);
  EXPECT_EQ(last.kind, Decoded::kNeedMore);
}

TEST(RpcFrameDecode, RoundTripEveryType) {
  const RpcFrameCodec codec;
  for (uint8_t t = 0; t <= 3; ++t) {
    for (uint16_t flags : {uint16_t{0}, uint16_t{1}, uint16_t{0xFFFF}}) {
      const std::string body = "body-" + std::to_string(t);  // outlives the frame's view
      const RpcFrame original{static_cast<RpcType>(t), flags, static_cast<uint16_t>(100 + t),
                              0xDEADBEEF00000000ull + t, body};
      const std::string wire = encode_to_string(codec, original);
      const size_t budget = (flags & kRpcFlagBudget) != 0 ? kRpcBudgetSize : 0;
      ASSERT_EQ(wire.size(), kRpcHeaderSize + budget + body.size());
      RpcFrame decoded;
      Decoded d = codec.decode(wire, decoded);
      ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
      EXPECT_EQ(d.consumed, wire.size());
      EXPECT_EQ(decoded, original) << "type " << int{t} << " flags " << flags;
      // Re-encoding the decoded frame gives the same bytes.
      EXPECT_EQ(encode_to_string(codec, decoded), wire);
    }
  }
}

TEST(RpcFrameDecode, ZeroLengthBody) {
  const std::string wire = encode_to_string({RpcType::kOneWay, 0, 5, 77, ""});
  ASSERT_EQ(wire.size(), kRpcHeaderSize);
  RpcFrame f;
  f.body = "stale";
  Decoded d = RpcFrameCodec{}.decode(wire, f);
  ASSERT_EQ(d.kind, Decoded::kFrame);
  EXPECT_EQ(d.consumed, kRpcHeaderSize);
  EXPECT_TRUE(f.body.empty());
  EXPECT_EQ(f.request_id, 77u);
  EXPECT_EQ(f.type, RpcType::kOneWay);
}

TEST(RpcFrameDecode, EmptyInputNeedsMore) {
  RpcFrame f;
  Decoded d = RpcFrameCodec{}.decode("", f);
  EXPECT_EQ(d.kind, Decoded::kNeedMore);
  EXPECT_EQ(d.hint, 0);
}

// ---- decode: errors, with only the header present ---------------------------------------

void expect_error(const RpcFrameCodec& codec, std::string_view in, const char* reason) {
  RpcFrame f;
  Decoded d = codec.decode(in, f);
  ASSERT_EQ(d.kind, Decoded::kError) << "input of " << in.size() << " bytes";
  EXPECT_STREQ(d.error.reason, reason);
  // The reason is the header's constant itself, so callers may compare pointers.
  EXPECT_EQ(static_cast<const void*>(d.error.reason), static_cast<const void*>(reason));
  EXPECT_EQ(d.consumed, 0u);
}

TEST(RpcFrameErrors, BadMagic) {
  const RpcFrameCodec codec;
  expect_error(codec, raw_header(0x4E52, 1, 0, 0), kRpcErrorBadMagic);  // swapped bytes
  expect_error(codec, raw_header(0x524F, 1, 0, 0), kRpcErrorBadMagic);  // second byte off
  expect_error(codec, raw_header(0x0000, 1, 0, 0), kRpcErrorBadMagic);
}

TEST(RpcFrameErrors, UnsupportedVersion) {
  const RpcFrameCodec codec;
  expect_error(codec, raw_header(kRpcMagic, 0, 0, 0), kRpcErrorBadVersion);
  expect_error(codec, raw_header(kRpcMagic, 2, 0, 0), kRpcErrorBadVersion);
  expect_error(codec, raw_header(kRpcMagic, 255, 0, 0), kRpcErrorBadVersion);
}

TEST(RpcFrameErrors, UnknownType) {
  const RpcFrameCodec codec;
  expect_error(codec, raw_header(kRpcMagic, 1, 4, 0), kRpcErrorBadType);
  expect_error(codec, raw_header(kRpcMagic, 1, 255, 0), kRpcErrorBadType);
}

TEST(RpcFrameErrors, BodyBelowMinBody) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 4, .max_body = 100});
  expect_error(codec, valid_header(3), kRpcErrorBodyTooSmall);
  expect_error(codec, valid_header(0), kRpcErrorBodyTooSmall);
}

TEST(RpcFrameErrors, BodyOverMaxBodyFailsFromHeaderAlone) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 0, .max_body = 100});
  expect_error(codec, valid_header(101), kRpcErrorBodyTooLarge);
  expect_error(codec, valid_header(0xFFFFFFFF), kRpcErrorBodyTooLarge);
  // The default limit is 10 MiB.
  expect_error(RpcFrameCodec{}, valid_header(kRpcDefaultMaxBody + 1), kRpcErrorBodyTooLarge);
  EXPECT_EQ(kRpcDefaultMaxBody, 10u * 1024 * 1024);
}

// Magic, version and type are refused as soon as their bytes are there, so a client
// speaking another protocol is not left waiting for 20 bytes.
TEST(RpcFrameErrors, FixedFieldsRejectedBeforeHeaderIsComplete) {
  const RpcFrameCodec codec;
  expect_error(codec, "G", kRpcErrorBadMagic);
  expect_error(codec, "GET / HTTP/1.0\r\n", kRpcErrorBadMagic);
  expect_error(codec, "RX", kRpcErrorBadMagic);
  expect_error(codec, "RN\x02"sv, kRpcErrorBadVersion);
  expect_error(codec, "RN\x01\x04"sv, kRpcErrorBadType);
  RpcFrame f;
  EXPECT_EQ(codec.decode("R", f).kind, Decoded::kNeedMore);
  EXPECT_EQ(codec.decode("RN\x01\x03"sv, f).kind, Decoded::kNeedMore);
}

// ---- limits at their edges ----------------------------------------------------------------

TEST(RpcFrameLimits, MaxBodyIsInclusive) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 0, .max_body = 64});
  const std::string body(64, 'm');
  const std::string wire = encode_to_string(codec, {RpcType::kRequest, 0, 1, 5, body});
  RpcFrame f;
  // Header alone with body_length == max: waits for the body.
  EXPECT_EQ(codec.decode(std::string_view(wire).substr(0, kRpcHeaderSize), f).kind,
            Decoded::kNeedMore);
  Decoded d = codec.decode(wire, f);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(f.body, body);
  expect_error(codec, valid_header(65), kRpcErrorBodyTooLarge);
}

TEST(RpcFrameLimits, MinBodyIsInclusive) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 4, .max_body = 64});
  const std::string wire = encode_to_string(codec, {RpcType::kRequest, 0, 1, 5, "four"});
  RpcFrame f;
  Decoded d = codec.decode(wire, f);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(f.body, "four");
  expect_error(codec, valid_header(3), kRpcErrorBodyTooSmall);
}

// A 4 GiB body_length allowed by the limit only needs more bytes; nothing wraps.
TEST(RpcFrameLimits, LargestBodyLengthWaitsForBody) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 0, .max_body = 0xFFFFFFFF});
  RpcFrame f;
  Decoded d = codec.decode(valid_header(0xFFFFFFFF) + "partial", f);
  EXPECT_EQ(d.kind, Decoded::kNeedMore);
}

TEST(RpcFrameLimits, MinAboveMaxRefusesEverything) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 10, .max_body = 5});
  expect_error(codec, valid_header(7), kRpcErrorBodyTooSmall);
  expect_error(codec, valid_header(11), kRpcErrorBodyTooLarge);
}

// ---- encode errors -------------------------------------------------------------------------

void expect_encode_refused(const RpcFrameCodec& codec, const RpcFrame& frame) {
  std::string out;
  StringSink sink{out};
  Status s = codec.encode(frame, sink);
  EXPECT_FALSE(s.is_ok());
  EXPECT_FALSE(s.message().empty());
  EXPECT_TRUE(out.empty()) << "wrote " << out.size() << " bytes";
}

TEST(RpcFrameEncode, BodyOverMaxBodyRefused) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 0, .max_body = 8});
  expect_encode_refused(codec, {RpcType::kResponse, 0, 1, 1, "123456789"});
  EXPECT_EQ(encode_to_string(codec, {RpcType::kResponse, 0, 1, 1, "12345678"}).size(), 28u);
}

TEST(RpcFrameEncode, BodyBelowMinBodyRefused) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 2, .max_body = 8});
  expect_encode_refused(codec, {RpcType::kResponse, 0, 1, 1, "1"});
}

TEST(RpcFrameEncode, UnknownTypeRefused) {
  expect_encode_refused(RpcFrameCodec{}, {static_cast<RpcType>(4), 0, 1, 1, "x"});
}

// A sink failure on the header is reported and the body is not written.
TEST(RpcFrameEncode, SinkErrorIsReturned) {
  struct FailingSink {
    int writes = 0;
    Status write(std::string_view) {
      ++writes;
      return Status::invalid("sink closed");
    }
  } sink;
  Status s = RpcFrameCodec{}.encode({RpcType::kRequest, 0, 1, 1, "body"}, sink);
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.message(), "sink closed");
  EXPECT_EQ(sink.writes, 1);
}


// ---- the budget field (flags bit 1) ------------------------------------------------------

// A frame with the budget flag set and `ms` as its budget.
RpcFrame budget_frame(uint32_t ms, std::string_view body, uint16_t flags = 0) {
  RpcFrame f{RpcType::kRequest, flags, 3, 0x1122334455667788ull, body};
  f.set_budget(ms);
  return f;
}

TEST(RpcFrameBudget, SetBudgetSetsTheFlagOnly) {
  RpcFrame f{RpcType::kRequest, kRpcFlagIdempotent, 1, 1, "x"};
  EXPECT_FALSE(f.has_budget());
  f.set_budget(250);
  EXPECT_TRUE(f.has_budget());
  EXPECT_EQ(f.flags, kRpcFlagIdempotent | kRpcFlagBudget);
  EXPECT_EQ(f.budget_ms, 250u);
  EXPECT_EQ(kRpcFlagBudget, 0x0002);
  EXPECT_EQ(kRpcBudgetSize, 4u);
}

// Encode, decode, encode again, for budgets at both ends and bodies empty and not.
TEST(RpcFrameBudget, RoundTrip) {
  const RpcFrameCodec codec;
  for (uint32_t ms : {0u, 1u, 0xFFFFFFFFu}) {
    for (std::string_view body : {""sv, "hello"sv}) {
      SCOPED_TRACE("budget " + std::to_string(ms) + " body " + std::string(body));
      const RpcFrame original = budget_frame(ms, body);
      const std::string wire = encode_to_string(codec, original);
      ASSERT_EQ(wire.size(), kRpcHeaderSize + kRpcBudgetSize + body.size());
      RpcFrame decoded;
      Decoded d = codec.decode(wire, decoded);
      ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
      EXPECT_EQ(d.consumed, wire.size());
      EXPECT_TRUE(decoded.has_budget());
      EXPECT_EQ(decoded.budget_ms, ms);
      EXPECT_EQ(decoded.body, body);
      EXPECT_EQ(decoded, original);
      EXPECT_EQ(encode_to_string(codec, decoded), wire);
    }
  }
}

// The budget is the 4 bytes after the header, big-endian, counted in body_length; the body
// follows it, and decode's body view starts there.
TEST(RpcFrameBudget, WireBytesAtFixedOffsets) {
  const std::string wire = encode_to_string(
      budget_frame(0x0A0B0C0D, "abc", kRpcFlagIdempotent));
  const std::string expected(
      "RN\x01\x00"                         // magic, version, type request
      "\x00\x03"                           // flags: idempotent | budget
      "\x00\x03"                           // method
      "\x11\x22\x33\x44\x55\x66\x77\x88"   // request_id
      "\x00\x00\x00\x07"                   // body_length = 4 (budget) + 3 (body)
      "\x0A\x0B\x0C\x0D"                   // budget_ms at offset 20
      "abc",                               // body at offset 24
      27);
  EXPECT_EQ(wire, expected);

  RpcFrame f;
  Decoded d = RpcFrameCodec{}.decode(wire, f);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(f.budget_ms, 0x0A0B0C0Du);
  EXPECT_EQ(f.body, "abc");
  EXPECT_EQ(f.body.data(), wire.data() + kRpcHeaderSize + kRpcBudgetSize);

  // encode_rpc_head writes the same 24 bytes; without the flag, 20 and no budget.
  std::array<char, kRpcHeaderSize + kRpcBudgetSize> head{};
  ASSERT_EQ(encode_rpc_head(f, head.data()), kRpcHeaderSize + kRpcBudgetSize);
  EXPECT_EQ(std::string(head.data(), head.size()), expected.substr(0, 24));
  RpcFrame plain = f;
  plain.flags = 0;
  ASSERT_EQ(encode_rpc_head(plain, head.data()), kRpcHeaderSize);
  EXPECT_EQ(std::string(head.data() + 16, 4), std::string("\x00\x00\x00\x03", 4));
}

// A budget ignored without its flag: budget_ms is neither sent nor decoded.
TEST(RpcFrameBudget, NoFlagNoBudgetBytes) {
  RpcFrame f{RpcType::kRequest, 0, 1, 1, "body"};
  f.budget_ms = 1234;  // without set_budget
  const std::string wire = encode_to_string(f);
  EXPECT_EQ(wire.size(), kRpcHeaderSize + 4);
  RpcFrame decoded;
  decoded.budget_ms = 99;
  ASSERT_EQ(RpcFrameCodec{}.decode(wire, decoded).kind, Decoded::kFrame);
  EXPECT_EQ(decoded.body, "body");
  EXPECT_EQ(decoded.budget_ms, 0u);
}

// Every prefix of a budget frame needs more (the split inside the budget field included),
// and read_frames, the adapter's decode loop, gives the frame whole from two arrivals split
// at any byte, and from one byte per arrival with the buffer moving between them.
TEST(RpcFrameBudget, EverySplitPointThroughTheAdapterLoop) {
  const RpcFrameCodec codec;
  const std::string big_body = test::make_payload(300, 11);
  for (std::string_view body : {""sv, "hello"sv, std::string_view(big_body)}) {
    const RpcFrame original = budget_frame(0xC0FFEE, body);
    const std::string wire = encode_to_string(codec, original);
    SCOPED_TRACE("frame of " + std::to_string(wire.size()) + " bytes");
    ASSERT_TRUE(test::needs_more_at_every_prefix(codec, wire, wire.size()));

    auto feed = [&](const std::vector<std::string_view>& arrivals) {
      StringInput input;
      DecodeWork work;
      std::vector<RpcFrame> got;
      std::vector<std::string> bodies;  // the views die with each callback
      for (std::string_view a : arrivals) {
        input.arrive(a);
        read_frames(
            codec, input, work,
            [&](const RpcFrame& f) {
              got.push_back(f);
              bodies.emplace_back(f.body);
              return Action::kNone;
            },
            [](uint8_t) { return Action::kNone; },
            [&](const ProtocolError& e) {
              ADD_FAILURE() << "protocol error " << e.reason;
              input.discard();
              return Action::kClose;
            });
        input.relocate();
      }
      EXPECT_TRUE(input.peek().empty()) << input.peek().size() << " bytes left";
      EXPECT_EQ(got.size(), 1u);
      if (got.size() != 1) return false;
      got[0].body = bodies[0];
      EXPECT_EQ(got[0], original);
      return got[0] == original;
    };
    for (size_t cut = 0; cut <= wire.size(); ++cut) {
      const std::string_view w = wire;
      ASSERT_TRUE(feed({w.substr(0, cut), w.substr(cut)})) << "split at " << cut;
    }
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < wire.size(); ++i) bytes.push_back(std::string_view(wire).substr(i, 1));
    ASSERT_TRUE(feed(bytes)) << "one byte per arrival";
  }
}

// body_length 0..3 with the flag cannot hold the budget: refused from the header alone,
// whether the short body is there yet or not.
TEST(RpcFrameBudget, ShortBudgetRefusedFromHeader) {
  const RpcFrameCodec codec;
  for (uint32_t length = 0; length < kRpcBudgetSize; ++length) {
    SCOPED_TRACE("body_length " + std::to_string(length));
    const RpcHeaderBytes h = encode_rpc_header(RpcType::kRequest, kRpcFlagBudget, 1, 1, length);
    const std::string header(h.data(), h.size());
    expect_error(codec, header, kRpcErrorShortBudget);
    expect_error(codec, header + std::string(length, '\x01'), kRpcErrorShortBudget);
  }
  // 4 is enough: a zero-length body after the budget.
  const RpcHeaderBytes h = encode_rpc_header(RpcType::kRequest, kRpcFlagBudget, 1, 1, 4);
  RpcFrame f;
  Decoded d = codec.decode(std::string(h.data(), h.size()) + "\0\0\0\x05"s, f);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(f.budget_ms, 5u);
  EXPECT_TRUE(f.body.empty());
}

// max_body and min_body bound body_length, so the 4 budget bytes count against them, on
// encode and on decode alike.
TEST(RpcFrameBudget, LimitsApplyToBodyPlusBudget) {
  const RpcFrameCodec codec(RpcFrameOptions{.min_body = 0, .max_body = 8});
  EXPECT_EQ(encode_to_string(codec, budget_frame(1, "1234")).size(), kRpcHeaderSize + 8);
  expect_encode_refused(codec, budget_frame(1, "12345"));  // 4 + 5 > 8, though 5 <= 8

  const std::string fits = encode_to_string(budget_frame(1, "1234"));
  RpcFrame f;
  EXPECT_EQ(codec.decode(fits, f).kind, Decoded::kFrame);
  const std::string over = encode_to_string(budget_frame(1, "12345"));
  expect_error(codec, std::string_view(over).substr(0, kRpcHeaderSize), kRpcErrorBodyTooLarge);
  expect_error(codec, over, kRpcErrorBodyTooLarge);

  // min_body 4: an empty body with a budget has body_length 4 and passes.
  const RpcFrameCodec at_least_4(RpcFrameOptions{.min_body = 4, .max_body = 64});
  const std::string empty = encode_to_string(at_least_4, budget_frame(7, ""));
  EXPECT_EQ(at_least_4.decode(empty, f).kind, Decoded::kFrame);
  const RpcFrameCodec at_least_5(RpcFrameOptions{.min_body = 5, .max_body = 64});
  expect_encode_refused(at_least_5, budget_frame(7, ""));
  expect_error(at_least_5, empty, kRpcErrorBodyTooSmall);
}

}  // namespace
}  // namespace ringnet::proto

// ---- FramedHandler<RpcFrameCodec> over loopback ------------------------------------------

namespace ringnet::test {
namespace {

using proto::Decoded;
using proto::RpcFrame;
using proto::RpcFrameCodec;
using proto::RpcFrameOptions;
using proto::RpcType;

// Answers a request with a response carrying the same id, method and body; counts one-way
// frames; closes a connection that sends a response or error frame.
class RpcEchoHandler : public proto::FramedHandler<RpcFrameCodec> {
 public:
  explicit RpcEchoHandler(RpcFrameOptions options = {})
      : FramedHandler(RpcFrameCodec(options)) {}

  Action on_message(Conn& conn, const RpcFrame& frame) override {
    switch (frame.type) {
      case RpcType::kRequest: {
        RpcFrame reply = frame;
        reply.type = RpcType::kResponse;
        return codec().encode(reply, conn).is_ok() ? Action::kNone : Action::kClose;
      }
      case RpcType::kOneWay:
        one_way_.fetch_add(1);
        return Action::kNone;
      default:
        return Action::kClose;
    }
  }

  uint64_t one_way() const { return one_way_.load(); }

 private:
  std::atomic<uint64_t> one_way_{0};
};

std::string encode(const RpcFrame& frame) {
  std::string out;
  proto::StringSink sink{out};
  EXPECT_TRUE(RpcFrameCodec(RpcFrameOptions{.min_body = 0, .max_body = 0xFFFFFFFF})
                  .encode(frame, sink)
                  .is_ok());
  return out;
}

std::string header_only(uint16_t magic, uint32_t body_length) {
  proto::RpcHeaderBytes h = proto::encode_rpc_header(RpcType::kRequest, 0, 1, 1, body_length);
  h[0] = static_cast<char>(magic >> 8);
  h[1] = static_cast<char>(magic & 0xFF);
  return std::string(h.data(), h.size());
}

// One request/response exchange on an open client.
testing::AssertionResult call(Client& c, uint64_t id, std::string_view body) {
  std::string got;
  testing::AssertionResult r =
      c.exchange(encode({RpcType::kRequest, 0, 1, id, body}), proto::kRpcHeaderSize + body.size(),
                 &got);
  if (!r) return r;
  RpcFrame f;
  Decoded d = RpcFrameCodec{}.decode(got, f);
  if (d.kind != Decoded::kFrame || d.consumed != got.size()) {
    return testing::AssertionFailure() << "reply does not decode as one frame";
  }
  if (f.type != RpcType::kResponse || f.request_id != id || f.body != body) {
    return testing::AssertionFailure() << "reply mismatch: type " << proto::rpc_type_name(f.type)
                                       << " id " << f.request_id;
  }
  return testing::AssertionSuccess();
}

class RpcFramedTest : public HandlerTest<RpcEchoHandler> {};

// 500 requests of varied sizes in one write: 500 responses, in order, each with its
// request's id and body, byte for byte.
TEST_P(RpcFramedTest, PipelinedRequestsAnsweredInOrderWithMatchingIds) {
  ASSERT_TRUE(start(2));

  constexpr int kCalls = 500;
  std::string requests;
  std::string expected;
  for (int i = 0; i < kCalls; ++i) {
    const uint64_t id = 1000 + static_cast<uint64_t>(i) * 7;
    const std::string body = make_payload(static_cast<size_t>((i * 131) % 3000), id);
    const auto method = static_cast<uint16_t>(i % 5);
    requests += encode({RpcType::kRequest, static_cast<uint16_t>(i & 1), method, id, body});
    expected += encode({RpcType::kResponse, static_cast<uint16_t>(i & 1), method, id, body});
  }
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  std::string got;
  ASSERT_TRUE(c.exchange(requests, expected.size(), &got, Millis(30000)));
  EXPECT_TRUE(same_bytes(expected, got));

  // Decoded independently: ids in request order.
  std::string_view rest = got;
  for (int i = 0; i < kCalls; ++i) {
    RpcFrame f;
    Decoded d = RpcFrameCodec{}.decode(rest, f);
    ASSERT_EQ(d.kind, Decoded::kFrame) << "response " << i;
    EXPECT_EQ(f.request_id, 1000 + static_cast<uint64_t>(i) * 7);
    EXPECT_EQ(f.type, RpcType::kResponse);
    rest.remove_prefix(d.consumed);
  }
  EXPECT_TRUE(rest.empty());
  EXPECT_FALSE(c.readable_within(Millis(50)));
  EXPECT_EQ(handler_.frames_decoded(), static_cast<uint64_t>(kCalls));
  EXPECT_EQ(handler_.protocol_errors(), 0u);
}

// One frame dribbled out a byte at a time is answered once, whole.
TEST_P(RpcFramedTest, FrameSentByteByByteIsAnsweredOnce) {
  ASSERT_TRUE(start(1));
  const std::string body = make_payload(40, 3);
  const std::string wire = encode({RpcType::kRequest, 0, 2, 55, body});
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  c.set_nodelay();
  for (char ch : wire) {
    ASSERT_TRUE(c.send_all(std::string_view(&ch, 1)));
    std::this_thread::sleep_for(Millis(1));
  }
  std::string got;
  ASSERT_TRUE(c.recv_exact(wire.size(), &got));
  EXPECT_TRUE(same_bytes(encode({RpcType::kResponse, 0, 2, 55, body}), got));
  EXPECT_FALSE(c.readable_within(Millis(50)));
  EXPECT_EQ(handler_.frames_decoded(), 1u);
}

// A budget frame dribbled in a byte at a time is answered once, and the echo carries the
// same budget and body: the handler got budget_ms and a body without the budget bytes.
TEST_P(RpcFramedTest, BudgetFrameSentByteByByteKeepsItsBudget) {
  ASSERT_TRUE(start(1));
  RpcFrame request{RpcType::kRequest, 0, 4, 77, "deadline"};
  request.set_budget(1500);
  RpcFrame reply = request;
  reply.type = RpcType::kResponse;
  const std::string wire = encode(request);
  ASSERT_EQ(wire.size(), proto::kRpcHeaderSize + proto::kRpcBudgetSize + 8);
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  c.set_nodelay();
  for (char ch : wire) {
    ASSERT_TRUE(c.send_all(std::string_view(&ch, 1)));
    std::this_thread::sleep_for(Millis(1));
  }
  std::string got;
  ASSERT_TRUE(c.recv_exact(wire.size(), &got));
  EXPECT_TRUE(same_bytes(encode(reply), got));
  EXPECT_FALSE(c.readable_within(Millis(50)));
  EXPECT_EQ(handler_.frames_decoded(), 1u);
}

// A 4 MiB body survives the trip both ways.
TEST_P(RpcFramedTest, LargeBodyRoundTrip) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  EXPECT_TRUE(call(c, 9, make_payload(4 * 1024 * 1024, 9)));
}

// A one-way frame gets no reply: the next bytes back answer the request that follows it.
TEST_P(RpcFramedTest, OneWayGetsNoReply) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  ASSERT_TRUE(c.send_all(encode({RpcType::kOneWay, 0, 1, 1, "fire"}) +
                         encode({RpcType::kOneWay, 0, 1, 2, "forget"})));
  EXPECT_TRUE(call(c, 3, "answered"));
  EXPECT_FALSE(c.readable_within(Millis(50)));
  EXPECT_EQ(handler_.one_way(), 2u);
}

// A connection with a bad magic is closed (no answer); a second connection, open before
// and after, keeps working; exactly one protocol error is counted.
TEST_P(RpcFramedTest, BadMagicClosesOnlyThatConnection) {
  Client good;
  Client bad;
  ASSERT_TRUE(start(2, {&good, &bad}));
  ASSERT_TRUE(call(good, 1, "before"));

  ASSERT_TRUE(bad.send_all(header_only(0x5858, 0)));
  std::string data;
  EXPECT_EQ(bad.wait_end(Millis(5000), &data), End::kEof);
  EXPECT_TRUE(data.empty()) << "server answered a bad frame with " << data.size() << " bytes";

  EXPECT_TRUE(call(good, 2, "after"));
  EXPECT_TRUE(wait_until([&] { return handler_.protocol_errors() >= 1; }, Millis(5000)));
  EXPECT_EQ(handler_.protocol_errors(), 1u);
  EXPECT_EQ(handler_.frames_decoded(), 2u);
}

// body_length over max_body: closed right after the header, no body ever sent.
TEST_P(RpcFramedTest, OversizedBodyLengthClosesWithoutWaitingForBody) {
  RpcEchoHandler handler(RpcFrameOptions{.min_body = 0, .max_body = 1024});
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(call(c, 1, std::string(1024, 'k')));  // == max is fine

  ASSERT_TRUE(c.send_all(header_only(proto::kRpcMagic, 1025)));
  auto start = Clock::now();
  EXPECT_EQ(c.wait_end(Millis(5000)), End::kEof);
  EXPECT_LT(Clock::now() - start, Millis(3000));
  EXPECT_TRUE(wait_until([&] { return handler.protocol_errors() >= 1; }, Millis(5000)));
  EXPECT_EQ(handler.protocol_errors(), 1u);
  EXPECT_EQ(handler.frames_decoded(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Backends, RpcFramedTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
