// SPDX-License-Identifier: MIT
// One RPC call to rpc_echo (method 1, echo) through the public client API.
#include <ringnet/engine.h>
#include <ringnet/proto/rpc_client.h>

#include <cstdio>
#include <future>

int main() {
  ringnet::proto::RpcClientHandler handler;  // forwards connection events to pool and client
  ringnet::Engine engine(handler, ringnet::Options{.loops = 1});
  ringnet::proto::PeerPool pool(engine);     // one reused connection per address
  ringnet::proto::RpcClient rpc(pool, {.default_timeout = std::chrono::milliseconds(500)});
  handler.attach(pool, rpc);
  if (!engine.start()) return 1;
  std::promise<bool> done;                   // `done` runs on a loop thread
  rpc.call("tcp://127.0.0.1:9000", 1, "hello", {},
           [&](const ringnet::proto::RpcStatus& s, std::string_view body) {
             if (s) std::printf("reply: %.*s\n", static_cast<int>(body.size()), body.data());
             else std::fprintf(stderr, "call failed: %s\n", s.to_string().c_str());
             done.set_value(s.is_ok());
           });
  return done.get_future().get() ? 0 : 1;    // then rpc, pool, engine go, in that order
}
