// SPDX-License-Identifier: MIT
// grpc_echo_server: the gRPC C++ peer of bench/rpc_compare.sh, unary echo (echo.proto:
// Echo.Call returns the request's body).
//
//   grpc_echo_server --port N [--threads 1] [--api async|callback|sync] [--slots 256]
//                    [--host 127.0.0.1]
//
// Prints "listening on HOST:PORT (API, N threads)" once it serves; SIGINT/SIGTERM shut it
// down (calls in flight are cancelled) and it exits 0.
//
// Threading, for a server pinned to ONE core (taskset -c 0 by the script):
//   async     (default) the completion-queue API: --threads completion queues, one thread
//             each polling it with Next() and answering inline (Finish with the request
//             message itself, no copy), --slots calls requested in advance per queue so a
//             new call never waits for one. gRPC's own C++ performance notes name "one
//             completion queue per thread, numcpu threads" the best trade-off, and its qps
//             benchmark's async unary scenarios use this shape; on one core that is one
//             queue, one thread, so no hand-off between threads per call. The default: it
//             is what gRPC documents as fastest, and in short (noisy) runs here it spent
//             the least server CPU per call of the three; the others stay selectable to
//             check that on a quiet machine.
//   callback  the callback API (Echo::CallbackService, DefaultReactor finished inline):
//             the handler runs on gRPC's own polling/executor threads, whose number gRPC
//             picks (--threads has no effect); taskset keeps them on the one core.
//   sync      the synchronous API with --threads completion queues (NUM_CQS) and gRPC's
//             default 1 to 2 polling threads per queue: the poller that takes a call runs
//             the handler while a second one polls. A thread quota of one per queue
//             (ResourceQuota::SetMaxThreads) is not an option: the sync server then fails
//             every call with RESOURCE_EXHAUSTED ("Server Threadpool Exhausted"), as it
//             cannot reserve a thread for the next poller.
// Everything else is gRPC's defaults (no compression, channelz, 4 MiB message limit): the
// configuration a service would ship, not a tuned-away one. The process's utime+stime,
// all threads (gRPC's timer and executor threads too), is what the bench charges it.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "echo.grpc.pb.h"

namespace {

using ringnet::bench::Echo;
using ringnet::bench::Msg;

enum class Api { kAsync, kCallback, kSync };

struct Flags {
  std::string host = "127.0.0.1";
  int port = -1;
  int threads = 1;
  int slots = 256;
  Api api = Api::kAsync;
};

constexpr char kUsage[] =
    "usage: grpc_echo_server --port N [--threads 1] [--api async|callback|sync] "
    "[--slots 256] [--host 127.0.0.1]\n";

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "grpc_echo_server: %s\n%s", why, kUsage);
  std::exit(2);
}

int parse_int(const char* flag, const char* s, int lo, int hi) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) {
    usage((std::string("bad value for ") + flag).c_str());
  }
  return static_cast<int>(v);
}

Flags parse_flags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a value").c_str());
    const char* v = argv[++i];
    if (a == "--port") f.port = parse_int("--port", v, 0, 65535);
    else if (a == "--threads") f.threads = parse_int("--threads", v, 1, 256);
    else if (a == "--slots") f.slots = parse_int("--slots", v, 1, 100000);
    else if (a == "--host") f.host = v;
    else if (a == "--api") {
      std::string_view api = v;
      if (api == "async") f.api = Api::kAsync;
      else if (api == "callback") f.api = Api::kCallback;
      else if (api == "sync") f.api = Api::kSync;
      else usage("--api must be async, callback or sync");
    } else {
      usage((std::string("unknown flag ") + argv[i - 1]).c_str());
    }
  }
  if (f.port < 0) usage("--port is required");
  return f;
}

const char* api_name(Api api) {
  switch (api) {
    case Api::kAsync: return "async";
    case Api::kCallback: return "callback";
    case Api::kSync: return "sync";
  }
  return "?";
}

// ---- async: one call slot, requested again as soon as its answer is sent ----------------

// One outstanding RequestCall on a completion queue; its own address is the tag of both of
// its events. Loop-only: touched by the thread that polls its queue.
class AsyncCall {
 public:
  AsyncCall(Echo::AsyncService& service, grpc::ServerCompletionQueue& cq)
      : service_(service), cq_(cq) {
    request();
  }

  // The event for this slot's tag. `ok` false: the call was cancelled, or the server is
  // shutting down. Returns true when the slot parks: it is done and shutting_down is set,
  // so it is not requested again and will get no further event.
  bool on_event(bool ok, bool shutting_down) {
    if (state_ == State::kWaiting && ok) {
      state_ = State::kAnswering;
      responder_->Finish(request_, grpc::Status::OK, this);  // the request is the answer
      return false;
    }
    if (shutting_down) return true;
    request();
    return false;
  }

 private:
  enum class State { kWaiting, kAnswering };

  void request() {
    // A ServerContext serves one call: a fresh one (and writer) per call.
    responder_.reset();
    ctx_.emplace();
    responder_.emplace(&*ctx_);
    request_.Clear();
    state_ = State::kWaiting;
    service_.RequestCall(&*ctx_, &request_, &*responder_, &cq_, &cq_, this);
  }

  Echo::AsyncService& service_;
  grpc::ServerCompletionQueue& cq_;
  std::optional<grpc::ServerContext> ctx_;
  std::optional<grpc::ServerAsyncResponseWriter<Msg>> responder_;
  Msg request_;
  State state_ = State::kWaiting;
};

// Shutdown order: main sets `shutting_down` and shuts the server down, which fails every
// pending RequestCall; each slot parks on its next event. A queue may be shut down only
// when no slot can request on it again, so main waits for every slot to park first.
struct ShutdownState {
  std::atomic<bool> shutting_down{false};
  std::atomic<int> parked{0};
};

void serve_queue(grpc::ServerCompletionQueue* cq, ShutdownState* state) {
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    const bool stopping = state->shutting_down.load(std::memory_order_acquire);
    if (static_cast<AsyncCall*>(tag)->on_event(ok, stopping)) state->parked.fetch_add(1);
  }
}

// ---- callback and sync services -------------------------------------------------------

class CallbackEcho final : public Echo::CallbackService {
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* ctx, const Msg* request,
                                 Msg* reply) override {
    reply->set_body(request->body());
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

class SyncEcho final : public Echo::Service {
  grpc::Status Call(grpc::ServerContext*, const Msg* request, Msg* reply) override {
    reply->set_body(request->body());
    return grpc::Status::OK;
  }
};

sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  // Before gRPC starts a thread, so that all of them inherit the mask and only sigwait in
  // main takes the signal.
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = parse_flags(argc, argv);
  const sigset_t stop_signals = block_stop_signals();

  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string address = flags.host + ":" + std::to_string(flags.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);

  Echo::AsyncService async_service;
  CallbackEcho callback_service;
  SyncEcho sync_service;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  switch (flags.api) {
    case Api::kAsync:
      builder.RegisterService(&async_service);
      for (int i = 0; i < flags.threads; ++i) queues.push_back(builder.AddCompletionQueue());
      break;
    case Api::kCallback:
      builder.RegisterService(&callback_service);
      break;
    case Api::kSync:
      builder.RegisterService(&sync_service);
      // Per queue: gRPC's defaults of 1 to 2 pollers (see the file comment).
      builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, flags.threads);
      builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
      builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 2);
      break;
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::fprintf(stderr, "grpc_echo_server: cannot listen on %s\n", address.c_str());
    return 1;
  }

  ShutdownState state;
  std::vector<std::unique_ptr<AsyncCall>> slots;
  std::vector<std::thread> pollers;
  for (auto& cq : queues) {
    for (int i = 0; i < flags.slots; ++i) {
      slots.push_back(std::make_unique<AsyncCall>(async_service, *cq));
    }
    pollers.emplace_back(serve_queue, cq.get(), &state);
  }
  std::printf("listening on %s:%d (%s, %d threads)\n", flags.host.c_str(), bound_port,
              api_name(flags.api), flags.threads);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  state.shutting_down.store(true, std::memory_order_release);
  server->Shutdown(std::chrono::system_clock::now());  // cancel calls in flight at once
  const int total = static_cast<int>(slots.size());
  for (int i = 0; i < 300 && state.parked.load() < total; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& cq : queues) cq->Shutdown();
  for (auto& t : pollers) t.join();
  return 0;
}
