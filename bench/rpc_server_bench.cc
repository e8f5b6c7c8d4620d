// SPDX-License-Identifier: MIT
// rpc_server_bench: the RpcServer side of bench/rpc_compare.sh, one service with an inline
// echo (method 1), so the comparison with gRPC (and with samples/rpc_echo, the same frames
// without the framework) measures the framework's dispatch, not a handler.
//
//   rpc_server_bench --port N [--loops N] [--backend epoll|io_uring]
#include <ringnet/proto/rpc_server.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  int port = 9000;
  ringnet::proto::RpcServerOptions options;
  options.engine.loops = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) {
      port = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--loops") == 0) {
      options.engine.loops = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--backend") == 0) {
      options.engine.backend = std::strcmp(argv[i + 1], "io_uring") == 0
                                   ? ringnet::Backend::kIoUring
                                   : ringnet::Backend::kEpoll;
    } else {
      std::fprintf(stderr, "usage: rpc_server_bench --port N [--loops N] [--backend B]\n");
      return 2;
    }
  }
  ringnet::proto::RpcServer server(options);
  auto& svc = server.add_service(
      {.name = "bench", .listen = {"tcp://127.0.0.1:" + std::to_string(port)}});
  if (!svc.add_unary("echo", 1, [](ringnet::proto::RpcCall&, std::string_view in, std::string& out) {
        out.assign(in);
        return ringnet::proto::RpcStatus::ok();
      })) {
    return 1;
  }
  ringnet::Status s = server.run_until_signal(std::chrono::seconds(2));
  if (!s) std::fprintf(stderr, "rpc_server_bench: %s\n", s.message().c_str());
  return s ? 0 : 1;
}
