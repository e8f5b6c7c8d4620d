// SPDX-License-Identifier: MIT
// An RPC service with two methods, drained on SIGTERM: README's "RPC server" example.
#include <ringnet/proto/rpc_server.h>

#include <chrono>

using namespace std::chrono_literals;
using ringnet::proto::RpcCall;
using ringnet::proto::RpcStatus;

int main() {
  ringnet::proto::RpcServer server({.engine = {.loops = 2}});
  auto& svc = server.add_service({.name = "demo", .listen = {"tcp://127.0.0.1:9000"},
                                  .timeout = 500ms, .drain_limit = 2s});
  // Runs on the loop: answers before returning, must not block.
  svc.add_unary("echo", 1, [](RpcCall&, std::string_view in, std::string& out) {
    out.assign(in);
    return RpcStatus::ok();
  }).ignore();
  // Runs on the worker pool: may block; stops early once the caller's deadline passed.
  svc.add_unary("upper", 2, [](RpcCall& call, std::string_view in, std::string& out) {
    if (call.cancelled()) return RpcStatus::make(ringnet::proto::RpcCode::kCancelled, "late");
    for (char c : in) out += static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
    return RpcStatus::ok();
  }, {.exec = ringnet::proto::RpcExec::kPool}).ignore();
  // SIGTERM: stop accepting, refuse new calls (UNAVAILABLE), finish the rest, return.
  return server.run_until_signal(5s) ? 0 : 1;
}
