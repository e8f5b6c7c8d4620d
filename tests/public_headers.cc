// SPDX-License-Identifier: MIT
// Every public header, compiled with -Wall -Wextra -Wconversion -Wsign-conversion -Werror
// (tests/meson.build): an application that builds with strict warnings must not get them
// from ringnet's headers. The header templates are instantiated below, since their bodies
// are only checked once instantiated. Nothing here needs to run: the build is the test.
// tests/header_std_check.py fails when a public header is missing from this list.
#include <ringnet/address.h>
#include <ringnet/buffer.h>
#include <ringnet/config.h>
#include <ringnet/conn.h>
#include <ringnet/detail/peer_address.h>
#include <ringnet/detail/wheel_timer.h>
#include <ringnet/engine.h>
#include <ringnet/handler.h>
#include <ringnet/log.h>
#include <ringnet/metrics.h>
#include <ringnet/options.h>
#include <ringnet/proto/codec.h>
#include <ringnet/proto/delimiter_codec.h>
#include <ringnet/proto/fixed_length_codec.h>
#include <ringnet/proto/frame_reader.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/hash_router.h>
#include <ringnet/proto/http1.h>
#include <ringnet/proto/http_response.h>
#include <ringnet/proto/http_server.h>
#include <ringnet/proto/length_field_codec.h>
#include <ringnet/proto/loop_counter.h>
#include <ringnet/proto/peer_pool.h>
#include <ringnet/proto/resp.h>
#include <ringnet/proto/rpc_client.h>
#include <ringnet/proto/rpc_compression.h>
#include <ringnet/proto/rpc_frame.h>
#include <ringnet/proto/rpc_server.h>
#include <ringnet/proto/rpc_status.h>
#include <ringnet/proto/routed_rpc.h>
#include <ringnet/proto/rpc_typed.h>
#include <ringnet/proto/source_registry.h>
#include <ringnet/proto/tls.h>
#include <ringnet/signals.h>
#include <ringnet/status.h>
#include <ringnet/transport.h>
#include <ringnet/version.h>
#include <ringnet/worker_pool.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using namespace ringnet;
using namespace ringnet::proto;

struct Lines final : FramedHandler<DelimiterCodec> {
  Action on_message(Conn& c, const std::string_view& line) override {
    return codec().encode(line, c).is_ok() ? Action::kNone : Action::kClose;
  }
};

struct Hello final : HttpServerHandler {
  Action on_request(Conn& c, const HttpRequest& req) override {
    return respond(c, req, 200, "text/plain", "hi", {{"X-A", "b"}}).is_ok() ? Action::kNone
                                                                            : Action::kClose;
  }
};

struct Kv final : RespHandler {
  Action on_command(Conn& c, const RespCommand& cmd) override {
    if (cmd.is("PING")) return resp::write_simple_string(c, "PONG").is_ok() ? Action::kNone
                                                                             : Action::kClose;
    (void)resp::write_integer(c, static_cast<int64_t>(cmd.size()));
    (void)resp::write_array_header(c, cmd.size());
    (void)resp::write_null_bulk(c);
    (void)resp::write_null_array(c);
    (void)resp::write_ok(c);
    (void)RespCodec::encode(cmd, c);
    return resp::write_bulk(c, cmd.name()).is_ok() ? Action::kNone : Action::kClose;
  }
};

struct Rpc final : FramedHandler<RpcFrameCodec> {
  Action on_message(Conn& c, const RpcFrame& frame) override {
    return codec().encode(frame, c).is_ok() ? Action::kNone : Action::kClose;
  }
};

struct Fixed final : FramedHandler<FixedLengthCodec> {
  Action on_message(Conn& c, const std::string_view& f) override {
    return codec().encode(f, c).is_ok() ? Action::kNone : Action::kClose;
  }
};

struct Length final : FramedHandler<LengthFieldCodec> {
  Action on_message(Conn& c, const std::string_view& f) override {
    return codec().encode(f, c).is_ok() ? Action::kNone : Action::kClose;
  }
};

template <typename C>
uint64_t decode_all(const C& codec, std::string_view bytes) {
  StringInput input;
  input.arrive(bytes);
  DecodeWork work;
  (void)read_frames(
      codec, input, work, [](const typename C::Frame&) { return Action::kNone; },
      [](uint8_t) { return Action::kNone; }, [](const ProtocolError&) { return Action::kClose; });
  return work.frames;
}

}  // namespace

// Not static, so the compiler keeps (and checks) everything it reaches; never called.
void ringnet_public_headers_instantiate(Conn& conn, WorkerPool& pool, Engine& engine) {
  log(LogLevel::kInfo, "{} {}", 1, "x");
  RINGNET_LOG_LIMITED(LogLevel::kWarn, 10, "limited {}", 2u);
  (void)pool.submit(conn, [] { return std::string("r"); },
                    [](Conn& c, std::string&& r) { (void)c.write(r); });
  (void)pool.submit(conn, [] {}, [](Conn&) {});
  (void)pool.submit(conn.handle(), [] { return 1; }, [](Conn&, int) {});
  (void)pool.submit([] {});
  std::array<iovec, 4> iov{};
  OutboundQueue queue(nullptr);
  (void)queue.gather(iov.data(), iov.size());

  std::string out;
  StringSink sink{out};
  (void)write_response(sink, 404, "text/plain", "no", false);
  (void)write_response_head(sink, 200, "text/plain", 10, true);
  (void)LengthFieldCodec().encode("body", sink);
  (void)RpcFrameCodec().encode(RpcFrame{}, sink);
  std::string packed;
  (void)rpc_compress(out, {.codec = RpcCompression::kZstd}, packed);
  (void)rpc_decompress(1, packed, 1024, out);
  (void)rpc_flags_with_compression(kRpcFlagIdempotent, RpcCompression::kLz4);
  (void)decode_rpc_error_body(encode_rpc_error_body(RpcCode::kInternal, "x")).to_string();
  (void)DelimiterCodec().encode("line", sink);
  (void)FixedLengthCodec({.frame_length = 4}).encode("four", sink);
  (void)Http1Codec().write_error_reply({"bad", 400}, sink);
  (void)RespCodec().write_error_reply({"bad", 0}, sink);
  (void)write_parts(conn, "a", std::string("b"));
  uint64_t frames = decode_all(DelimiterCodec(), "a\nb\n") + decode_all(Http1Codec(), "GET") +
                    decode_all(RespCodec(), "*1\r\n") + decode_all(RpcFrameCodec(), "RN") +
                    decode_all(FixedLengthCodec({.frame_length = 2}), "ab") +
                    decode_all(LengthFieldCodec(), "\0\0\0\1x");
  (void)frames;

  Lines lines;
  Hello hello;
  Kv kv;
  Rpc rpc;
  Fixed fixed;
  Length length;
  MetricsWriter w;
  hello.write_metrics(w, "http");
  PeerPool peers(engine);
  RpcClient client(peers);
  (void)client.add_filter(std::make_shared<RpcClientFilter>());
  RpcClientHandler handler;
  handler.attach(peers, client);
  LoopCounter counter;
  counter.add(conn.loop_index());
  (void)version();
  (void)lines.on_traffic(conn);
  (void)kv.on_traffic(conn);
  (void)rpc.on_traffic(conn);
  (void)fixed.on_traffic(conn);
  (void)length.on_traffic(conn);
}

int main() {
  // The version macros are usable in #if.
#if RINGNET_VERSION_MAJOR < 0 || RINGNET_VERSION_MINOR < 0 || RINGNET_VERSION_PATCH < 0
#error "bad version macros"
#endif
  return 0;
}
