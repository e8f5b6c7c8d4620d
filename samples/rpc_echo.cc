// SPDX-License-Identifier: MIT
// rpc_echo: an RPC server on the binary RPC frame (ringnet/proto/rpc_frame.h).
//
//   rpc_echo --port 9000 [--max-body N] [--pool-threads N] [--loops N] [--backend ...] ...
//
// Requests:
//   method 1  echo:    a response with the request's request_id, flags (but the budget
//                      flag: a response carries no budget field), method and body
//   method 2  reverse: the same, with the body bytes in reverse order
//   method 3  sleep:   blocking work on the worker pool (--pool-threads, default 4): the
//             body starts with a 4-byte big-endian millisecond count (at most 10000),
//             slept on a pool thread; then the body comes back as with echo. Its answer
//             may overtake earlier requests of the connection: clients match by id.
//   method 4  hang:    taken and never answered, as by a handler stuck on a downstream
//             call. The connection is held (Conn::hold), so a drain waits for it until
//             its deadline closes it.
//   other     an error frame with the request's request_id and method: UNKNOWN_METHOD
//             "unknown method N"
// Methods 1, 2 and errors are answered at once, in arrival order on their connection.
// One-way frames get no reply, whatever their method; they are counted.
// Response and error frames are answers, which only a server sends: a client sending one
// is confused about its role, so the connection is closed (logged, rate-limited) without
// an answer. A malformed header (bad magic, version or type, body_length over --max-body,
// 10 MiB by default) closes the connection the same way, before any body is read.
//
// Error frame bodies are rpc_status.h's (a u16 code, then the message): a sleep request
// with a bad body gets INVALID_ARGUMENT, one that cannot be queued (pool full)
// RESOURCE_EXHAUSTED "busy".
//
// On SIGINT/SIGTERM it drains (requests received are answered, --drain-timeout), prints one
// line of totals and exits 0:
//   rpc_echo: requests=N one_way=N unknown_method=N misuse=N protocol_errors=N
#include <ringnet/log.h>
#include <ringnet/proto/framed_handler.h>
#include <ringnet/proto/loop_counter.h>
#include <ringnet/proto/rpc_frame.h>
#include <ringnet/proto/rpc_status.h>
#include <ringnet/worker_pool.h>

#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

#include "sample_main.h"

namespace {

using ringnet::Action;
using ringnet::Conn;
using ringnet::Status;
using ringnet::proto::RpcCode;
using ringnet::proto::RpcFrame;
using ringnet::proto::RpcFrameCodec;
using ringnet::proto::RpcType;

constexpr uint16_t kMethodEcho = 1;
constexpr uint16_t kMethodReverse = 2;
constexpr uint16_t kMethodSleep = 3;
constexpr uint16_t kMethodHang = 4;
constexpr uint32_t kMaxSleepMs = 10000;

class RpcEchoHandler final : public ringnet::proto::FramedHandler<RpcFrameCodec> {
 public:
  RpcEchoHandler(RpcFrameCodec codec, ringnet::WorkerPool& pool)
      : FramedHandler(codec), pool_(pool) {}

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

  // Here, not in main: threads started after the signal mask was set (sample::run sets it
  // before Engine::start) never take SIGTERM themselves.
  Action on_boot(ringnet::Engine&) override {
    if (Status s = pool_.start(); !s) {
      ringnet::log(ringnet::LogLevel::kError, "rpc_echo: worker pool: {}", s.message());
      return Action::kShutdown;
    }
    return Action::kNone;
  }

  void on_shutdown(ringnet::Engine&) override {
    // The loops are gone: jobs not started are dropped, running ones finish and their
    // answers are discarded (counted). Before the Engine is destroyed, as the pool needs.
    pool_.shutdown(ringnet::WorkerPool::ShutdownMode::kDiscardQueued);
    std::printf("rpc_echo: requests=%" PRIu64 " one_way=%" PRIu64 " unknown_method=%" PRIu64
                " misuse=%" PRIu64 " protocol_errors=%" PRIu64 "\n",
                requests_.sum(), one_way_.sum(), unknown_method_.sum(), misuse_.sum(),
                protocol_errors());
    std::fflush(stdout);
  }

 private:
  // The response to `request`: its flags, method, request_id and body, but no budget (the
  // caller's remaining time is the request's alone).
  static RpcFrame response_to(const RpcFrame& request) {
    RpcFrame reply = request;
    reply.type = RpcType::kResponse;
    reply.flags = static_cast<uint16_t>(request.flags & ~unsigned{ringnet::proto::kRpcFlagBudget});
    reply.budget_ms = 0;
    return reply;
  }

  bool answer(Conn& conn, const RpcFrame& request) {
    RpcFrame reply = response_to(request);
    switch (request.method) {
      case kMethodEcho:
        return codec().encode(reply, conn).is_ok();
      case kMethodReverse:
        return write_reversed(conn, request);
      case kMethodSleep:
        return sleep_on_pool(conn, request);
      case kMethodHang:
        conn.hold();  // released never: the connection's close ends it
        return true;
      default:
        break;
    }
    unknown_method_.add(conn.loop_index());
    char text[32] = "unknown method ";
    constexpr size_t kPrefix = sizeof("unknown method ") - 1;
    auto [end, ec] = std::to_chars(text + kPrefix, text + sizeof(text), request.method);
    return write_error(conn, request, RpcCode::kUnknownMethod,
                       std::string_view(text, static_cast<size_t>(end - text)));
  }

  // An error frame answering `request`: its request_id and method, flags 0, the body
  // rpc_status.h's (code, message).
  bool write_error(Conn& conn, const RpcFrame& request, RpcCode code, std::string_view message) {
    const std::string body = ringnet::proto::encode_rpc_error_body(code, message);
    RpcFrame reply;
    reply.type = RpcType::kError;
    reply.method = request.method;
    reply.request_id = request.request_id;
    reply.body = body;
    return codec().encode(reply, conn).is_ok();
  }

  // The reversed body goes out through a stack buffer, piece by piece (Conn::write copies),
  // so a reply needs no heap allocation however large the body. The length is the
  // request's, which the codec already held to max_body.
  static bool write_reversed(Conn& conn, const RpcFrame& request) {
    const ringnet::proto::RpcHeaderBytes header = ringnet::proto::encode_rpc_header(
        RpcType::kResponse, response_to(request).flags, request.method, request.request_id,
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

  bool sleep_on_pool(Conn& conn, const RpcFrame& request) {
    const auto* b = reinterpret_cast<const unsigned char*>(request.body.data());
    uint32_t ms = request.body.size() < 4 ? 0 : (uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 |
                                                 uint32_t{b[2]} << 8 | uint32_t{b[3]});
    RpcFrame reply = response_to(request);
    if (request.body.size() < 4 || ms > kMaxSleepMs) {
      return write_error(conn, request, RpcCode::kInvalidArgument,
                         "sleep: body must start with a big-endian u32 of at most 10000 ms");
    }
    // The frame is a view into the inbound buffer: the job takes copies.
    Status s = pool_.submit(
        conn,
        [ms, body = std::string(request.body)]() mutable {
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          return std::move(body);
        },
        [this, reply](Conn& c, std::string&& body) mutable {
          reply.body = body;
          if (!codec().encode(reply, c)) c.close();
        });
    if (s) return true;
    return write_error(conn, request, RpcCode::kResourceExhausted, "busy");  // queue full
  }

  ringnet::WorkerPool& pool_;
  ringnet::proto::LoopCounter requests_;
  ringnet::proto::LoopCounter one_way_;
  ringnet::proto::LoopCounter unknown_method_;
  ringnet::proto::LoopCounter misuse_;
};

}  // namespace

int main(int argc, char** argv) {
  ringnet::proto::RpcFrameOptions codec_options;
  ringnet::WorkerPoolOptions pool_options{.threads = 4, .queue_capacity = 4096,
                                          .name = "rpc-pool"};
  sample::Flags flags = sample::parse_flags(
      argc, argv,
      "An RPC server on the binary RPC frame (ringnet/proto/rpc_frame.h). Methods: 1 echo, "
      "2 reverse (the body reversed), 3 sleep (a big-endian u32 of ms, at most 10000, slept "
      "on the worker pool), 4 hang (never answered); others get an error frame. One-way "
      "frames are counted, not answered.",
      [&](sample::FlagTable& t) {
        t.add_number("--max-body", "BYTES",
                     "largest request body; a larger header closes the connection",
                     &codec_options.max_body, 1, UINT32_MAX, "byte count");
        t.add_number("--pool-threads", "N", "worker pool threads (method 3, sleep)",
                     &pool_options.threads, 1, 256, "thread count");
      },
      sample::server_notes() + " On exit it prints \"rpc_echo: requests=N one_way=N "
                               "unknown_method=N misuse=N protocol_errors=N\".");
  ringnet::WorkerPool pool(pool_options);  // started in on_boot
  RpcEchoHandler handler{RpcFrameCodec(codec_options), pool};
  return sample::run("rpc_echo", handler, flags, [&handler, &pool](ringnet::MetricsWriter& w) {
    handler.write_metrics(w, "rpc");
    pool.write_metrics(w);
  });
}
