// SPDX-License-Identifier: MIT
// AdminServer: the listener behind Engine::listen_admin. A second, private Engine with
// one epoll loop (its own thread) serves a few fixed GET paths from a minimal HTTP/1.x
// request reader; the engine cannot use protocols/, and this needs none of its generality.
// Scrapes read the served engine's atomics, so they never stop or slow its loops.
#pragma once

#include <memory>
#include <string_view>

#include "ringnet/engine.h"
#include "ringnet/handler.h"

namespace ringnet {

class AdminServer final : public EventHandler {
 public:
  explicit AdminServer(Engine& served);
  ~AdminServer() override;
  // Binds `address` now.
  Status listen(std::string_view address);
  SockAddr bound() const;
  Status start();
  void stop_and_wait();

  Action on_traffic(Conn& c) override;

  static constexpr size_t kMaxRequestHead = 8192;

 private:
  Engine& served_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace ringnet
