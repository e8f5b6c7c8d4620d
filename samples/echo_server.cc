// SPDX-License-Identifier: MIT
// echo_server: sends every byte back. The smallest real ringnet server, and the one the
// benchmarks drive.
//
//   echo_server --port 9000 --loops 2 [--backend epoll|io_uring] [...]   (--help lists all)
//
// Prints one "listening on <address>" line per listener once it accepts connections.
// SIGINT/SIGTERM stop it cleanly.
#include <ringnet/engine.h>

#include <string_view>

#include "sample_main.h"

namespace {

class EchoHandler final : public ringnet::EventHandler {
 public:
  ringnet::Action on_traffic(ringnet::Conn& c) override {
    std::string_view bytes = c.next();
    if (ringnet::Status s = c.write(bytes); !s) return ringnet::Action::kClose;
    return ringnet::Action::kNone;
  }
};

}  // namespace

int main(int argc, char** argv) {
  sample::Flags flags = sample::parse_flags(
      argc, argv,
      "Sends every byte back: the smallest ringnet server, and the one the benchmarks drive.");
  EchoHandler handler;
  return sample::run("echo_server", handler, flags);
}
