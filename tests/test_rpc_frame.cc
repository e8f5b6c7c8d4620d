// SPDX-License-Identifier: MIT
// RpcFrameCodec: the exact header bytes, decode of every valid frame split at every byte,
// several frames in one buffer, each protocol error with only the header (or less)
// present, the body-size limits at their edges, encode/decode round trips for every type;
// then FramedHandler<RpcFrameCodec> over real loopback sockets on every backend:
// pipelined calls answered in order, a bad connection closed while others go on, an
// oversized body_length refused without waiting for the body.
#include <gtest/gtest.h>
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
