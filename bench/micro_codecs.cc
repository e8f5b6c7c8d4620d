// SPDX-License-Identifier: MIT
// Micro-benchmarks of the protocol codecs (<ringnet/proto/...>, public headers only): what
// decoding and encoding cost per frame, apart from any socket.
//
//   build-release/bench/micro_codecs                          # all
//   build-release/bench/micro_codecs --benchmark_filter=Resp
//
// Decode benchmarks feed a batch of kBatch frames back to back, the way pipelined input sits
// in a connection's inbound buffer, and decode them all (items = frames, bytes = wire bytes).
// Frames are built with the codec's own encoder, so the input is valid by construction.
// Encode benchmarks append to a std::string whose capacity is kept across iterations (as a
// connection's outbound queue keeps its blocks), so they measure formatting, not malloc.
// "Partial" benchmarks decode a frame that lacks its last byte with a fresh state: the
// price of one scan from the frame's start. "Trickled" benchmarks feed one large frame
// through read_frames (FramedHandler's loop) in small arrivals, against the same frame in
// one arrival ("Whole"): with checkpoints the two cost about the same.
#include <benchmark/benchmark.h>
#include <ringnet/proto/delimiter_codec.h>
#include <ringnet/proto/fixed_length_codec.h>
#include <ringnet/proto/frame_reader.h>
#include <ringnet/proto/http1.h>
#include <ringnet/proto/http_response.h>
#include <ringnet/proto/length_field_codec.h>
#include <ringnet/proto/resp.h>
#include <ringnet/proto/rpc_frame.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace ringnet::proto;

constexpr int kBatch = 16;

void sizes(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(1024)->Arg(16 * 1024); }

// Decodes every frame of `wire` (kBatch of them) once per iteration. Fails the benchmark,
// rather than measuring nonsense, if the codec does not see exactly kBatch frames.
template <typename Codec>
void decode_batch(benchmark::State& state, const Codec& codec, std::string_view wire) {
  typename Codec::Frame frame;
  for (auto _ : state) {
    std::string_view in = wire;
    int frames = 0;
    while (!in.empty()) {
      Decoded d = codec.decode(in, frame);
      if (d.kind != Decoded::kFrame) break;
      benchmark::DoNotOptimize(frame);
      in.remove_prefix(d.consumed);
      ++frames;
    }
    if (frames != kBatch) {
      state.SkipWithError("decode did not return the expected frames");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(wire.size()));
}

// One decode of `wire` minus its last byte, which must say kNeedMore.
template <typename Codec>
void decode_partial(benchmark::State& state, const Codec& codec, std::string_view frame_bytes) {
  typename Codec::Frame frame;
  const std::string_view partial = frame_bytes.substr(0, frame_bytes.size() - 1);
  for (auto _ : state) {
    Decoded d = codec.decode(partial, frame);
    if (d.kind != Decoded::kNeedMore) {
      state.SkipWithError("a partial frame did not decode as kNeedMore");
      break;
    }
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(partial.size()));
}

// Feeds `wire` (exactly one frame) to read_frames in arrivals of `step` bytes, as a
// connection would see it. Items = frames, bytes = wire bytes.
template <typename Codec>
void decode_trickled(benchmark::State& state, const Codec& codec, std::string_view wire,
                     size_t step) {
  uint64_t examined = 0;
  for (auto _ : state) {
    StringInput input;
    DecodeWork work;
    for (size_t at = 0; at < wire.size(); at += step) {
      input.arrive(wire.substr(at, step));
      read_frames(
          codec, input, work,
          [](const typename Codec::Frame& f) {
            benchmark::DoNotOptimize(f);
            return ringnet::Action::kNone;
          },
          [](uint8_t) { return ringnet::Action::kNone; },
          [](const ProtocolError&) { return ringnet::Action::kClose; });
    }
    if (work.frames != 1 || !input.peek().empty()) {
      state.SkipWithError("the frame did not decode");
      break;
    }
    examined = work.examined;
  }
  state.counters["examined_per_byte"] = double(examined) / double(wire.size());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(wire.size()));
}

// Calls encode_one(sink) kBatch times per iteration into a reused string.
template <typename EncodeOne>
void encode_batch(benchmark::State& state, EncodeOne&& encode_one) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    StringSink sink{out};
    for (int i = 0; i < kBatch; ++i) {
      if (!encode_one(sink)) {
        state.SkipWithError("encode failed");
        return;
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(out.size()));
}

// kBatch copies of what one encode_one(sink) writes; empty if it fails (decode_batch then
// reports the error).
template <typename EncodeOne>
std::string wire_of(EncodeOne&& encode_one) {
  std::string out;
  StringSink sink{out};
  for (int i = 0; i < kBatch; ++i) {
    if (!encode_one(sink)) return {};
  }
  return out;
}

std::string body_of(size_t n) { return std::string(n, 'x'); }

// ---- delimiter -------------------------------------------------------------------------

DelimiterCodec crlf_codec() {
  return DelimiterCodec({.delimiter = "\r\n", .max_frame = 64 * 1024, .strip_delimiter = true});
}

void BM_DelimiterDecode(benchmark::State& state) {
  const DelimiterCodec codec = crlf_codec();
  const std::string line = body_of(static_cast<size_t>(state.range(0)));
  decode_batch(state, codec, wire_of([&](StringSink& s) { return codec.encode(line, s); }));
}
BENCHMARK(BM_DelimiterDecode)->Apply(sizes);

void BM_DelimiterDecodePartial(benchmark::State& state) {
  const DelimiterCodec codec = crlf_codec();
  const std::string line = body_of(static_cast<size_t>(state.range(0))) + "\r\n";
  decode_partial(state, codec, line);
}
BENCHMARK(BM_DelimiterDecodePartial)->Apply(sizes);

void BM_DelimiterEncode(benchmark::State& state) {
  const DelimiterCodec codec = crlf_codec();
  const std::string line = body_of(static_cast<size_t>(state.range(0)));
  encode_batch(state, [&](StringSink& s) { return bool(codec.encode(line, s)); });
}
BENCHMARK(BM_DelimiterEncode)->Apply(sizes);

// ---- fixed length ----------------------------------------------------------------------

void BM_FixedLengthDecode(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const FixedLengthCodec codec({.frame_length = n});
  const std::string frame = body_of(n);
  decode_batch(state, codec, wire_of([&](StringSink& s) { return codec.encode(frame, s); }));
}
BENCHMARK(BM_FixedLengthDecode)->Apply(sizes);

void BM_FixedLengthEncode(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const FixedLengthCodec codec({.frame_length = n});
  const std::string frame = body_of(n);
  encode_batch(state, [&](StringSink& s) { return bool(codec.encode(frame, s)); });
}
BENCHMARK(BM_FixedLengthEncode)->Apply(sizes);

// ---- length field ----------------------------------------------------------------------

// The common shape: a 4-byte big-endian body length, stripped from the decoded frame.
LengthFieldCodec u32_prefix_codec() {
  return LengthFieldCodec({.length_size = 4, .bytes_to_strip = 4});
}

void BM_LengthFieldDecode(benchmark::State& state) {
  const LengthFieldCodec codec = u32_prefix_codec();
  const std::string body = body_of(static_cast<size_t>(state.range(0)));
  decode_batch(state, codec, wire_of([&](StringSink& s) { return codec.encode(body, s); }));
}
BENCHMARK(BM_LengthFieldDecode)->Apply(sizes);

void BM_LengthFieldEncode(benchmark::State& state) {
  const LengthFieldCodec codec = u32_prefix_codec();
  const std::string body = body_of(static_cast<size_t>(state.range(0)));
  encode_batch(state, [&](StringSink& s) { return bool(codec.encode(body, s)); });
}
BENCHMARK(BM_LengthFieldEncode)->Apply(sizes);

// ---- RPC frame -------------------------------------------------------------------------

RpcFrame rpc_request(std::string_view body) {
  return {.type = RpcType::kRequest, .flags = kRpcFlagIdempotent, .method = 7,
          .request_id = 0x1234567890ull, .body = body};
}

void BM_RpcFrameDecode(benchmark::State& state) {
  const RpcFrameCodec codec;
  const std::string body = body_of(static_cast<size_t>(state.range(0)));
  const RpcFrame frame = rpc_request(body);
  decode_batch(state, codec, wire_of([&](StringSink& s) { return codec.encode(frame, s); }));
}
BENCHMARK(BM_RpcFrameDecode)->Apply(sizes);

void BM_RpcFrameEncode(benchmark::State& state) {
  const RpcFrameCodec codec;
  const std::string body = body_of(static_cast<size_t>(state.range(0)));
  const RpcFrame frame = rpc_request(body);
  encode_batch(state, [&](StringSink& s) { return bool(codec.encode(frame, s)); });
}
BENCHMARK(BM_RpcFrameEncode)->Apply(sizes);

// ---- RESP ------------------------------------------------------------------------------

// What redis-benchmark sends for SET with a value of range(0) bytes, as multibulk.
void BM_RespDecodeSet(benchmark::State& state) {
  const RespCodec codec;
  const std::string value = body_of(static_cast<size_t>(state.range(0)));
  const std::array<std::string_view, 3> args{"SET", "key:000000012345", value};
  decode_batch(state, codec, wire_of([&](StringSink& s) { return RespCodec::encode(args, s); }));
}
BENCHMARK(BM_RespDecodeSet)->Apply(sizes);

void BM_RespDecodeGet(benchmark::State& state) {
  const RespCodec codec;
  const std::array<std::string_view, 2> args{"GET", "key:000000012345"};
  decode_batch(state, codec, wire_of([&](StringSink& s) { return RespCodec::encode(args, s); }));
}
BENCHMARK(BM_RespDecodeGet);

// The inline form (telnet, redis-benchmark's PING_INLINE), with a quoted argument.
void BM_RespDecodeInline(benchmark::State& state) {
  const RespCodec codec;
  std::string wire;
  for (int i = 0; i < kBatch; ++i) wire += "SET key:000000012345 \"hello world\"\r\n";
  decode_batch(state, codec, wire);
}
BENCHMARK(BM_RespDecodeInline);

void BM_RespDecodeSetPartial(benchmark::State& state) {
  const RespCodec codec;
  const std::string value = body_of(static_cast<size_t>(state.range(0)));
  const std::array<std::string_view, 3> args{"SET", "key:000000012345", value};
  std::string wire;
  StringSink sink{wire};
  (void)RespCodec::encode(args, sink);
  decode_partial(state, codec, wire);
}
BENCHMARK(BM_RespDecodeSetPartial)->Apply(sizes);

// Issue #19: one command of 200,000 arguments of 27 bytes (6.8 MB), in one arrival and in
// arrivals of 1 KiB.
const std::string& big_resp_command() {
  static const std::string wire = [] {
    std::vector<std::string> owned(200'000, std::string(27, 'a'));
    owned[0] = "RPUSH";
    std::vector<std::string_view> views(owned.begin(), owned.end());
    std::string out;
    StringSink sink{out};
    (void)RespCodec::encode(views, sink);
    return out;
  }();
  return wire;
}

void BM_RespWholeBigCommand(benchmark::State& state) {
  decode_trickled(state, RespCodec(), big_resp_command(), big_resp_command().size());
}
BENCHMARK(BM_RespWholeBigCommand)->Unit(benchmark::kMillisecond);

void BM_RespTrickledBigCommand(benchmark::State& state) {
  decode_trickled(state, RespCodec(), big_resp_command(), static_cast<size_t>(state.range(0)));
}
BENCHMARK(BM_RespTrickledBigCommand)->Arg(1024)->Unit(benchmark::kMillisecond);

// Replies: a bulk string (GET's answer) and +OK (SET's).
void BM_RespWriteBulk(benchmark::State& state) {
  const std::string value = body_of(static_cast<size_t>(state.range(0)));
  encode_batch(state, [&](StringSink& s) { return bool(resp::write_bulk(s, value)); });
}
BENCHMARK(BM_RespWriteBulk)->Apply(sizes);

void BM_RespWriteOk(benchmark::State& state) {
  encode_batch(state, [](StringSink& s) { return bool(resp::write_ok(s)); });
}
BENCHMARK(BM_RespWriteOk);

// A command as a client library sends it.
void BM_RespEncodeCommand(benchmark::State& state) {
  const std::string value = body_of(static_cast<size_t>(state.range(0)));
  const std::array<std::string_view, 3> args{"SET", "key:000000012345", value};
  encode_batch(state, [&](StringSink& s) { return bool(RespCodec::encode(args, s)); });
}
BENCHMARK(BM_RespEncodeCommand)->Apply(sizes);

// ---- HTTP/1.1 --------------------------------------------------------------------------

// What wrk sends for /plaintext.
constexpr std::string_view kWrkGet = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

// A browser-like request: 10 header fields, a query string.
constexpr std::string_view kBrowserGet =
    "GET /search?q=ringnet&lang=en HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Cache-Control: max-age=0\r\n"
    "\r\n";

std::string repeated(std::string_view one) {
  std::string wire;
  for (int i = 0; i < kBatch; ++i) wire += one;
  return wire;
}

void BM_HttpDecodeWrkGet(benchmark::State& state) {
  const Http1Codec codec;
  decode_batch(state, codec, repeated(kWrkGet));
}
BENCHMARK(BM_HttpDecodeWrkGet);

void BM_HttpDecodeBrowserGet(benchmark::State& state) {
  const Http1Codec codec;
  decode_batch(state, codec, repeated(kBrowserGet));
}
BENCHMARK(BM_HttpDecodeBrowserGet);

// A POST with a Content-Length body of range(0) bytes.
void BM_HttpDecodePost(benchmark::State& state) {
  const Http1Codec codec;
  const std::string body = body_of(static_cast<size_t>(state.range(0)));
  const std::string one = "POST /api/items HTTP/1.1\r\nHost: api.example.com\r\n"
                          "Content-Type: application/octet-stream\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  decode_batch(state, codec, repeated(one));
}
BENCHMARK(BM_HttpDecodePost)->Apply(sizes);

// The same body sent chunked in 4 chunks: decoded into the request's own storage.
void BM_HttpDecodeChunkedPost(benchmark::State& state) {
  const Http1Codec codec;
  const size_t n = static_cast<size_t>(state.range(0));
  std::string one = "POST /api/items HTTP/1.1\r\nHost: api.example.com\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
  char size_line[32];
  for (int c = 0; c < 4; ++c) {
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", n / 4);
    one += size_line + body_of(n / 4) + "\r\n";
  }
  one += "0\r\n\r\n";
  decode_batch(state, codec, repeated(one));
}
BENCHMARK(BM_HttpDecodeChunkedPost)->Apply(sizes);

// Issue #19: an upload of 29,000 one-byte chunks, in one arrival and 6 bytes at a time.
const std::string& tiny_chunks_upload() {
  static const std::string wire = [] {
    std::string out = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 29'000; ++i) out += "1\r\nx\r\n";
    return out + "0\r\n\r\n";
  }();
  return wire;
}

void BM_HttpWholeTinyChunks(benchmark::State& state) {
  decode_trickled(state, Http1Codec(), tiny_chunks_upload(), tiny_chunks_upload().size());
}
BENCHMARK(BM_HttpWholeTinyChunks)->Unit(benchmark::kMillisecond);

void BM_HttpTrickledTinyChunks(benchmark::State& state) {
  decode_trickled(state, Http1Codec(), tiny_chunks_upload(), static_cast<size_t>(state.range(0)));
}
BENCHMARK(BM_HttpTrickledTinyChunks)->Arg(6)->Unit(benchmark::kMillisecond);

void BM_HttpDecodeBrowserGetPartial(benchmark::State& state) {
  const Http1Codec codec;
  decode_partial(state, codec, kBrowserGet);
}
BENCHMARK(BM_HttpDecodeBrowserGetPartial);

// The /plaintext answer (status line, Server, Date, Content-Type, Content-Length, body).
void BM_HttpWriteResponse(benchmark::State& state) {
  encode_batch(state, [](StringSink& s) {
    return bool(write_response(s, 200, "text/plain", "Hello, World!", true));
  });
}
BENCHMARK(BM_HttpWriteResponse);

void BM_HttpWriteResponseBody(benchmark::State& state) {
  const std::string body = body_of(static_cast<size_t>(state.range(0)));
  encode_batch(state, [&](StringSink& s) {
    return bool(write_response(s, 200, "application/octet-stream", body, true));
  });
}
BENCHMARK(BM_HttpWriteResponseBody)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
