// SPDX-License-Identifier: MIT
// FramedHandler<Codec>, the adapter between the engine and any codec, over real sockets
// with a toy codec (one length byte, then the body): frames split across arrivals and
// batched in one arrival are delivered whole and in order; a protocol error answers,
// closes only that connection and is counted; kClose from on_message stops delivery;
// codec hints reach on_need_more; the codec word starts at zero on every connection.
#include <gtest/gtest.h>
#include <ringnet/proto/framed_handler.h>

#include <atomic>
#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

using proto::Decoded;

// [len:u8][body:len]. Bodies longer than max_body are an error seen from the length byte.
struct ByteLenCodec {
  using Frame = std::string_view;
  size_t max_body = 100;

  Decoded decode(std::string_view in, Frame& frame) const {
    if (in.empty()) return Decoded::need_more();
    size_t len = static_cast<unsigned char>(in[0]);
    if (len > max_body) return Decoded::fail("frame too long");
    if (in.size() < 1 + len) return Decoded::need_more(len >= 50 ? 7 : 0);
    frame = in.substr(1, len);
    return Decoded::frame(1 + len);
  }

  template <proto::ByteSink S>
  Status write_error_reply(const proto::ProtocolError& error, S& sink) const {
    return sink.write(std::string("E:") + error.reason + "\n");
  }
};

std::string frame_of(std::string_view body) {
  return std::string(1, static_cast<char>(body.size())) + std::string(body);
}

class BracketHandler : public proto::FramedHandler<ByteLenCodec> {
 public:
  Action on_message(Conn& c, const std::string_view& body) override {
    if (body == "word") {
      std::string reply = "[word:" + std::to_string(c.codec_word()) + "]";
      c.set_codec_word(42);
      return c.write(reply).is_ok() ? Action::kNone : Action::kClose;
    }
    std::string reply = "[" + std::string(body) + "]";
    if (!c.write(reply)) return Action::kClose;
    return body == "close" ? Action::kClose : Action::kNone;
  }
  Action on_need_more(Conn&, uint8_t hint) override {
    if (hint == 7) hints_.fetch_add(1);
    return Action::kNone;
  }
  std::atomic<int> hints_{0};
};

class FramedTest : public HandlerTest<BracketHandler> {};

TEST_P(FramedTest, SplitAndBatchedFramesAreDeliveredWholeAndInOrder) {
  ASSERT_TRUE(start(1));
  std::string wire, expect;
  for (int i = 0; i < 500; ++i) {
    std::string body = make_payload(static_cast<size_t>(i % 97), static_cast<uint64_t>(i));
    for (char& ch : body) ch = static_cast<char>('a' + static_cast<unsigned char>(ch) % 26);
    wire += frame_of(body);
    expect += "[" + body + "]";
  }
  Client c;
  ASSERT_TRUE(c.connect_tcp(port()));
  c.set_nodelay();
  // Odd-sized pieces, so frames straddle arrivals; the server sees some whole frames in
  // one arrival and some split at every kind of boundary.
  std::string got;
  size_t at = 0;
  for (size_t piece = 1; at < wire.size(); piece = piece % 13 + 1) {
    size_t n = std::min(piece * 37, wire.size() - at);
    ASSERT_TRUE(c.send_all(std::string_view(wire).substr(at, n)));
    at += n;
  }
  ASSERT_TRUE(c.recv_exact(expect.size(), &got));
  EXPECT_TRUE(same_bytes(expect, got));
  EXPECT_TRUE(wait_until([&] { return handler_.frames_decoded() == 500; }, 5000ms))
      << handler_.frames_decoded();
  EXPECT_EQ(handler_.protocol_errors(), 0u);
}

TEST_P(FramedTest, ProtocolErrorAnswersAndClosesOnlyThatConnection) {
  Client good, bad;
  ASSERT_TRUE(start(1, {&good, &bad}));

  std::string got;
  ASSERT_TRUE(good.exchange(frame_of("one"), 5, &got));
  EXPECT_EQ(got, "[one]");

  // A good frame, a bad length byte, then a frame that must never be delivered.
  std::string wire = frame_of("x") + std::string(1, static_cast<char>(200)) + "junk" +
                     frame_of("after");
  ASSERT_TRUE(bad.send_all(wire));
  std::string reply;
  EXPECT_EQ(bad.wait_end(5000ms, &reply), End::kEof);
  EXPECT_EQ(reply, "[x]E:frame too long\n");
  EXPECT_TRUE(wait_until([&] { return handler_.protocol_errors() == 1; }, 5000ms));

  got.clear();
  ASSERT_TRUE(good.exchange(frame_of("two"), 5, &got));
  EXPECT_EQ(got, "[two]");
  EXPECT_EQ(handler_.protocol_errors(), 1u);
}

TEST_P(FramedTest, CloseFromOnMessageStopsLaterFrames) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  ASSERT_TRUE(c.send_all(frame_of("a") + frame_of("close") + frame_of("b")));
  std::string reply;
  EXPECT_EQ(c.wait_end(5000ms, &reply), End::kEof);
  EXPECT_EQ(reply, "[a][close]");
}

TEST_P(FramedTest, NeedMoreHintReachesTheHandlerThenTheFrameCompletes) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  std::string body(60, 'h');
  std::string wire = frame_of(body);
  ASSERT_TRUE(c.send_all(wire.substr(0, 11)));
  ASSERT_TRUE(wait_until([&] { return handler_.hints_.load() >= 1; }, 5000ms));
  EXPECT_FALSE(c.readable_within(50ms));  // nothing answered for a partial frame
  std::string got;
  ASSERT_TRUE(c.exchange(wire.substr(11), body.size() + 2, &got));
  EXPECT_EQ(got, "[" + body + "]");
}

TEST_P(FramedTest, CodecWordStartsAtZeroOnEveryConnection) {
  ASSERT_TRUE(start(1));
  for (int round = 0; round < 3; ++round) {
    Client c;
    ASSERT_TRUE(c.connect_tcp(port()));
    std::string got;
    ASSERT_TRUE(c.exchange(frame_of("word"), 8, &got));
    EXPECT_EQ(got, "[word:0]") << "round " << round;
    got.clear();
    ASSERT_TRUE(c.exchange(frame_of("word"), 9, &got));
    EXPECT_EQ(got, "[word:42]");
    c.close();
    // The next connection reuses the slot only once this one is gone.
    ASSERT_TRUE(wait_until([&] { return server_->engine().stats().open == 0; }, 5000ms));
  }
}

TEST_P(FramedTest, FramesAreCountedOverEveryLoop) {
  ASSERT_TRUE(start(2));
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(port(), 4, &clients));
  std::string wire, expect;
  for (int i = 0; i < 100; ++i) {
    wire += frame_of("f" + std::to_string(i));
    expect += "[f" + std::to_string(i) + "]";
  }
  for (Client& c : clients) {
    std::string got;
    ASSERT_TRUE(c.exchange(wire, expect.size(), &got));
    EXPECT_EQ(got, expect);
  }
  EXPECT_TRUE(wait_until([&] { return handler_.frames_decoded() == 400; }, 5000ms))
      << handler_.frames_decoded();
}

INSTANTIATE_TEST_SUITE_P(Backends, FramedTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
