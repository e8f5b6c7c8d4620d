// SPDX-License-Identifier: MIT
// rpc_load's gRPC client: the completion-queue async API driven by this one thread, the
// leanest client gRPC C++ offers (the callback API would run completions on gRPC's own
// threads and hand them over; a sync client needs a thread per caller). Each caller keeps
// one Echo.Call in flight: PrepareAsyncCall + StartCall + Finish(tag = the caller); when
// AsyncNext hands the tag back, the answer is checked and the caller's next call starts.
//
// Channels: by default one per caller, each with its own subchannel pool
// (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL; otherwise gRPC would share one connection among
// channels with equal arguments), so the gRPC server sees what the ringnet server sees:
// --conns TCP connections with one call in flight each. --channels N < --conns shares N
// channels round-robin, calls then multiplexed as HTTP/2 streams on each connection (gRPC's
// own recommendation for one client); that changes how many calls each read and write of
// the server carries, so compare like with like.
//
// No per-call deadline: it would add a timer on both sides per call; a stuck call shows as
// zero completions, and the end of the window cancels whatever is still in flight.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "echo.grpc.pb.h"
#include "rpc_load.h"

namespace bench {
namespace {

using ringnet::bench::Echo;
using ringnet::bench::Msg;

struct GrpcCaller {
  Echo::Stub* stub = nullptr;
  Msg request;   // the body's first 8 bytes are the call number
  Msg reply;
  grpc::Status status;
  std::optional<grpc::ClientContext> ctx;  // one per call: a context serves one call
  std::unique_ptr<grpc::ClientAsyncResponseReader<Msg>> rpc;
  uint64_t seq = 0;
  int64_t sent_ns = 0;
  bool in_flight = false;
};

class GrpcClient {
 public:
  GrpcClient(const RpcLoadOptions& o, MeasureWindow& window) : o_(o), window_(window) {}

  ~GrpcClient() {
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  bool connect_all() {
    const std::string target = o_.host + ":" + std::to_string(o_.port);
    const size_t nchannels = o_.channels ? o_.channels : o_.conns;
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per channel
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
    for (size_t i = 0; i < nchannels; ++i) {
      channels_.push_back(
          grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
      stubs_.push_back(Echo::NewStub(channels_.back()));
    }
    for (auto& ch : channels_) {
      if (!ch->WaitForConnected(deadline)) {
        std::fprintf(stderr, "rpc_load: gRPC channel to %s not ready within 10 s\n",
                     target.c_str());
        window_.error();
        return false;
      }
    }
    for (size_t i = 0; i < o_.conns; ++i) {
      callers_.push_back(std::make_unique<GrpcCaller>());  // not movable (ClientContext)
      GrpcCaller& c = *callers_.back();
      c.stub = stubs_[i % nchannels].get();
      std::string body(o_.size, '\0');
      for (size_t b = 0; b < o_.size; ++b) {
        body[b] = static_cast<char>((i * 131 + b * 7 + 1) & 0xff);
      }
      c.request.set_body(std::move(body));
      c.seq = static_cast<uint64_t>(i) << 40;
    }
    return true;
  }

  void run() {
    window_.begin(monotonic_ns());
    for (auto& c : callers_) start_call(*c, monotonic_ns());
    while (true) {
      const int64_t now = monotonic_ns();
      if (!window_.tick(now)) break;
      if (in_flight_ == 0) {
        std::fprintf(stderr, "rpc_load: every caller failed\n");
        break;
      }
      const auto deadline = std::chrono::system_clock::now() +
                            std::chrono::nanoseconds(window_.ns_to_boundary(now) + 1000);
      void* tag = nullptr;
      bool ok = false;
      const auto status = cq_.AsyncNext(&tag, &ok, deadline);
      if (status == grpc::CompletionQueue::SHUTDOWN) break;
      if (status == grpc::CompletionQueue::GOT_EVENT) {
        on_done(*static_cast<GrpcCaller*>(tag), ok, /*stopping=*/false);
      }
    }
    // The window is over: cancel what is in flight and wait for each call's last event.
    for (auto& c : callers_) {
      if (c->in_flight) c->ctx->TryCancel();
    }
    while (in_flight_ > 0) {
      void* tag = nullptr;
      bool ok = false;
      if (!cq_.Next(&tag, &ok)) break;
      on_done(*static_cast<GrpcCaller*>(tag), ok, /*stopping=*/true);
    }
  }

 private:
  void start_call(GrpcCaller& c, int64_t now) {
    ++c.seq;
    if (o_.size >= sizeof(c.seq)) {
      std::memcpy(c.request.mutable_body()->data(), &c.seq, sizeof(c.seq));
    }
    c.reply.Clear();
    c.ctx.emplace();
    c.sent_ns = now;
    c.rpc = c.stub->PrepareAsyncCall(&*c.ctx, c.request, &cq_);
    c.rpc->StartCall();
    c.rpc->Finish(&c.reply, &c.status, &c);
    c.in_flight = true;
    ++in_flight_;
  }

  void on_done(GrpcCaller& c, bool ok, bool stopping) {
    c.in_flight = false;
    --in_flight_;
    if (stopping) return;  // cancelled by us, or finished as we stopped: not counted
    const char* why = nullptr;
    if (!ok || !c.status.ok()) why = "call failed";
    else if (c.reply.body() != c.request.body()) why = "answer body differs from the request's";
    if (why != nullptr) {
      window_.error();
      if (errors_logged_++ < 5) {
        std::fprintf(stderr, "rpc_load: %s: %s\n", why, c.status.error_message().c_str());
      }
      return;  // this caller stops
    }
    const int64_t now = monotonic_ns();
    window_.completed(c.sent_ns, now);
    start_call(c, now);
  }

  const RpcLoadOptions& o_;
  MeasureWindow& window_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<Echo::Stub>> stubs_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<GrpcCaller>> callers_;  // after cq_: destroyed before it (drained by then)
  size_t in_flight_ = 0;
  unsigned errors_logged_ = 0;
};

}  // namespace

void run_grpc_load(const RpcLoadOptions& o, MeasureWindow& window) {
  GrpcClient client(o, window);
  if (!client.connect_all()) return;
  client.run();
}

}  // namespace bench
