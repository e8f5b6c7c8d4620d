// SPDX-License-Identifier: MIT
// Http1Codec (request parsing), the response writer and HttpServerHandler.
//
// Codec tests run decode on plain strings: every split of a request, pipelined requests,
// keep-alive rules, each error status, each limit (checked before the body arrives), the
// 100-continue hint. Writer tests compare exact bytes and count sink calls. Server tests
// drive HttpServerHandler over loopback sockets on every backend.
#include <gtest/gtest.h>
#include <ringnet/proto/http1.h>
#include <ringnet/proto/http_response.h>
#include <ringnet/proto/http_server.h>
#include <time.h>

#include <atomic>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "codec_test_support.h"
#include "test_support.h"

namespace ringnet::proto {
namespace {

using namespace std::string_literals;
using test::Client;
using test::CountingSink;
using test::End;
using test::ExactBuffer;
using test::inside;
using test::Millis;
using test::TestServer;
using test::VectorSink;

// ---- helpers ---------------------------------------------------------------------------

// An owning copy of a decoded request, comparable and printable.
struct Snapshot {
  std::string method, target, path, query;
  HttpVersion version = HttpVersion::k11;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  uint64_t content_length = 0;
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;
  bool operator==(const Snapshot&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Snapshot& s) {
  os << "{" << s.method << " " << s.target << " path=" << s.path << " query=" << s.query
     << " v1." << (s.version == HttpVersion::k11 ? 1 : 0) << " headers=[";
  for (const auto& [n, v] : s.headers) os << n << ": " << v << "; ";
  return os << "] body(" << s.body.size() << ")=" << s.body.substr(0, 64)
            << " cl=" << s.content_length << " chunked=" << s.chunked
            << " keep_alive=" << s.keep_alive << " expect=" << s.expect_continue << "}";
}

Snapshot snap(const HttpRequest& r) {
  Snapshot s{std::string(r.method), std::string(r.target), std::string(r.path),
             std::string(r.query), r.version, {}, std::string(r.body), r.content_length,
             r.chunked, r.keep_alive, r.expect_continue};
  for (const HttpHeader& h : r.headers) s.headers.emplace_back(h.name, h.value);
  return s;
}

// Every proper prefix needs more (with `hint_after_head` once `head_size` bytes are in);
// the whole input is exactly one frame equal to `expected`.
void expect_every_split(const Http1Codec& codec, std::string_view wire, const Snapshot& expected,
                        size_t head_size = 0, uint8_t hint_after_head = 0) {
  ASSERT_TRUE(test::needs_more_at_every_prefix(codec, wire, wire.size(), [&](size_t n) {
    return (head_size != 0 && n >= head_size) ? hint_after_head : uint8_t{0};
  }));
  ExactBuffer whole(wire);
  HttpRequest req;
  Decoded d = codec.decode(whole.view(), req);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(d.consumed, wire.size());
  EXPECT_EQ(snap(req), expected);
}

// Decodes one request that must fail with `status`.
void expect_error(const Http1Codec& codec, std::string_view wire, int status) {
  ExactBuffer in(wire);
  HttpRequest req;
  Decoded d = codec.decode(in.view(), req);
  ASSERT_EQ(d.kind, Decoded::kError) << "input: " << testing::PrintToString(std::string(wire));
  EXPECT_EQ(d.error.status, status) << d.error.reason << " for input: "
                                    << testing::PrintToString(std::string(wire));
  EXPECT_NE(std::string_view(d.error.reason), "");
}

Snapshot decode_one(const Http1Codec& codec, std::string_view wire) {
  HttpRequest req;
  Decoded d = codec.decode(wire, req);
  EXPECT_EQ(d.kind, Decoded::kFrame) << d.error.reason << " status " << d.error.status;
  EXPECT_EQ(d.consumed, wire.size());
  return snap(req);
}

// Replaces the value of every "Date: " field with a fixed marker, after checking it is an
// IMF-fixdate-shaped 29-byte value.
std::string mask_dates(std::string s) {
  for (size_t at = s.find("\r\nDate: "); at != std::string::npos; at = s.find("\r\nDate: ", at + 1)) {
    size_t v = at + 8;
    EXPECT_LE(v + kHttpDateLength + 2, s.size());
    if (v + kHttpDateLength + 2 > s.size()) break;
    std::string_view date(s.data() + v, kHttpDateLength);
    EXPECT_EQ(date.substr(3, 2), ", ");
    EXPECT_EQ(date.substr(25), " GMT");
    EXPECT_EQ(s.substr(v + kHttpDateLength, 2), "\r\n");
    s.replace(v, kHttpDateLength, "<date>");
  }
  return s;
}

constexpr std::string_view kChunkedPost =
    "POST /upload?x=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "1;name=value\r\n,\r\n"
    "6 ; ext\r\n world\r\n"
    "0\r\n"
    "X-Trailer: done\r\n"
    "\r\n";

Snapshot chunked_post_snapshot() {
  return {"POST", "/upload?x=1", "/upload", "x=1", HttpVersion::k11,
          {{"Host", "example.com"}, {"Transfer-Encoding", "chunked"}},
          "hello, world", 12, true, true, false};
}

// ---- parsing ---------------------------------------------------------------------------

TEST(Http1Parse, SimpleGetFillsEveryField) {
  Http1Codec codec;
  Snapshot s = decode_one(codec, "GET /index.html?a=1&b=2 HTTP/1.1\r\nHost: h\r\nAccept:  */* \r\n\r\n");
  Snapshot want{"GET", "/index.html?a=1&b=2", "/index.html", "a=1&b=2", HttpVersion::k11,
                {{"Host", "h"}, {"Accept", "*/*"}}, "", 0, false, true, false};
  EXPECT_EQ(s, want);
}

TEST(Http1Parse, HeaderLookupIsCaseInsensitiveAndKeepsOrder) {
  Http1Codec codec;
  std::string wire = "GET / HTTP/1.1\r\nhost: h\r\nX-Multi: 1\r\nx-multi: 2\r\nEmpty:\r\n\r\n";
  HttpRequest req;
  ASSERT_EQ(codec.decode(wire, req).kind, Decoded::kFrame);
  ASSERT_NE(req.headers.find("HOST"), nullptr);
  EXPECT_EQ(req.headers.find("HOST")->value, "h");
  EXPECT_EQ(req.headers.find("X-MULTI")->value, "1");
  EXPECT_EQ(req.headers.count("x-Multi"), 2u);
  EXPECT_EQ(req.headers.find("empty")->value, "");
  EXPECT_EQ(req.headers.find("missing"), nullptr);
  EXPECT_EQ(req.headers.count("missing"), 0u);
}

TEST(Http1Parse, ManyHeadersSpillPastTheInlineArray) {
  Http1Codec codec;
  std::string wire = "GET / HTTP/1.1\r\nHost: h\r\n";
  const size_t n = HttpHeaders::kInline * 3;
  for (size_t i = 0; i < n; ++i) wire += "X-" + std::to_string(i) + ": v" + std::to_string(i) + "\r\n";
  wire += "\r\n";
  HttpRequest req;
  // Twice through the same request object: the second decode reuses the overflow storage.
  for (int round = 0; round < 2; ++round) {
    Decoded d = codec.decode(wire, req);
    ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
    ASSERT_EQ(req.headers.size(), n + 1);
    EXPECT_EQ(req.headers[0].name, "Host");
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(req.headers[i + 1].name, "X-" + std::to_string(i));
      EXPECT_EQ(req.headers[i + 1].value, "v" + std::to_string(i));
    }
    EXPECT_EQ(req.headers.find("x-" + std::to_string(n - 1))->value, "v" + std::to_string(n - 1));
  }
  // A small request after a big one through the same object.
  ASSERT_EQ(codec.decode("GET / HTTP/1.1\r\nHost: a\r\n\r\n", req).kind, Decoded::kFrame);
  ASSERT_EQ(req.headers.size(), 1u);
  EXPECT_EQ(req.headers[0].value, "a");
}

TEST(Http1Parse, TargetForms) {
  Http1Codec codec;
  Snapshot abs = decode_one(codec, "GET http://example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
  EXPECT_EQ(abs.path, "/a/b");
  EXPECT_EQ(abs.query, "q=1");
  Snapshot abs_bare = decode_one(codec, "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
  EXPECT_EQ(abs_bare.path, "");
  Snapshot star = decode_one(codec, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(star.path, "*");
  Snapshot authority = decode_one(codec, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
  EXPECT_EQ(authority.target, "example.com:443");
  EXPECT_EQ(authority.path, "");
  Snapshot empty_query = decode_one(codec, "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(empty_query.path, "/p");
  EXPECT_EQ(empty_query.query, "");
}

TEST(Http1Parse, BareLfLineEndingsAndLeadingEmptyLines) {
  Http1Codec codec;
  Snapshot lf = decode_one(codec, "GET /a HTTP/1.1\nHost: h\nX: 1\r\n\n");
  EXPECT_EQ(lf.path, "/a");
  ASSERT_EQ(lf.headers.size(), 2u);
  EXPECT_EQ(lf.headers[1].second, "1");
  // Empty lines before the request line belong to (and are consumed with) this request.
  Snapshot lead = decode_one(codec, "\r\n\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(lead.path, "/b");
}

TEST(Http1Parse, ContentLengthBodyIsAViewIntoTheInput) {
  Http1Codec codec;
  std::string wire = "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
  HttpRequest req;
  Decoded d = codec.decode(wire, req);
  ASSERT_EQ(d.kind, Decoded::kFrame);
  EXPECT_EQ(d.consumed, wire.size() - 5);
  EXPECT_EQ(req.body, "hello");
  EXPECT_TRUE(inside(req.body, wire));
  EXPECT_EQ(req.content_length, 5u);
}

TEST(Http1Parse, RepeatedIdenticalContentLengthIsAccepted) {
  Http1Codec codec;
  Snapshot a = decode_one(codec, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello");
  EXPECT_EQ(a.body, "hello");
  Snapshot b = decode_one(codec, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc");
  EXPECT_EQ(b.body, "abc");
}

TEST(Http1Parse, ChunkedSingleChunkIsZeroCopyAndManyChunksAreDecoded) {
  Http1Codec codec;
  std::string one = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n";
  HttpRequest req;
  ASSERT_EQ(codec.decode(one, req).kind, Decoded::kFrame);
  EXPECT_EQ(req.body, "0123456789");
  EXPECT_TRUE(inside(req.body, one));
  EXPECT_TRUE(req.chunked);

  std::string many(kChunkedPost);
  ASSERT_EQ(codec.decode(many, req).kind, Decoded::kFrame);
  EXPECT_EQ(req.body, "hello, world");
  EXPECT_FALSE(inside(req.body, many));  // decoded into the request's own storage
  EXPECT_EQ(req.content_length, 12u);

  std::string none = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  ASSERT_EQ(codec.decode(none, req).kind, Decoded::kFrame);
  EXPECT_EQ(req.body, "");
  EXPECT_EQ(req.content_length, 0u);
}

// ---- splits and pipelining ---------------------------------------------------------------

TEST(Http1Split, ContentLengthRequestAtEveryBoundary) {
  Http1Codec codec;
  std::string wire =
      "PUT /items/7?v=2 HTTP/1.1\r\nHost: api\r\nContent-Type: text/plain\r\n"
      "Content-Length: 11\r\n\r\nhello world";
  expect_every_split(codec, wire,
                     {"PUT", "/items/7?v=2", "/items/7", "v=2", HttpVersion::k11,
                      {{"Host", "api"}, {"Content-Type", "text/plain"}, {"Content-Length", "11"}},
                      "hello world", 11, false, true, false});
}

TEST(Http1Split, ChunkedRequestAtEveryBoundary) {
  expect_every_split(Http1Codec(), kChunkedPost, chunked_post_snapshot());
}

TEST(Http1Split, BareLfHeadAtEveryBoundary) {
  std::string wire = "GET /lf HTTP/1.0\nUser-Agent: x\n\n";
  expect_every_split(Http1Codec(), wire,
                     {"GET", "/lf", "/lf", "", HttpVersion::k10, {{"User-Agent", "x"}}, "", 0,
                      false, false, false});
}

TEST(Http1Split, ExpectContinueHintOnceTheHeadIsComplete) {
  std::string head = "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
  expect_every_split(Http1Codec(), head + "body",
                     {"POST", "/e", "/e", "", HttpVersion::k11,
                      {{"Host", "h"}, {"Expect", "100-continue"}, {"Content-Length", "4"}},
                      "body", 4, false, true, true},
                     head.size(), kHttpHintContinue);
  std::string chunked_head =
      "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n";
  expect_every_split(Http1Codec(), chunked_head + "4\r\nbody\r\n0\r\n\r\n",
                     {"POST", "/e", "/e", "", HttpVersion::k11,
                      {{"Host", "h"}, {"Expect", "100-Continue"}, {"Transfer-Encoding", "chunked"}},
                      "body", 4, true, true, true},
                     chunked_head.size(), kHttpHintContinue);
}

TEST(Http1Split, ExpectContinueInHttp10IsIgnored) {
  Http1Codec codec;
  HttpRequest req;
  Decoded d = codec.decode("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", req);
  EXPECT_EQ(d.kind, Decoded::kNeedMore);
  EXPECT_EQ(d.hint, 0);
}

TEST(Http1Pipeline, SeveralRequestsInOneBufferComeOutInOrder) {
  Http1Codec codec;
  std::string a = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string b = "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
  std::string c(kChunkedPost);
  std::string d = "\r\nGET /four HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  std::string e = "GET /partial HTTP/1.1\r\nHo";
  std::string all = a + b + c + d + e;
  ExactBuffer buf(all);
  std::string_view in = buf.view();
  std::vector<std::pair<std::string, std::string>> got;  // path, body
  std::vector<size_t> consumed;
  Decoded last = test::decode_each(codec, in, [&](const HttpRequest& req, const Decoded& r) {
    got.emplace_back(req.path, req.body);
    consumed.push_back(r.consumed);
  });
  EXPECT_EQ(last.kind, Decoded::kNeedMore);
  std::vector<std::pair<std::string, std::string>> want = {
      {"/one", ""}, {"/two", "abc"}, {"/upload", "hello, world"}, {"/four", ""}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(consumed, (std::vector<size_t>{a.size(), b.size(), c.size(), d.size()}));
  EXPECT_EQ(in, e);
}

// ---- keep-alive ----------------------------------------------------------------------------

TEST(Http1KeepAlive, VersionAndConnectionOptions) {
  struct Case {
    const char* version;
    std::vector<const char*> connection;  // one Connection field per entry
    bool keep_alive;
  };
  const Case cases[] = {
      {"HTTP/1.1", {}, true},
      {"HTTP/1.1", {"close"}, false},
      {"HTTP/1.1", {"CLOSE"}, false},
      {"HTTP/1.1", {"Upgrade, close"}, false},
      {"HTTP/1.1", {"keep-alive, Close"}, false},
      {"HTTP/1.1", {"keep-alive", "close"}, false},
      {"HTTP/1.1", {"closed"}, true},
      {"HTTP/1.1", {"keep-alive"}, true},
      {"HTTP/1.1", {" , upgrade ,"}, true},
      {"HTTP/1.0", {}, false},
      {"HTTP/1.0", {"keep-alive"}, true},
      {"HTTP/1.0", {"Keep-Alive"}, true},
      {"HTTP/1.0", {"foo,  keep-alive"}, true},
      {"HTTP/1.0", {"keep-alive, close"}, false},
      {"HTTP/1.0", {"keep-alive", "close"}, false},
      {"HTTP/1.0", {"keep-alives"}, false},
  };
  Http1Codec codec;
  for (const Case& c : cases) {
    std::string wire = std::string("GET / ") + c.version + "\r\nHost: h\r\n";
    for (const char* v : c.connection) wire += std::string("Connection: ") + v + "\r\n";
    wire += "\r\n";
    HttpRequest req;
    ASSERT_EQ(codec.decode(wire, req).kind, Decoded::kFrame) << wire;
    EXPECT_EQ(req.keep_alive, c.keep_alive) << wire;
  }
}

// ---- errors --------------------------------------------------------------------------------

TEST(Http1Errors, EachMalformedRequestGetsItsStatus) {
  const std::pair<std::string, int> cases[] = {
      // request line
      {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
      {" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET\r\nHost: h\r\n\r\n", 400},
      {"GET /\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400},
      {"GET / http/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1\rHost: h\r\n\r\n", 400},
      // versions
      {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505},
      {"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
      // fields
      {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX-Long: a\r\n  folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n\tX: 1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX(y): 1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rz\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\0z\r\n\r\n"s, 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400},
      // Host
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      // Content-Length
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3.0\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
      // Transfer-Encoding
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      // chunked framing
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\n\r\n", 400},
      // Expect
      {"POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 1\r\n\r\n", 417},
      {"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n", 417},
  };
  Http1Codec codec;
  for (const auto& [wire, status] : cases) expect_error(codec, wire, status);
}

TEST(Http1Errors, JunkIsRefusedBeforeTheLineEnds) {
  // A TLS ClientHello: no LF in sight, but the first bytes cannot be a method.
  expect_error(Http1Codec(), std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), 400);
  // A valid line so far that has not ended: wait.
  HttpRequest req;
  EXPECT_EQ(Http1Codec().decode("GET /some/path HTTP/1.1\r", req).kind, Decoded::kNeedMore);
  // An error in a complete line is reported before the head ends.
  expect_error(Http1Codec(), "GET / HTTP/3.0\r\nHost: h\r\nX-More: ", 505);
  expect_error(Http1Codec(), "GET / HTTP/1.1\r\nBad Name: x\r\nX-More: ", 400);
}

TEST(Http1Errors, Http10WithoutHostIsFine) {
  Snapshot s = decode_one(Http1Codec(), "GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(s.version, HttpVersion::k10);
  EXPECT_FALSE(s.keep_alive);
}

// ---- limits --------------------------------------------------------------------------------

Http1Options small_limits() {
  Http1Options o;
  o.max_request_line = 64;
  o.max_header_bytes = 256;
  o.max_headers = 4;
  o.max_body = 100;
  return o;
}

// "GET /aaa...a HTTP/1.1" of exactly `size` bytes.
std::string request_line_of(size_t size) {
  std::string fixed = "GET / HTTP/1.1";
  return "GET /" + std::string(size - fixed.size(), 'a') + " HTTP/1.1";
}

TEST(Http1Limits, RequestLineAtAndOverTheLimit) {
  Http1Codec codec(small_limits());
  HttpRequest req;
  std::string at = request_line_of(64);
  ASSERT_EQ(at.size(), 64u);
  EXPECT_EQ(codec.decode(at + "\r\nHost: h\r\n\r\n", req).kind, Decoded::kFrame);
  EXPECT_EQ(codec.decode(at + "\r", req).kind, Decoded::kNeedMore);  // incomplete, at the limit
  std::string over = request_line_of(65);
  expect_error(codec, over + "\r\nHost: h\r\n\r\n", 414);
  expect_error(codec, over, 414);  // no line end yet: refused as soon as it is too long
  expect_error(codec, "\r\n" + over, 414);
}

TEST(Http1Limits, HeadAtAndOverTheLimit) {
  Http1Codec codec(small_limits());
  // Pad one field so the whole head (through the empty line) is exactly 256 bytes.
  std::string prefix = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  std::string head = prefix + std::string(256 - prefix.size() - 4, 'p') + "\r\n\r\n";
  ASSERT_EQ(head.size(), 256u);
  HttpRequest req;
  Decoded d = codec.decode(head + "GET", req);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(d.consumed, 256u);
  std::string over = prefix + std::string(256 - prefix.size() - 3, 'p') + "\r\n\r\n";
  expect_error(codec, over, 431);
  // Incomplete: 256 bytes without the end may still end at byte 256; 257 cannot.
  EXPECT_EQ(codec.decode(head.substr(0, 256), req).kind, Decoded::kFrame);
  EXPECT_EQ(codec.decode(over.substr(0, 256), req).kind, Decoded::kNeedMore);
  expect_error(codec, over.substr(0, 257), 431);
  // Empty lines before the request line count toward the head.
  expect_error(codec, std::string(300, '\n'), 431);
}

TEST(Http1Limits, FieldCountAtAndOverTheLimit) {
  Http1Codec codec(small_limits());
  std::string four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
  HttpRequest req;
  EXPECT_EQ(codec.decode(four + "\r\n", req).kind, Decoded::kFrame);
  expect_error(codec, four + "D: 4\r\n\r\n", 431);
  expect_error(codec, four + "D: 4\r\n", 431);  // before the head ends
}

TEST(Http1Limits, ContentLengthOverTheLimitBeforeTheBody) {
  Http1Codec codec(small_limits());
  HttpRequest req;
  Decoded d = codec.decode("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n", req);
  EXPECT_EQ(d.kind, Decoded::kNeedMore);
  expect_error(codec, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", 413);
  // With Expect: refused right away instead of inviting the body.
  expect_error(codec, "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n", 413);
}

TEST(Http1Limits, ChunkSizesOverTheLimitBeforeTheData) {
  Http1Codec codec(small_limits());
  std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  HttpRequest req;
  EXPECT_EQ(codec.decode(head + "64\r\n", req).kind, Decoded::kNeedMore);  // 100: at the limit
  expect_error(codec, head + "65\r\n", 413);                                 // 101
  // The second size line pushes the total over; its data never needs to arrive.
  expect_error(codec, head + "32\r\n" + std::string(50, 'x') + "\r\n33\r\n", 413);
  // Exactly at the limit over several chunks decodes.
  std::string at = head + "32\r\n" + std::string(50, 'x') + "\r\n32\r\n" + std::string(50, 'y') + "\r\n0\r\n\r\n";
  Decoded d = codec.decode(at, req);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(req.body, std::string(50, 'x') + std::string(50, 'y'));
}

TEST(Http1Limits, TrailersCountTowardTheHeadLimits) {
  Http1Codec codec(small_limits());
  std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string body = "1\r\nx\r\n0\r\n";
  HttpRequest req;
  EXPECT_EQ(codec.decode(head + body + "T: 1\r\n\r\n", req).kind, Decoded::kFrame);
  // Head + trailer bytes over 256.
  std::string big_trailer = "T: " + std::string(256 - head.size(), 't') + "\r\n";
  expect_error(codec, head + body + big_trailer + "\r\n", 431);
  expect_error(codec, head + body + big_trailer, 431);  // before the trailer section ends
  // Header fields + trailer fields over 4 (the head has 2).
  expect_error(codec, head + body + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431);
}

TEST(Http1Limits, TinyChunksHitTheFramingBudget) {
  Http1Options o = small_limits();
  o.max_body = 1000;  // framing budget: 256 + 1000 / 8 = 381 bytes
  Http1Codec codec(o);
  std::string wire = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 200; ++i) wire += "1\r\nx\r\n";  // 5 framing bytes per data byte
  HttpRequest req;
  Decoded d = codec.decode(wire, req);
  ASSERT_EQ(d.kind, Decoded::kError);
  EXPECT_EQ(d.error.status, 413);
  EXPECT_NE(std::string_view(d.error.reason).find("framing"), std::string_view::npos);
  // Fewer, bigger chunks carrying more data are fine.
  std::string ok = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 10; ++i) ok += "64\r\n" + std::string(100, 'z') + "\r\n";
  ok += "0\r\n\r\n";
  d = codec.decode(ok, req);
  ASSERT_EQ(d.kind, Decoded::kFrame) << d.error.reason;
  EXPECT_EQ(req.body.size(), 1000u);
}

// ---- responses -----------------------------------------------------------------------------

TEST(HttpDate, KnownInstants) {
  char out[kHttpDateLength];
  auto fmt = [&](int64_t t) {
    format_http_date(t, out);
    return std::string(out, kHttpDateLength);
  };
  EXPECT_EQ(fmt(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");  // RFC 9110's example
  EXPECT_EQ(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(fmt(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_EQ(fmt(1735689599), "Tue, 31 Dec 2024 23:59:59 GMT");
  EXPECT_EQ(fmt(4107542400), "Mon, 01 Mar 2100 00:00:00 GMT");  // 2100 is not a leap year
}

TEST(HttpDate, MatchesGmtimeOverManyInstants) {
  char out[kHttpDateLength];
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    auto t = static_cast<time_t>(x % 4102444800ull);  // 1970 .. 2100
    format_http_date(t, out);
    tm parts{};
    gmtime_r(&t, &parts);
    char want[64];
    size_t n = strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    ASSERT_EQ(std::string(out, kHttpDateLength), std::string(want, n)) << "t=" << t;
  }
}

TEST(HttpDate, CachedValueIsNowAndPerThread) {
  std::string_view a = http_date();
  ASSERT_EQ(a.size(), kHttpDateLength);
  time_t now = time(nullptr);
  char want_now[kHttpDateLength], want_before[kHttpDateLength], want_after[kHttpDateLength];
  format_http_date(now, want_now);
  format_http_date(now - 1, want_before);
  format_http_date(now + 1, want_after);
  std::string got(a);
  EXPECT_TRUE(got == std::string(want_now, kHttpDateLength) ||
              got == std::string(want_before, kHttpDateLength) ||
              got == std::string(want_after, kHttpDateLength))
      << got;
  EXPECT_EQ(http_date().data(), a.data());  // same thread: same cache
  const char* other = nullptr;
  std::thread([&] { other = http_date().data(); }).join();
  EXPECT_NE(other, a.data());
}

TEST(HttpResponse, SmallResponseIsOneWriteWithExactBytes) {
  CountingSink sink;
  ASSERT_TRUE(write_response(sink, 200, "text/plain", "Hello, World!", true).is_ok());
  EXPECT_EQ(sink.writes, 1);
  EXPECT_EQ(mask_dates(sink.out),
            "HTTP/1.1 200 OK\r\nServer: ringnet\r\nDate: <date>\r\n"
            "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!");
}

TEST(HttpResponse, CloseAndExtraFields) {
  CountingSink sink;
  ASSERT_TRUE(write_response(sink, 405, "", "", false, {{"Allow", "GET, HEAD"}, {"X-A", "b"}}).is_ok());
  EXPECT_EQ(sink.writes, 1);
  EXPECT_EQ(mask_dates(sink.out),
            "HTTP/1.1 405 Method Not Allowed\r\nServer: ringnet\r\nDate: <date>\r\n"
            "Content-Length: 0\r\nConnection: close\r\nAllow: GET, HEAD\r\nX-A: b\r\n\r\n");
}

TEST(HttpResponse, NoContentLengthFor204AndUnknownCodes) {
  CountingSink sink;
  ASSERT_TRUE(write_response(sink, 204, "", "", true).is_ok());
  EXPECT_EQ(mask_dates(sink.out), "HTTP/1.1 204 No Content\r\nServer: ringnet\r\nDate: <date>\r\n\r\n");
  sink.out.clear();
  ASSERT_TRUE(write_response(sink, 299, "", "x", true).is_ok());
  EXPECT_EQ(mask_dates(sink.out),
            "HTTP/1.1 299 \r\nServer: ringnet\r\nDate: <date>\r\nContent-Length: 1\r\n\r\nx");
  sink.out.clear();
  ASSERT_TRUE(write_response(sink, 42, "", "", true).is_ok());  // not a status code
  EXPECT_EQ(sink.out.substr(0, 34), "HTTP/1.1 500 Internal Server Error");
}

TEST(HttpResponse, LargeBodyIsOneWritevOrTwoWrites) {
  std::string body = test::make_payload(100000, 7);
  std::string want_head =
      "HTTP/1.1 200 OK\r\nServer: ringnet\r\nDate: <date>\r\n"
      "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n";
  VectorSink v;
  ASSERT_TRUE(write_response(v, 200, "application/octet-stream", body, true).is_ok());
  EXPECT_EQ(v.writevs, 1);
  EXPECT_EQ(v.writes, 0);
  EXPECT_TRUE(test::same_bytes(want_head + body, mask_dates(v.out)));
  CountingSink c;
  ASSERT_TRUE(write_response(c, 200, "application/octet-stream", body, true).is_ok());
  EXPECT_EQ(c.writes, 2);
  EXPECT_TRUE(test::same_bytes(want_head + body, mask_dates(c.out)));
}

TEST(HttpResponse, HugeExtraFieldsStillFormatCorrectly) {
  std::string big(10000, 'v');
  CountingSink sink;
  ASSERT_TRUE(write_response(sink, 200, "text/plain", "ok", true, {{"X-Big", big}}).is_ok());
  EXPECT_EQ(mask_dates(sink.out),
            "HTTP/1.1 200 OK\r\nServer: ringnet\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
            "Content-Length: 2\r\nX-Big: " + big + "\r\n\r\nok");
}

TEST(HttpResponse, RespondHandlesHeadAndHttp10KeepAlive) {
  Http1Codec codec;
  HttpRequest req;
  ASSERT_EQ(codec.decode("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n", req).kind, Decoded::kFrame);
  CountingSink head;
  ASSERT_TRUE(respond(head, req, 200, "text/plain", "Hello, World!").is_ok());
  EXPECT_EQ(mask_dates(head.out),
            "HTTP/1.1 200 OK\r\nServer: ringnet\r\nDate: <date>\r\n"
            "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n");
  ASSERT_EQ(codec.decode("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", req).kind, Decoded::kFrame);
  CountingSink ka;
  ASSERT_TRUE(respond(ka, req, 200, "text/plain", "hi", {{"X", "1"}}).is_ok());
  EXPECT_EQ(mask_dates(ka.out),
            "HTTP/1.1 200 OK\r\nServer: ringnet\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
            "Content-Length: 2\r\nConnection: keep-alive\r\nX: 1\r\n\r\nhi");
  ASSERT_EQ(codec.decode("GET /x HTTP/1.0\r\n\r\n", req).kind, Decoded::kFrame);
  CountingSink close;
  ASSERT_TRUE(respond(close, req, 200, "text/plain", "hi").is_ok());
  EXPECT_EQ(mask_dates(close.out),
            "HTTP/1.1 200 OK\r\nServer: ringnet\r\nDate: <date>\r\nContent-Type: text/plain\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\nhi");
}

TEST(HttpResponse, ErrorReplyForEachStatus) {
  Http1Codec codec;
  const std::pair<int, const char*> cases[] = {
      {400, "Bad Request"}, {413, "Content Too Large"}, {414, "URI Too Long"},
      {417, "Expectation Failed"}, {431, "Request Header Fields Too Large"},
      {501, "Not Implemented"}, {505, "HTTP Version Not Supported"}, {0, "Bad Request"}};
  for (const auto& [status, phrase] : cases) {
    CountingSink sink;
    ASSERT_TRUE(codec.write_error_reply(ProtocolError{"x", status}, sink).is_ok());
    EXPECT_EQ(sink.writes, 1);
    EXPECT_EQ(mask_dates(sink.out),
              "HTTP/1.1 " + std::to_string(status == 0 ? 400 : status) + " " + phrase +
                  "\r\nServer: ringnet\r\nDate: <date>\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n");
  }
}

// ---- HttpServerHandler over sockets ----------------------------------------------------------

// Answers every request with "<method> <target> <body>" and counts requests.
class EchoRequestApp : public HttpServerHandler {
 public:
  using HttpServerHandler::HttpServerHandler;
  Action on_request(Conn& c, const HttpRequest& req) override {
    ++requests;
    std::string body = std::string(req.method) + " " + std::string(req.target) + " " + std::string(req.body);
    return respond(c, req, 200, "text/plain", body).is_ok() ? Action::kNone : Action::kClose;
  }
  std::atomic<int> requests{0};
};

// The exact response EchoRequestApp gives, with the Date masked.
std::string app_response(std::string_view method, std::string_view target, std::string_view body,
                         bool keep_alive, bool http10_keep_alive = false) {
  std::string text = std::string(method) + " " + std::string(target) + " " + std::string(body);
  std::string out;
  StringSink sink{out};
  if (http10_keep_alive) {
    write_response(sink, 200, "text/plain", text, true, {{"Connection", "keep-alive"}}).ignore();
  } else {
    write_response(sink, 200, "text/plain", text, keep_alive).ignore();
  }
  return mask_dates(out);
}

std::string error_response(int status) {
  std::array<char, kHttpErrorReplyMax> buf;
  return mask_dates(std::string(format_error_reply(status, buf)));
}

class HttpServerTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.start()); }

  Client connect() {
    Client c;
    EXPECT_TRUE(c.connect_tcp(server_.port()));
    return c;
  }

  // Reads exactly the size of `expected` (dates have a fixed size) and compares.
  static testing::AssertionResult expect_bytes(Client& c, const std::string& expected) {
    std::string got;
    size_t size = expected.size() + (kHttpDateLength - 6) * count_dates(expected);
    testing::AssertionResult r = c.recv_exact(size, &got);
    if (!r) return r;
    return test::same_bytes(expected, mask_dates(got));
  }
  // Reads until the server closes the connection and compares, dates masked.
  static testing::AssertionResult expect_until_eof(Client& c, const std::string& expected) {
    std::string got;
    testing::AssertionResult r = c.recv_until_eof(&got);
    if (!r) return r;
    return test::same_bytes(expected, mask_dates(got));
  }
  static size_t count_dates(const std::string& s) {
    size_t n = 0;
    for (size_t at = s.find("Date: <date>"); at != std::string::npos; at = s.find("Date: <date>", at + 1)) ++n;
    return n;
  }

  EchoRequestApp app_;
  TestServer server_{app_, test::test_options(GetParam())};
};

TEST_P(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Client c = connect();
  std::string wire, want;
  for (int i = 0; i < 50; ++i) {
    std::string target = "/r" + std::to_string(i);
    if (i % 3 == 0) {
      std::string body = "body" + std::to_string(i);
      wire += "POST " + target + " HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(body.size()) +
              "\r\n\r\n" + body;
      want += app_response("POST", target, body, true);
    } else if (i % 3 == 1) {
      wire += "POST " + target + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
      want += app_response("POST", target, "abcde", true);
    } else {
      wire += "GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n";
      want += app_response("GET", target, "", true);
    }
  }
  ASSERT_TRUE(c.send_all(wire));
  EXPECT_TRUE(expect_bytes(c, want));
  EXPECT_FALSE(c.readable_within(Millis(50)));  // nothing more, connection still open
  EXPECT_EQ(app_.requests.load(), 50);
  // Still usable afterwards.
  ASSERT_TRUE(c.send_all("GET /after HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_TRUE(expect_bytes(c, app_response("GET", "/after", "", true)));
}

TEST_P(HttpServerTest, RequestSentOneByteAtATime) {
  Client c = connect();
  std::string wire(kChunkedPost);
  for (char ch : wire) ASSERT_TRUE(c.send_all(std::string_view(&ch, 1)));
  EXPECT_TRUE(expect_bytes(c, app_response("POST", "/upload?x=1", "hello, world", true)));
}

TEST_P(HttpServerTest, Http10ClosesAfterTheResponse) {
  Client c = connect();
  // The second request in the same write must not be answered.
  ASSERT_TRUE(c.send_all("GET /old HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(expect_until_eof(c, app_response("GET", "/old", "", false)));
  EXPECT_EQ(app_.requests.load(), 1);
}

TEST_P(HttpServerTest, Http10KeepAliveStaysOpen) {
  Client c = connect();
  ASSERT_TRUE(c.send_all("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  EXPECT_TRUE(expect_bytes(c, app_response("GET", "/a", "", true, true)));
  ASSERT_TRUE(c.send_all("GET /b HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(expect_until_eof(c, app_response("GET", "/b", "", false)));
}

TEST_P(HttpServerTest, ConnectionCloseIn11) {
  Client c = connect();
  ASSERT_TRUE(c.send_all("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                         "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_TRUE(expect_until_eof(c, app_response("GET", "/a", "", true) + app_response("GET", "/b", "", false)));
}

TEST_P(HttpServerTest, DrainingAnswersWithConnectionCloseThenCloses) {
  Client c = connect();
  ASSERT_TRUE(c.send_all("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_TRUE(expect_bytes(c, app_response("GET", "/a", "", true)));
  ASSERT_TRUE(c.send_all("GET /b HTTP/1.1\r\nHo"));  // a request half received ...
  ASSERT_TRUE(test::wait_until([&] { return server_.engine().stats().bytes_in > 0; }, Millis(2000)));
  std::this_thread::sleep_for(Millis(50));
  server_.engine().shutdown(Millis(3000));  // ... when the drain begins
  std::this_thread::sleep_for(Millis(50));
  ASSERT_TRUE(c.send_all("st: h\r\n\r\n"));
  // Answered, but no longer kept alive: "Connection: close", then EOF.
  EXPECT_TRUE(expect_until_eof(c, app_response("GET", "/b", "", false)));
  EXPECT_EQ(app_.requests.load(), 2);
}

TEST_P(HttpServerTest, ExpectContinueIsAnsweredOncePerRequest) {
  Client c = connect();
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(c.send_all("POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n"));
    std::string got;
    ASSERT_TRUE(c.recv_exact(25, &got));
    EXPECT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
    // The body in two pieces: no second 100 for the same request.
    ASSERT_TRUE(c.send_all("abc"));
    EXPECT_FALSE(c.readable_within(Millis(50)));
    ASSERT_TRUE(c.send_all("def"));
    EXPECT_TRUE(expect_bytes(c, app_response("POST", "/up", "abcdef", true)));
  }
  // A body that came with the head needs no 100.
  ASSERT_TRUE(c.send_all("POST /now HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"));
  EXPECT_TRUE(expect_bytes(c, app_response("POST", "/now", "ok", true)));
}

TEST_P(HttpServerTest, TooLargeWithExpectGets413NotContinue) {
  Client c = connect();
  ASSERT_TRUE(c.send_all("POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n"));
  EXPECT_TRUE(expect_until_eof(c, error_response(413)));
  EXPECT_EQ(app_.protocol_errors(), 1u);
}

// The client keeps sending a body the server has refused. A plain close would leave that
// input unread, and the kernel would answer it with RST (the client's send fails, and on a
// real network the 413 could be destroyed before it is read). The lingering close drops
// the rest of the body, then closes once the client is done.
TEST_P(HttpServerTest, RefusedBodyStillBeingSentGetsItsAnswerThenEof) {
  Client c = connect();
  std::string body = test::make_payload(2000000, 9);
  ASSERT_TRUE(c.send_all("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n" + body));
  ASSERT_TRUE(c.shutdown_write());
  EXPECT_TRUE(expect_until_eof(c, error_response(413)));
  EXPECT_EQ(app_.protocol_errors(), 1u);
}

TEST_P(HttpServerTest, BadRequestGetsItsStatusAndEofOthersGoOn) {
  Client good = connect();
  ASSERT_TRUE(good.send_all("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_TRUE(expect_bytes(good, app_response("GET", "/1", "", true)));

  const std::pair<std::string, int> cases[] = {
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"GET /" + std::string(9000, 'u') + " HTTP/1.1\r\nHost: h\r\n\r\n", 414},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(17000, 'x') + "\r\n\r\n", 431},
  };
  for (const auto& [wire, status] : cases) {
    Client bad = connect();
    // A valid request first: it is answered before the bad one.
    ASSERT_TRUE(bad.send_all("GET /ok HTTP/1.1\r\nHost: h\r\n\r\n" + wire));
    EXPECT_TRUE(expect_until_eof(bad, app_response("GET", "/ok", "", true) + error_response(status))) << status;
  }
  EXPECT_EQ(app_.protocol_errors(), 4u);

  ASSERT_TRUE(good.send_all("GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_TRUE(expect_bytes(good, app_response("GET", "/2", "", true)));
}

TEST_P(HttpServerTest, LargeChunkedUploadArrivingInPieces) {
  Client c = connect();
  std::string body = test::make_payload(600 * 1024, 3);
  std::string wire = "POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < body.size(); at += 7000) {
    std::string piece = body.substr(at, 7000);
    char size[16];
    snprintf(size, sizeof size, "%zx", piece.size());
    wire += std::string(size) + "\r\n" + piece + "\r\n";
  }
  wire += "0\r\n\r\n";
  std::string want = app_response("POST", "/big", body, true);
  std::string got;
  size_t size = want.size() + kHttpDateLength - 6;
  ASSERT_TRUE(c.exchange(wire, size, &got));
  EXPECT_TRUE(test::same_bytes(want, mask_dates(got)));
}

INSTANTIATE_TEST_SUITE_P(Backends, HttpServerTest, testing::ValuesIn(test::test_backends()),
                         test::backend_param_name);

}  // namespace
}  // namespace ringnet::proto
