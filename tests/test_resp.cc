// SPDX-License-Identifier: MIT
// RESP2 codec: multibulk and inline commands at every split point, several per buffer,
// empty commands, each error and limit, byte-exact reply encoders; then the codec behind
// FramedHandler over real loopback sockets (PING/ECHO, 1,000 pipelined commands answered
// in order, a protocol error answered and closed while another connection goes on).
#include <gtest/gtest.h>
#include <ringnet/proto/resp.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec_test_support.h"
#include "test_support.h"

namespace ringnet::proto {
namespace {

using namespace std::string_literals;
using test::CountingSink;
using test::VectorSink;
using Args = std::vector<std::string>;

Args args_of(const RespCommand& cmd) { return Args(cmd.begin(), cmd.end()); }

std::string encode_args(const Args& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  std::string out;
  StringSink sink{out};
  EXPECT_TRUE(RespCodec::encode(std::span<const std::string_view>(views), sink).is_ok());
  return out;
}

struct Result {
  Decoded::Kind kind;
  size_t consumed = 0;
  std::string reason;
  Args args;
};

Result decode(const RespCodec& codec, std::string_view in) {
  RespCommand cmd;
  Decoded d = codec.decode(in, cmd);
  Result r{d.kind, d.consumed, d.error.reason, {}};
  if (d.kind == Decoded::kFrame) {
    r.args = args_of(cmd);
    for (std::string_view a : cmd) {
      // Views into the input must lie inside the bytes the frame consumed (quoted inline
      // arguments live in the frame's own storage instead).
      bool in_input = a.data() >= in.data() && a.data() + a.size() <= in.data() + d.consumed;
      if (!in_input && in[0] == '*') ADD_FAILURE() << "multibulk arg outside the input";
    }
  } else {
    EXPECT_EQ(cmd.size(), 0u) << "a frame left behind by a non-frame result";
  }
  return r;
}

// Every proper prefix needs more; the whole gives `expected` and consumes everything.
void expect_every_split(const RespCodec& codec, std::string_view bytes, const Args& expected) {
  for (size_t k = 0; k < bytes.size(); ++k) {
    Result r = decode(codec, bytes.substr(0, k));
    ASSERT_EQ(r.kind, Decoded::kNeedMore) << "prefix of " << k << " bytes: " << r.reason;
  }
  Result r = decode(codec, bytes);
  ASSERT_EQ(r.kind, Decoded::kFrame) << r.reason;
  EXPECT_EQ(r.consumed, bytes.size());
  EXPECT_EQ(r.args, expected);
}

// The error is reported once the bytes are complete, and no prefix is ever a frame.
void expect_error(const RespCodec& codec, std::string_view bytes, std::string_view reason) {
  for (size_t k = 0; k < bytes.size(); ++k) {
    Result r = decode(codec, bytes.substr(0, k));
    ASSERT_NE(r.kind, Decoded::kFrame) << "prefix of " << k << " bytes";
    if (r.kind == Decoded::kError) {
      EXPECT_EQ(r.reason, reason) << "prefix of " << k << " bytes";
    }
  }
  Result r = decode(codec, bytes);
  ASSERT_EQ(r.kind, Decoded::kError) << "input: " << testing::PrintToString(std::string(bytes));
  EXPECT_EQ(r.reason, reason);
}

// ---- multibulk ------------------------------------------------------------------------

TEST(RespDecode, MultibulkEverySplit) {
  RespCodec codec;
  expect_every_split(codec, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
                     {"SET", "k", "hello"});
  expect_every_split(codec, "*1\r\n$4\r\nPING\r\n", {"PING"});
}

TEST(RespDecode, MultibulkIsBinarySafe) {
  RespCodec codec;
  std::string value = "a\r\nb\0c$*\n"s;
  expect_every_split(codec, "*2\r\n$4\r\nECHO\r\n$" + std::to_string(value.size()) + "\r\n" +
                                value + "\r\n",
                     {"ECHO", value});
}

TEST(RespDecode, EmptyBulkArgument) {
  RespCodec codec;
  expect_every_split(codec, "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", {"GET", ""});
}

TEST(RespDecode, ManyArgumentsUseOverflowStorage) {
  RespCodec codec;
  Args args{"MSET"};
  for (int i = 0; i < 30; ++i) args.push_back("key" + std::to_string(i));
  std::string bytes = encode_args(args);
  expect_every_split(codec, bytes, args);

  RespCommand cmd;
  ASSERT_EQ(codec.decode(bytes, cmd).kind, Decoded::kFrame);
  ASSERT_EQ(cmd.size(), 31u);
  EXPECT_EQ(cmd[0], "MSET");
  EXPECT_EQ(cmd[8], "key7");
  EXPECT_EQ(cmd[30], "key29");
  EXPECT_EQ(cmd.args().size(), 31u);
  EXPECT_TRUE(cmd.is("mset"));
}

TEST(RespDecode, ReusedFrameHoldsOnlyTheLatestCommand) {
  RespCodec codec;
  RespCommand cmd;
  Args big{"DEL"};
  for (int i = 0; i < 12; ++i) big.push_back("k" + std::to_string(i));
  std::string first = encode_args(big);
  ASSERT_EQ(codec.decode(first, cmd).kind, Decoded::kFrame);
  EXPECT_EQ(args_of(cmd), big);
  std::string second = encode_args({"GET", "x"});
  ASSERT_EQ(codec.decode(second, cmd).kind, Decoded::kFrame);
  EXPECT_EQ(args_of(cmd), (Args{"GET", "x"}));
  ASSERT_EQ(codec.decode("PING \"q\"\r\n", cmd).kind, Decoded::kFrame);
  EXPECT_EQ(args_of(cmd), (Args{"PING", "q"}));
}

// ---- inline ---------------------------------------------------------------------------

TEST(RespDecode, InlineEverySplit) {
  RespCodec codec;
  expect_every_split(codec, "SET k v\r\n", {"SET", "k", "v"});
  expect_every_split(codec, "PING\n", {"PING"});
  expect_every_split(codec, "  GET \t\v\f key  \r\n", {"GET", "key"});
  expect_every_split(codec, "ECHO a\0b\r\n"s, {"ECHO", "a\0b"s});
}

TEST(RespDecode, InlineWordsAreViewsIntoTheInput) {
  RespCodec codec;
  std::string in = "SET key value\r\n";
  RespCommand cmd;
  ASSERT_EQ(codec.decode(in, cmd).kind, Decoded::kFrame);
  ASSERT_EQ(cmd.size(), 3u);
  EXPECT_EQ(cmd[1].data(), in.data() + 4);
  EXPECT_EQ(cmd[2].data(), in.data() + 8);
}

TEST(RespDecode, InlineQuotesAndEscapes) {
  RespCodec codec;
  expect_every_split(codec, R"(SET "a b" "c\"d\\e" 'it\'s' "\x41\x4a\n\r\t\b\a\q")" "\r\n",
                     {"SET", "a b", "c\"d\\e", "it's", "AJ\n\r\t\b\aq"});
  // A quote may open inside a word; single quotes keep other backslashes.
  expect_every_split(codec, "ECHO a\"b c\" 'x\\y' \"\" ''\r\n",
                     {"ECHO", "ab c", "x\\y", "", ""});
  // \x with fewer than two hex digits is just an escaped 'x'.
  expect_every_split(codec, "ECHO \"\\xg1\" \"\\x4\"\r\n", {"ECHO", "xg1", "x4"});
  // A quoted \r\n is data, the line still ends at the real "\n".
  expect_every_split(codec, "ECHO \"line1\\r\\nline2\"\n", {"ECHO", "line1\r\nline2"});
}

TEST(RespDecode, QuotedArgumentsSurviveAMove) {
  RespCodec codec;
  RespCommand moved;
  {
    std::string in = "SET \"quoted key\" plain\r\n";
    RespCommand cmd;
    ASSERT_EQ(codec.decode(in, cmd).kind, Decoded::kFrame);
    moved = std::move(cmd);
    EXPECT_EQ(moved[1], "quoted key");
  }
  // The input is gone; the quoted argument lived in the frame and moved with it.
  EXPECT_EQ(moved[1], "quoted key");
}

TEST(RespDecode, UnbalancedQuotes) {
  RespCodec codec;
  for (std::string_view line : {"SET \"a\r\n", "SET 'a\r\n", "ECHO \"a\"b\r\n", "ECHO 'a'b\r\n",
                                "ECHO \"ab\\\"\r\n", "ECHO \"\\\r\n", "ECHO a\"b\r\n"}) {
    SCOPED_TRACE(std::string(line));
    expect_error(codec, line, RespCodec::kUnbalancedQuotes);
  }
}

// ---- several commands, empty commands -------------------------------------------------

TEST(RespDecode, SeveralCommandsInOneBuffer) {
  RespCodec codec;
  std::string in = encode_args({"SET", "k", "v"}) + "PING\r\n" + encode_args({"GET", "k"}) +
                   "ECHO \"x y\"\n" + encode_args({"DEL", "a", "b", "c"});
  std::vector<Args> expected = {
      {"SET", "k", "v"}, {"PING"}, {"GET", "k"}, {"ECHO", "x y"}, {"DEL", "a", "b", "c"}};
  std::string_view rest = in;
  for (const Args& want : expected) {
    Result r = decode(codec, rest);
    ASSERT_EQ(r.kind, Decoded::kFrame) << r.reason;
    EXPECT_EQ(r.args, want);
    rest.remove_prefix(r.consumed);
  }
  EXPECT_TRUE(rest.empty());
  EXPECT_EQ(decode(codec, rest).kind, Decoded::kNeedMore);
}

TEST(RespDecode, EmptyCommandsAloneAreConsumedAsEmptyFrames) {
  RespCodec codec;
  for (std::string_view in : {"*0\r\n", "*-1\r\n", "*-7\r\n", "\r\n", "\n", "   \t\r\n",
                              "\r\n*0\r\n\n*-1\r\n"}) {
    SCOPED_TRACE(testing::PrintToString(std::string(in)));
    Result r = decode(codec, in);
    ASSERT_EQ(r.kind, Decoded::kFrame);
    EXPECT_EQ(r.consumed, in.size());
    EXPECT_TRUE(r.args.empty());
  }
}

TEST(RespDecode, EmptyCommandsBeforeACommandAreSkipped) {
  RespCodec codec;
  std::string in = "\r\n*0\r\n  \r\n*-1\r\nPING\r\n";
  Result r = decode(codec, in);
  ASSERT_EQ(r.kind, Decoded::kFrame);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(r.args, (Args{"PING"}));

  // Before a partial command the empties are consumed on their own.
  r = decode(codec, "*0\r\n\r\n*1\r\n$4\r\nPI");
  ASSERT_EQ(r.kind, Decoded::kFrame);
  EXPECT_EQ(r.consumed, 6u);
  EXPECT_TRUE(r.args.empty());

  // ...and a broken command after them is still an error.
  r = decode(codec, "*0\r\n*x\r\n");
  ASSERT_EQ(r.kind, Decoded::kError);
  EXPECT_STREQ(r.reason.c_str(), RespCodec::kInvalidMultibulkLength);
}

// ---- errors ---------------------------------------------------------------------------

TEST(RespDecode, InvalidMultibulkLength) {
  RespCodec codec;
  for (std::string_view in : {"*abc\r\n", "*\r\n", "*1x", "*01\r\n", "*-0\r\n", "*+1\r\n",
                              "*1\r\r", "*1 \r\n", "*--1\r\n", "*99999999999999999999\r\n"}) {
    SCOPED_TRACE(std::string(in));
    expect_error(codec, in, RespCodec::kInvalidMultibulkLength);
  }
  // A bad byte fails at once, without waiting for the line end.
  EXPECT_EQ(decode(codec, "*1x").kind, Decoded::kError);
}

TEST(RespDecode, ExpectedDollarNamesTheByte) {
  RespCodec codec;
  expect_error(codec, "*1\r\nx", "expected '$', got 'x'");
  expect_error(codec, "*2\r\n$1\r\na\r\n:1\r\n", "expected '$', got ':'");
  expect_error(codec, "*1\r\n\x01"s, "expected '$', got '\\x01'");
  expect_error(codec, "*1\r\n\xff"s, "expected '$', got '\\xff'");
  expect_error(codec, "*1\r\n\\", "expected '$', got '\\x5c'");
  EXPECT_STREQ(RespCodec::expected_dollar_reason('$'), "expected '$', got '$'");
}

TEST(RespDecode, InvalidBulkLength) {
  RespCodec codec;
  for (std::string_view in : {"*1\r\n$-1\r\n", "*1\r\n$-3\r\n", "*1\r\n$abc\r\n",
                              "*1\r\n$04\r\n", "*1\r\n$\r\n", "*1\r\n$4\n",
                              "*1\r\n$99999999999999999999\r\n"}) {
    SCOPED_TRACE(std::string(in));
    expect_error(codec, in, RespCodec::kInvalidBulkLength);
  }
}

TEST(RespDecode, BulkMustEndWithCrlf) {
  RespCodec codec;
  expect_error(codec, "*1\r\n$4\r\nPINGx", RespCodec::kBadBulkTerminator);
  expect_error(codec, "*1\r\n$4\r\nPING\rx", RespCodec::kBadBulkTerminator);
  expect_error(codec, "*1\r\n$4\r\nPING\n\r", RespCodec::kBadBulkTerminator);
}

// ---- limits ---------------------------------------------------------------------------

TEST(RespDecode, MaxArgsCheckedFromTheHeader) {
  RespCodec codec(RespOptions{.max_args = 3});
  expect_every_split(codec, encode_args({"a", "b", "c"}), {"a", "b", "c"});
  expect_error(codec, "*4\r\n", RespCodec::kTooManyArgs);
  expect_every_split(codec, "a b c\r\n", {"a", "b", "c"});
  expect_error(codec, "a b c d\r\n", RespCodec::kTooManyInlineArgs);

  RespCodec defaults;
  EXPECT_EQ(defaults.options().max_args, 1024u * 1024u);
  EXPECT_EQ(decode(defaults, "*1048576\r\n").kind, Decoded::kNeedMore);
  expect_error(defaults, "*1048577\r\n", RespCodec::kTooManyArgs);
}

TEST(RespDecode, MaxBulkCheckedFromTheHeader) {
  RespCodec codec(RespOptions{.max_bulk = 10});
  expect_every_split(codec, encode_args({"0123456789"}), {"0123456789"});
  expect_error(codec, "*1\r\n$11\r\n", RespCodec::kBulkTooBig);

  RespCodec defaults;  // 512 MiB: the header alone decides, no body needed
  EXPECT_EQ(decode(defaults, "*1\r\n$536870912\r\n").kind, Decoded::kNeedMore);
  expect_error(defaults, "*1\r\n$536870913\r\n", RespCodec::kBulkTooBig);
}

TEST(RespDecode, MaxInlineLine) {
  RespCodec codec(RespOptions{.max_inline = 8});
  expect_every_split(codec, "12345678\r\n", {"12345678"});
  expect_every_split(codec, "1234567\n", {"1234567"});
  expect_error(codec, "123456789\r\n", RespCodec::kInlineTooBig);
  expect_error(codec, "123456789\n", RespCodec::kInlineTooBig);
  // Without a newline: 8 bytes (+ "\r") may still become a line; 10 cannot.
  EXPECT_EQ(decode(codec, "12345678\r").kind, Decoded::kNeedMore);
  expect_error(codec, "1234567890", RespCodec::kInlineTooBig);

  RespCodec defaults;
  EXPECT_EQ(defaults.options().max_inline, 64u * 1024u);
  Result r = decode(defaults, std::string(64 * 1024 + 2, 'a'));
  EXPECT_EQ(r.kind, Decoded::kError);
  EXPECT_EQ(r.reason, RespCodec::kInlineTooBig);
  EXPECT_EQ(decode(defaults, std::string(64 * 1024, 'a') + "\r").kind, Decoded::kNeedMore);
}

// ---- RespCommand ----------------------------------------------------------------------

TEST(RespCommand, CaseInsensitiveName) {
  RespCommand cmd;
  cmd.push_back("gEt");
  cmd.push_back("k");
  EXPECT_TRUE(cmd.is("GET"));
  EXPECT_TRUE(cmd.is("get"));
  EXPECT_FALSE(cmd.is("GETX"));
  EXPECT_FALSE(cmd.is("GE"));
  EXPECT_EQ(cmd.name(), "gEt");
  EXPECT_FALSE(resp_iequals("@", "`"));  // differ only in bit 0x20 but are not letters
  EXPECT_FALSE(resp_iequals("[", "{"));
  EXPECT_TRUE(resp_iequals("", ""));
  RespCommand empty;
  EXPECT_EQ(empty.name(), "");
  EXPECT_FALSE(empty.is(""));  // an empty command has no name to match
}

// ---- encoders -------------------------------------------------------------------------

template <typename F>
std::string written(F&& f, int expected_writes = 1) {
  CountingSink sink;
  EXPECT_TRUE(f(sink).is_ok());
  EXPECT_EQ(sink.writes, expected_writes);
  return sink.out;
}

TEST(RespEncode, RepliesAreByteExact) {
  EXPECT_EQ(written([](auto& s) { return resp::write_ok(s); }), "+OK\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_simple_string(s, "PONG"); }), "+PONG\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_simple_string(s, "a\r\nb"); }),
            "+a  b\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_error(s, "ERR syntax error"); }),
            "-ERR syntax error\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_error(s, "ERR bad\nline"); }),
            "-ERR bad line\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_integer(s, 0); }), ":0\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_integer(s, -1); }), ":-1\r\n");
  EXPECT_EQ(written([](auto& s) {
              return resp::write_integer(s, std::numeric_limits<int64_t>::min());
            }),
            ":-9223372036854775808\r\n");
  EXPECT_EQ(written([](auto& s) {
              return resp::write_integer(s, std::numeric_limits<int64_t>::max());
            }),
            ":9223372036854775807\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_bulk(s, "hello"); }), "$5\r\nhello\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_bulk(s, ""); }), "$0\r\n\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_bulk(s, "a\r\n\0"s); }),
            "$4\r\na\r\n\0\r\n"s);
  EXPECT_EQ(written([](auto& s) { return resp::write_null_bulk(s); }), "$-1\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_array_header(s, 3); }), "*3\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_array_header(s, 0); }), "*0\r\n");
  EXPECT_EQ(written([](auto& s) { return resp::write_null_array(s); }), "*-1\r\n");
}

TEST(RespEncode, LargeBulkIsExactAndUsesWritevWhereTheSinkHasIt) {
  std::string value(5000, 'v');
  std::string expected = "$5000\r\n" + value + "\r\n";
  EXPECT_EQ(written([&](auto& s) { return resp::write_bulk(s, value); }, 3), expected);
  VectorSink vs;
  ASSERT_TRUE(resp::write_bulk(vs, value).is_ok());
  EXPECT_EQ(vs.writevs, 1);
  EXPECT_EQ(vs.writes, 0);
  EXPECT_EQ(vs.out, expected);
  // Just at the stack-buffer edge and just past it.
  for (size_t n : {480u, 505u, 506u, 507u, 600u}) {
    std::string v(n, 'x');
    std::string out;
    StringSink sink{out};
    ASSERT_TRUE(resp::write_bulk(sink, v).is_ok());
    EXPECT_EQ(out, "$" + std::to_string(n) + "\r\n" + v + "\r\n");
  }
}

TEST(RespEncode, LongErrorLine) {
  std::string message = "ERR " + std::string(1000, 'e');
  std::string out;
  StringSink sink{out};
  ASSERT_TRUE(resp::write_error(sink, message).is_ok());
  EXPECT_EQ(out, "-" + message + "\r\n");
}

TEST(RespEncode, ProtocolErrorReply) {
  RespCodec codec;
  std::string out;
  StringSink sink{out};
  ASSERT_TRUE(codec.write_error_reply(ProtocolError{RespCodec::kInvalidBulkLength}, sink).is_ok());
  EXPECT_EQ(out, "-ERR Protocol error: invalid bulk length\r\n");
}

TEST(RespEncode, EncodedCommandsDecodeBack) {
  EXPECT_EQ(encode_args({"SET", "k", ""}), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  RespCodec codec;
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    Args args(1 + rng() % 12);
    for (std::string& a : args) {
      a.resize(rng() % 40);
      for (char& c : a) c = static_cast<char>(rng());
    }
    Result r = decode(codec, encode_args(args));
    ASSERT_EQ(r.kind, Decoded::kFrame);
    EXPECT_EQ(r.args, args);
  }
}

// A stream of random commands cut at random points decodes to the same commands.
TEST(RespDecode, RandomStreamCutAnywhere) {
  RespCodec codec;
  std::mt19937 rng(11);
  std::vector<Args> sent;
  std::string stream;
  for (int i = 0; i < 300; ++i) {
    Args args(1 + rng() % 10);
    for (std::string& a : args) a = "w" + std::to_string(rng() % 100000);
    stream += rng() % 3 == 0 ? "\r\n" : "";  // empty commands in between
    if (rng() % 2) {
      stream += encode_args(args);
    } else {
      for (size_t j = 0; j < args.size(); ++j) stream += (j ? " " : "") + args[j];
      stream += "\r\n";
    }
    sent.push_back(args);
  }
  std::vector<Args> got;
  std::string buffered;
  size_t fed = 0;
  while (fed < stream.size()) {
    size_t n = std::min<size_t>(1 + rng() % 64, stream.size() - fed);
    buffered.append(stream, fed, n);
    fed += n;
    for (;;) {
      RespCommand cmd;
      Decoded d = codec.decode(buffered, cmd);
      ASSERT_NE(d.kind, Decoded::kError) << d.error.reason;
      if (d.kind == Decoded::kNeedMore) break;
      ASSERT_GT(d.consumed, 0u);
      if (!cmd.empty()) got.push_back(args_of(cmd));
      buffered.erase(0, d.consumed);
    }
  }
  EXPECT_TRUE(buffered.empty());
  EXPECT_EQ(got, sent);
}

}  // namespace
}  // namespace ringnet::proto

// ---- over real sockets ----------------------------------------------------------------

namespace ringnet::test {
namespace {

using proto::RespCodec;
using proto::RespCommand;

// Answers PING and ECHO; anything else gets an error. Counts what it saw.
class PingEchoHandler final : public proto::RespHandler {
 public:
  Action on_command(Conn& c, const RespCommand& cmd) override {
    commands.fetch_add(1);
    Status s;
    if (cmd.is("PING") && cmd.size() == 1) {
      s = proto::resp::write_simple_string(c, "PONG");
    } else if (cmd.is("ECHO") && cmd.size() == 2) {
      s = proto::resp::write_bulk(c, cmd[1]);
    } else {
      s = proto::resp::write_error(c, "ERR unknown command");
    }
    return s ? Action::kNone : Action::kClose;
  }
  std::atomic<uint64_t> commands{0};
};

std::string bulk(std::string_view v) {
  return "$" + std::to_string(v.size()) + "\r\n" + std::string(v) + "\r\n";
}

class RespSocketTest : public HandlerTest<PingEchoHandler> {};

TEST_P(RespSocketTest, PingAndEchoInBothForms) {
  Client c;
  ASSERT_TRUE(start(2, {&c}));
  std::string request = "*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n"
                        "ECHO \"a b\"\r\n";
  std::string expected = "+PONG\r\n+PONG\r\n" + bulk("hello") + bulk("a b");
  std::string got;
  ASSERT_TRUE(c.exchange(request, expected.size(), &got));
  EXPECT_EQ(got, expected);
  EXPECT_EQ(handler_.commands.load(), 4u);
}

TEST_P(RespSocketTest, EmptyCommandsNeverReachTheHandler) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  ASSERT_TRUE(c.send_all("\r\n*0\r\n"));
  ASSERT_TRUE(c.send_all("*-1\r\n   \r\n"));
  std::string got;
  ASSERT_TRUE(c.exchange("PING\r\n", 7, &got));
  EXPECT_EQ(got, "+PONG\r\n");
  EXPECT_EQ(handler_.commands.load(), 1u);
  EXPECT_FALSE(c.readable_within(Millis(50)));  // nothing answered the empty commands
}

TEST_P(RespSocketTest, CommandSplitAcrossWritesIsAnsweredOnce) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  c.set_nodelay();
  std::string request = "*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
  for (char byte : request) {
    ASSERT_TRUE(c.send_all(std::string_view(&byte, 1)));
    std::this_thread::sleep_for(Millis(1));
  }
  std::string got;
  ASSERT_TRUE(c.recv_exact(bulk("hello world").size(), &got));
  EXPECT_EQ(got, bulk("hello world"));
  EXPECT_EQ(handler_.commands.load(), 1u);
}

TEST_P(RespSocketTest, ThousandPipelinedCommandsAnsweredInOrder) {
  Client c;
  ASSERT_TRUE(start(2, {&c}));
  std::string request;
  std::string expected;
  for (int i = 0; i < 1000; ++i) {
    std::string value = "value-" + std::to_string(i) + "-" + make_payload(i % 37, i);
    if (i % 3 == 0) {
      request += "PING\r\n";
      expected += "+PONG\r\n";
    } else {
      request += "*2\r\n$4\r\nECHO\r\n" + bulk(value);
      expected += bulk(value);
    }
  }
  std::string got;
  ASSERT_TRUE(c.exchange(request, expected.size(), &got));
  EXPECT_TRUE(same_bytes(expected, got));
  EXPECT_EQ(handler_.commands.load(), 1000u);
  EXPECT_EQ(handler_.frames_decoded(), 1000u);
}

TEST_P(RespSocketTest, ProtocolErrorIsAnsweredAndClosesOnlyThatConnection) {
  Client good;
  Client bad;
  ASSERT_TRUE(start(2, {&good, &bad}));
  std::string got;
  ASSERT_TRUE(good.exchange("PING\r\n", 7, &got));

  // A valid command first, then a broken one in the same write: the first is answered.
  ASSERT_TRUE(bad.send_all("PING\r\n*1\r\n$x\r\n"));
  std::string reply;
  ASSERT_TRUE(bad.recv_until_eof(&reply));
  EXPECT_EQ(reply, "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_EQ(handler_.protocol_errors(), 1u);

  got.clear();
  ASSERT_TRUE(good.exchange("*2\r\n$4\r\nECHO\r\n$2\r\nok\r\n", 8, &got));
  EXPECT_EQ(got, bulk("ok"));
}

TEST_P(RespSocketTest, OversizedBulkHeaderIsRejectedBeforeItsBody) {
  Client c;
  ASSERT_TRUE(start(1, {&c}));
  ASSERT_TRUE(c.send_all("*2\r\n$4\r\nECHO\r\n$999999999\r\n"));
  std::string reply;
  ASSERT_TRUE(c.recv_until_eof(&reply));
  EXPECT_EQ(reply, "-ERR Protocol error: invalid bulk length (over max_bulk)\r\n");
}

INSTANTIATE_TEST_SUITE_P(Backends, RespSocketTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
