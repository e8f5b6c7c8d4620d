// SPDX-License-Identifier: MIT
#include "runtime/admin_server.h"

#include <fmt/format.h>

#include "ringnet/conn.h"
#include "ringnet/log.h"

namespace ringnet {
namespace {

Options admin_options() {
  Options o;
  o.loops = 1;
  o.backend = Backend::kEpoll;
  o.reuse_port = false;  // SO_REUSEPORT would let a second process bind the same port
  o.metrics = false;
  o.max_connections = 64;  // scrapers and probes, not clients
  o.idle_timeout = std::chrono::seconds(30);
  o.read_timeout = std::chrono::seconds(10);  // a request head must not dribble in forever
  o.max_inbound_buffer = 64 * 1024;
  o.outbound_high_watermark = 0;  // answers are written whole, once
  return o;
}

// One response; the connection closes once it is sent. Scrapes come every few seconds,
// so keep-alive would save nothing worth its state.
void respond(Conn& c, int status, std::string_view reason, std::string_view content_type,
             std::string_view body, bool head_only, std::string_view extra_headers = {}) {
  std::string head = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
      status, reason, content_type, body.size(), extra_headers);
  std::string_view parts[2] = {head, head_only ? std::string_view() : body};
  if (Status s = c.writev(parts); !s) {
    log(LogLevel::kDebug, "admin: write to {}: {}", c.remote_addr().to_string(), s.message());
  }
}

}  // namespace

AdminServer::AdminServer(Engine& served)
    : served_(served), engine_(std::make_unique<Engine>(*this, admin_options())) {}

AdminServer::~AdminServer() = default;

Status AdminServer::listen(std::string_view address) { return engine_->listen(address); }

SockAddr AdminServer::bound() const {
  auto addrs = engine_->listen_addrs();
  return addrs.empty() ? SockAddr() : addrs.front();
}

Status AdminServer::start() { return engine_->start(); }

void AdminServer::stop_and_wait() {
  engine_->stop();
  engine_->wait();
}

// Reads one request head ("METHOD target HTTP/1.x ... CRLF CRLF"), answers, closes.
Action AdminServer::on_traffic(Conn& c) {
  std::string_view in = c.peek();
  size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (in.size() <= kMaxRequestHead) return Action::kNone;  // wait for the rest
    respond(c, 431, "Request Header Fields Too Large", "text/plain", "request head too large\n",
            false);
    return Action::kClose;
  }
  std::string_view line = in.substr(0, in.find("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).substr(0, 5) != "HTTP/") {
    respond(c, 400, "Bad Request", "text/plain", "bad request line\n", false);
    return Action::kClose;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  bool head_only = method == "HEAD";
  c.discard();  // one request per connection: whatever follows is not read
  if (method != "GET" && !head_only) {
    respond(c, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", false,
            "Allow: GET, HEAD\r\n");
  } else if (path == "/metrics") {
    MetricsWriter w;
    served_.write_metrics(w);
    respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", w.text(), head_only);
  } else if (path == "/healthz") {
    if (served_.stopping()) {
      respond(c, 503, "Service Unavailable", "text/plain", "draining\n", head_only);
    } else {
      respond(c, 200, "OK", "text/plain", "ok\n", head_only);
    }
  } else {
    respond(c, 404, "Not Found", "text/plain", "try /metrics or /healthz\n", head_only);
  }
  return Action::kClose;
}

}  // namespace ringnet
