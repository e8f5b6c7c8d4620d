// echo_server: sends every byte back. The smallest real ringnet server, and the one the
// benchmarks drive.
//
//   echo_server --port 9000 --loops 2 --balancer rr|lc|hash [--reuseport] [--unix PATH]
//               [--host 127.0.0.1] [--pin] [--backend auto|epoll|io_uring]
//               [--no-uring-bundle] [--no-uring-register-ring] [--no-uring-fixed-files]
//               [--uring-buffer-inc]
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
  sample::Flags flags = sample::parse_flags(argc, argv);
  EchoHandler handler;
  return sample::run("echo_server", handler, flags);
}
