// SPDX-License-Identifier: MIT
// Decoding cost is linear in the bytes, whatever the arrival pattern (issue #19, finding 5).
//
// Each codec gets large frames fed in 1-byte and small steps through read_frames, the loop
// FramedHandler runs on every arrival, over a buffer that moves in memory between arrivals.
// Checked: the frames are byte-identical to those decoded from one arrival; the bytes
// decode calls may have examined (DecodeWork::examined) stay within kPerByte per byte; for
// length-prefixed frames, decode is called a bounded number of times per frame; once the
// frames are complete the connection keeps no checkpoint; whole small frames never create
// one. Then FramedHandler over loopback sockets: a RESP command of 20,000 arguments and an
// HTTP upload of 5,000 one-byte chunks, each trickled in small writes.
#include <gtest/gtest.h>
#include <ringnet/proto/delimiter_codec.h>
#include <ringnet/proto/fixed_length_codec.h>
#include <ringnet/proto/frame_reader.h>
#include <ringnet/proto/http1.h>
#include <ringnet/proto/http_server.h>
#include <ringnet/proto/length_field_codec.h>
#include <ringnet/proto/resp.h>
#include <ringnet/proto/rpc_frame.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "test_support.h"

namespace ringnet::proto {
namespace {

// Bytes examined per byte of input, at most. A codec that starts over on every arrival
// examines ~size/2 per byte when the bytes come one at a time.
constexpr uint64_t kPerByte = 4;

// ---- frames as comparable strings -------------------------------------------------------

std::string describe(std::string_view frame) { return std::string(frame); }

std::string describe(const RpcFrame& f) {
  return std::to_string(int(f.type)) + "/" + std::to_string(f.flags) + "/" +
         std::to_string(f.method) + "/" + std::to_string(f.request_id) + "/" +
         std::string(f.body);
}

std::string describe(const RespCommand& cmd) {
  std::string out;
  for (std::string_view arg : cmd) out += std::to_string(arg.size()) + ":" + std::string(arg);
  return out;
}

std::string describe(const HttpRequest& r) {
  std::string out = std::string(r.method) + " " + std::string(r.target) + " " +
                    std::string(r.path) + "?" + std::string(r.query) + " " +
                    (r.version == HttpVersion::k11 ? "1.1" : "1.0") + "\n";
  for (const HttpHeader& h : r.headers) out += std::string(h.name) + ":" + std::string(h.value) + "\n";
  out += std::to_string(r.content_length) + (r.chunked ? " chunked" : "") +
         (r.keep_alive ? " keep-alive" : "") + (r.expect_continue ? " expect" : "") + "\n";
  return out + std::string(r.body);
}

// RESP consumes empty commands as empty frames, as many as the arrivals make (see resp.h);
// RespHandler drops them, and so do we.
template <typename F>
bool delivered(const F&) {
  return true;
}
bool delivered(const RespCommand& cmd) { return !cmd.empty(); }

// ---- the trickle driver -------------------------------------------------------------------

struct Trickled {
  std::vector<std::string> frames;
  DecodeWork work;
  std::string error;
  bool over_budget = false;     // stopped early: examined more than the budget
  bool checkpoint_left = false; // a checkpoint was still held after the last arrival
};

// Feeds `wire` through read_frames in arrivals of `step` bytes; the buffer moves every
// 64 arrivals. Stops early once more than `budget` bytes were examined.
template <typename C>
Trickled trickle(const C& codec, std::string_view wire, size_t step, uint64_t budget) {
  StringInput input;
  Trickled out;
  size_t arrivals = 0;
  for (size_t at = 0; at < wire.size(); at += step) {
    input.arrive(wire.substr(at, step));
    if (++arrivals % 64 == 0) input.relocate();
    read_frames(
        codec, input, out.work,
        [&](const typename C::Frame& f) {
          if (delivered(f)) out.frames.push_back(describe(f));
          return Action::kNone;
        },
        [](uint8_t) { return Action::kNone; },
        [&](const ProtocolError& e) {
          out.error = e.reason;
          input.discard();
          return Action::kClose;
        });
    if (!out.error.empty()) break;
    if (out.work.examined > budget) {
      out.over_budget = true;
      break;
    }
  }
  out.checkpoint_left = input.protocol_state() != nullptr;
  return out;
}

// Equal frame lists, without printing megabytes when they differ.
testing::AssertionResult same_frames(const std::vector<std::string>& want,
                                     const std::vector<std::string>& got) {
  if (want.size() != got.size()) {
    return testing::AssertionFailure() << got.size() << " frames, want " << want.size();
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      return testing::AssertionFailure() << "frame " << i << " differs (" << got[i].size()
                                         << " bytes, want " << want[i].size() << ")";
    }
  }
  return testing::AssertionSuccess();
}

// `wire` holds `frames` complete frames. Fed in one piece, then in steps of 1, 7 and 1024
// bytes: the same frames, at most kPerByte bytes examined per byte, no checkpoint left
// behind, and (if max_calls_per_frame) at most that many decode calls per frame.
template <typename C>
void expect_linear(const C& codec, std::string_view wire, size_t frames,
                   uint64_t max_calls_per_frame = 0) {
  const Trickled whole = trickle(codec, wire, wire.size(), UINT64_MAX);
  ASSERT_EQ(whole.error, "");
  ASSERT_EQ(whole.frames.size(), frames);
  EXPECT_FALSE(whole.checkpoint_left);
  const uint64_t budget = kPerByte * wire.size();
  for (size_t step : {size_t{1}, size_t{7}, size_t{1024}}) {
    SCOPED_TRACE("arrivals of " + std::to_string(step) + " bytes");
    const Trickled t = trickle(codec, wire, step, budget);
    if (t.over_budget) {
      ADD_FAILURE() << "examined over " << kPerByte << " bytes per byte of " << wire.size()
                    << " after " << t.frames.size() << " frames, " << t.work.calls
                    << " decode calls";
      continue;
    }
    EXPECT_EQ(t.error, "");
    EXPECT_LE(t.work.examined, budget);
    EXPECT_TRUE(same_frames(whole.frames, t.frames));
    EXPECT_FALSE(t.checkpoint_left);
    if (max_calls_per_frame != 0) {
      EXPECT_LE(t.work.calls, max_calls_per_frame * frames) << t.work.calls << " decode calls";
    }
    testing::Test::RecordProperty("examined_per_byte_step_" + std::to_string(step),
                   std::to_string(double(t.work.examined) / double(wire.size())));
  }
}

std::string letters(size_t n, uint64_t seed) {
  std::string s = test::make_payload(n, seed);
  for (char& c : s) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 26);
  return s;
}

// ---- the simple codecs ----------------------------------------------------------------------

TEST(DecodeCost, DelimiterLongLines) {
  const DelimiterCodec codec({.delimiter = "\r\n", .max_frame = 1 << 20});
  const std::string wire = letters(200'000, 1) + "\r\n" + letters(3, 2) + "\r\n" +
                           letters(50'000, 3) + "\r\n";
  expect_linear(codec, wire, 3);
}

TEST(DecodeCost, FixedLengthLargeFrames) {
  const FixedLengthCodec codec({.frame_length = 64 * 1024});
  expect_linear(codec, test::make_payload(4 * 64 * 1024, 4), 4, 3);
}

TEST(DecodeCost, LengthFieldLargeFrames) {
  const LengthFieldCodec codec({.length_size = 4, .bytes_to_strip = 4});
  std::string wire;
  StringSink sink{wire};
  for (size_t n : {200'000, 5, 70'000}) {
    ASSERT_TRUE(codec.encode(test::make_payload(n, n), sink).is_ok());
  }
  expect_linear(codec, wire, 3, 4 + 3);
}

TEST(DecodeCost, RpcFrameLargeBodies) {
  const RpcFrameCodec codec;
  std::string wire;
  StringSink sink{wire};
  uint64_t id = 1;
  for (size_t n : {200'000, 0, 70'000}) {
    const std::string body = test::make_payload(n, n);
    ASSERT_TRUE(codec.encode({.type = RpcType::kRequest, .request_id = id++, .body = body}, sink)
                    .is_ok());
  }
  expect_linear(codec, wire, 3, kRpcHeaderSize + 3);
}

// ---- RESP -----------------------------------------------------------------------------------

std::string resp_command(size_t args, size_t arg_size, uint64_t seed) {
  std::vector<std::string> owned{"MSET"};
  for (size_t i = 1; i < args; ++i) owned.push_back(letters(arg_size + i % 5, seed + i));
  std::vector<std::string_view> views(owned.begin(), owned.end());
  std::string wire;
  StringSink sink{wire};
  EXPECT_TRUE(RespCodec::encode(std::span<const std::string_view>(views), sink).is_ok());
  return wire;
}

TEST(DecodeCost, RespManyArguments) {
  const std::string wire = resp_command(20'000, 10, 5) + "*1\r\n$4\r\nPING\r\n" +
                           resp_command(3'000, 1, 6);
  expect_linear(RespCodec(), wire, 3);
}

TEST(DecodeCost, RespLargeBulkAndLongInline) {
  std::string inline_cmd = "SET";
  for (int i = 0; i < 4'000; ++i) inline_cmd += " w" + std::to_string(i);
  const std::string wire = resp_command(3, 200'000, 7) + inline_cmd + "\r\n" +
                           "\r\n*0\r\nPING\r\n" + resp_command(2, 70'000, 8);
  expect_linear(RespCodec(), wire, 4);
}

// ---- HTTP/1.1 ----------------------------------------------------------------------------

TEST(DecodeCost, HttpManyHeaders) {
  const Http1Codec codec({.max_header_bytes = 1 << 20, .max_headers = 10'000});
  std::string head = "GET /many?headers=yes HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 5'000; ++i) head += "X-Field-" + std::to_string(i) + ": v" + letters(8, i) + "\r\n";
  const std::string wire = head + "\r\n" + "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  expect_linear(codec, wire, 2);
}

TEST(DecodeCost, HttpChunkedManyTinyChunks) {
  const Http1Codec codec;
  std::string wire = "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string data = letters(20'000, 9);
  for (char c : data) wire += "1\r\n" + std::string(1, c) + "\r\n";
  wire += "0\r\nX-Trailer: t\r\n\r\n";
  wire += "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  expect_linear(codec, wire, 2);
}

TEST(DecodeCost, HttpChunkedLargeChunksAndContentLength) {
  const Http1Codec codec;
  std::string wire = "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t n : {100'000, 3, 60'000}) {
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx;ext=1\r\n", n);
    wire += size_line + letters(n, n) + "\r\n";
  }
  wire += "0\r\n\r\n";
  // One chunk only: the body stays a view into the input.
  wire += "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n186a0\r\n" +
          letters(100'000, 10) + "\r\n0\r\n\r\n";
  wire += "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 150000\r\n\r\n" + letters(150'000, 11);
  expect_linear(codec, wire, 3);
}

// ---- the fast path ----------------------------------------------------------------------------

// Small frames that arrive whole never make read_frames allocate a checkpoint.
template <typename C>
void expect_no_checkpoint_for_whole_frames(const C& codec, const std::string& one, int n) {
  StringInput input;
  DecodeWork work;
  for (int i = 0; i < n; ++i) {
    input.arrive(one);
    read_frames(
        codec, input, work, [](const typename C::Frame&) { return Action::kNone; },
        [](uint8_t) { return Action::kNone; }, [](const ProtocolError&) { return Action::kClose; });
    ASSERT_EQ(input.protocol_state(), nullptr) << "arrival " << i;
    ASSERT_EQ(input.peek().size(), 0u);
  }
  EXPECT_EQ(work.frames, uint64_t(n));
  EXPECT_EQ(work.examined, one.size() * n);
}

TEST(DecodeCost, WholeSmallFramesKeepNoCheckpoint) {
  expect_no_checkpoint_for_whole_frames(RespCodec(), resp_command(3, 100, 12), 100);
  expect_no_checkpoint_for_whole_frames(
      Http1Codec(), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", 100);
  expect_no_checkpoint_for_whole_frames(DelimiterCodec(), "a line\n", 100);
  expect_no_checkpoint_for_whole_frames(RpcFrameCodec(),
                                        std::string(encode_rpc_header(RpcType::kRequest, 0, 1, 2, 0)
                                                        .data(), kRpcHeaderSize),
                                        100);
}

}  // namespace
}  // namespace ringnet::proto

// ---- FramedHandler over real sockets --------------------------------------------------------

namespace ringnet::test {
namespace {

// Sends `wire` in pieces of `step` bytes, each only once the server has read everything
// before it, so every piece is an arrival of its own.
testing::AssertionResult send_trickled(Client& c, Engine& engine, std::string_view wire,
                                       size_t step) {
  const uint64_t before = engine.stats().bytes_in;
  for (size_t at = 0; at < wire.size(); at += step) {
    std::string_view piece = wire.substr(at, step);
    if (auto r = c.send_all(piece); !r) return r;
    const uint64_t want = before + at + piece.size();
    if (!wait_until([&] { return engine.stats().bytes_in >= want; }, kIoTimeout, Millis(0))) {
      return testing::AssertionFailure() << "the server did not read byte " << want;
    }
  }
  return testing::AssertionSuccess();
}

// Answers each command with its argument count.
class ArgCountHandler final : public proto::RespHandler {
 public:
  Action on_command(Conn& c, const proto::RespCommand& cmd) override {
    return proto::resp::write_integer(c, int64_t(cmd.size())) ? Action::kNone : Action::kClose;
  }
};

class RespCostSocketTest : public HandlerTest<ArgCountHandler> {};

TEST_P(RespCostSocketTest, TrickledCommandOfManyArgumentsCostsLinearWork) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  c.set_nodelay();
  const std::string wire = proto::resp_command(20'000, 10, 13);
  ASSERT_TRUE(send_trickled(c, server_->engine(), wire, 1024));
  std::string got;
  ASSERT_TRUE(c.recv_exact(8, &got));
  EXPECT_EQ(got, ":20000\r\n");
  EXPECT_LE(handler_.bytes_examined(), proto::kPerByte * wire.size())
      << handler_.decode_calls() << " decode calls";
}

INSTANTIATE_TEST_SUITE_P(Backends, RespCostSocketTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

// Answers each request with its body size.
class BodySizeApp final : public proto::HttpServerHandler {
 public:
  Action on_request(Conn& c, const proto::HttpRequest& req) override {
    return proto::respond(c, req, 200, "text/plain", std::to_string(req.body.size())).is_ok()
               ? Action::kNone
               : Action::kClose;
  }
};

class HttpCostSocketTest : public HandlerTest<BodySizeApp> {};

TEST_P(HttpCostSocketTest, TrickledTinyChunksCostLinearWork) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  c.set_nodelay();
  std::string wire = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5'000; ++i) wire += "1\r\nz\r\n";
  wire += "0\r\n\r\n";
  ASSERT_TRUE(send_trickled(c, server_->engine(), wire, 6));
  // The answer's body is "5000", after a head of unknown size (it has a Date).
  std::string got;
  size_t end = std::string::npos;
  while ((end = got.find("\r\n\r\n")) == std::string::npos || got.size() < end + 8) {
    ASSERT_TRUE(c.recv_exact(1, &got));
  }
  EXPECT_EQ(got.substr(end + 4), "5000") << got;
  EXPECT_LE(handler_.bytes_examined(), proto::kPerByte * wire.size())
      << handler_.decode_calls() << " decode calls";
}

INSTANTIATE_TEST_SUITE_P(Backends, HttpCostSocketTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
