// rpc_echo: an RPC server on the binary RPC frame (ringnet/proto/rpc_frame.h).
//
//   rpc_echo --port 9000 [--max-body N] [--loops N] [--backend auto|epoll|io_uring] ...
//
// Requests, answered in arrival order on their connection:
//   method 1  echo:    a response with the request's request_id, flags, method and body
//   method 2  reverse: the same, with the body bytes in reverse order
//   other     an error frame with the request's request_id and method, body
//             "unknown method N"
// One-way frames get no reply, whatever their method; they are counted.
// Response and error frames are answers, which only a server sends: a client sending one
// is confused about its role, so the connection is closed (logged, rate-limited) without
// an answer. A malformed header (bad magic, version or type, body_length over --max-body,
// 10 MiB by default) closes the connection the same way, before any body is read.
//
// On SIGINT/SIGTERM it prints one line of totals and exits 0:
//   rpc_echo: requests=N one_way=N unknown_method=N misuse=N protocol_errors=N
#include <ringnet/log.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/loop_counter.h>
#include <ringnet/proto/rpc_frame.h>

#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <string_view>

#include "sample_main.h"

namespace {

using ringnet::Action;
using ringnet::Conn;
using ringnet::Status;
using ringnet::proto::RpcFrame;
using ringnet::proto::RpcFrameCodec;
using ringnet::proto::RpcType;

constexpr uint16_t kMethodEcho = 1;
constexpr uint16_t kMethodReverse = 2;

class RpcEchoHandler final : public ringnet::proto::FramedHandler<RpcFrameCodec> {
 public:
  explicit RpcEchoHandler(RpcFrameCodec codec) : FramedHandler(codec) {}

  Action on_message(Conn& conn, const RpcFrame& frame) override {
    const int loop = conn.loop_index();
    switch (frame.type) {
      case RpcType::kOneWay:
        one_way_.add(loop);
        return Action::kNone;
      case RpcType::kRequest:
        requests_.add(loop);
        return answer(conn, frame) ? Action::kNone : Action::kClose;
      case RpcType::kResponse:
      case RpcType::kError:
        break;
    }
    misuse_.add(loop);
    // Reuses the adapter's rate-limited log line and close.
    return on_protocol_error(conn, {"rpc: response/error frame sent to a server", 0});
  }

  void on_shutdown(ringnet::Engine&) override {
    std::printf("rpc_echo: requests=%" PRIu64 " one_way=%" PRIu64 " unknown_method=%" PRIu64
                " misuse=%" PRIu64 " protocol_errors=%" PRIu64 "\n",
                requests_.sum(), one_way_.sum(), unknown_method_.sum(), misuse_.sum(),
                protocol_errors());
    std::fflush(stdout);
  }

 private:
  bool answer(Conn& conn, const RpcFrame& request) {
    RpcFrame reply = request;
    reply.type = RpcType::kResponse;
    switch (request.method) {
      case kMethodEcho:
        return codec().encode(reply, conn).is_ok();
      case kMethodReverse:
        return write_reversed(conn, request);
      default:
        break;
    }
    unknown_method_.add(conn.loop_index());
    char text[32] = "unknown method ";
    constexpr size_t kPrefix = sizeof("unknown method ") - 1;
    auto [end, ec] = std::to_chars(text + kPrefix, text + sizeof(text), request.method);
    reply.type = RpcType::kError;
    reply.body = std::string_view(text, static_cast<size_t>(end - text));
    return codec().encode(reply, conn).is_ok();
  }

  // The reversed body goes out through a stack buffer, piece by piece (Conn::write copies),
  // so a reply needs no heap allocation however large the body. The length is the
  // request's, which the codec already held to max_body.
  static bool write_reversed(Conn& conn, const RpcFrame& request) {
    const ringnet::proto::RpcHeaderBytes header = ringnet::proto::encode_rpc_header(
        RpcType::kResponse, request.flags, request.method, request.request_id,
        static_cast<uint32_t>(request.body.size()));
    if (!conn.write(std::string_view(header.data(), header.size()))) return false;
    char piece[4096];
    std::string_view rest = request.body;
    while (!rest.empty()) {
      const size_t n = rest.size() < sizeof(piece) ? rest.size() : sizeof(piece);
      // The last n bytes of what is left, reversed, come next.
      for (size_t i = 0; i < n; ++i) piece[i] = rest[rest.size() - 1 - i];
      rest.remove_suffix(n);
      if (!conn.write(std::string_view(piece, n))) return false;
    }
    return true;
  }

  ringnet::proto::LoopCounter requests_;
  ringnet::proto::LoopCounter one_way_;
  ringnet::proto::LoopCounter unknown_method_;
  ringnet::proto::LoopCounter misuse_;
};

// A decimal uint32 in [1, 2^32 - 1], parsed by hand (no exceptions, no locale).
bool parse_body_limit(std::string_view text, uint32_t* out) {
  uint64_t v = 0;
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > UINT32_MAX) return false;
  }
  if (v == 0) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  ringnet::proto::RpcFrameOptions codec_options;
  bool bad_max_body = false;
  sample::Flags flags = sample::parse_flags(
      argc, argv,
      [&](std::string_view flag, const std::function<std::string_view()>& value) {
        if (flag != "--max-body") return false;
        bad_max_body = !parse_body_limit(value(), &codec_options.max_body);
        return true;
      },
      "[--max-body BYTES]");
  if (bad_max_body) {
    std::fprintf(stderr, "rpc_echo: --max-body takes a byte count from 1 to 4294967295\n");
    return 2;
  }
  RpcEchoHandler handler{RpcFrameCodec(codec_options)};
  return sample::run("rpc_echo", handler, flags,
                     [&handler](ringnet::MetricsWriter& w) { handler.write_metrics(w, "rpc"); });
}
