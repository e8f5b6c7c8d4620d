// SPDX-License-Identifier: MIT
// http_server: a small HTTP/1.1 server (TechEmpower-style routes) on HttpServerHandler.
//
//   GET  /plaintext  -> 200 text/plain        "Hello, World!"
//   GET  /json       -> 200 application/json  {"message":"Hello, World!"}
//   POST /echo       -> 200 application/octet-stream, the request body (Content-Length or
//                       chunked; Expect: 100-continue is answered)
//   GET  /bytes/N    -> 200 application/octet-stream, N bytes (N <= 1 MiB; bulk benchmarks)
//   HEAD of a GET route -> its headers only; a known path with another method -> 405 with
//   Allow; anything else -> 404. Keep-alive and pipelining as the client asks.
//   On SIGTERM/SIGINT it drains (--drain-timeout), prints one line of totals and exits 0:
//     http_server: requests=N protocol_errors=N
//
//   http_server --port 8080 [--max-body BYTES] [the flags every server takes: --help]
//
//   curl -s localhost:8080/plaintext
//   curl -s --data-binary @file localhost:8080/echo
//   wrk -t2 -c64 -d10s http://127.0.0.1:8080/plaintext
#include <ringnet/proto/http_server.h>

#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <string_view>

#include "sample_main.h"

namespace {

using ringnet::Action;
using ringnet::Conn;
using ringnet::proto::HttpRequest;

constexpr std::string_view kPlaintext = "Hello, World!";
constexpr std::string_view kJson = R"({"message":"Hello, World!"})";

class HelloHandler final : public ringnet::proto::HttpServerHandler {
 public:
  explicit HelloHandler(ringnet::proto::Http1Options options) : HttpServerHandler(options) {}

  Action on_request(Conn& c, const HttpRequest& req) override {
    ringnet::Status s;
    bool get = req.method == "GET" || req.method == "HEAD";
    if (req.path == "/plaintext") {
      s = get ? respond(c, req, 200, "text/plain", kPlaintext)
              : respond(c, req, 405, "", "", {{"Allow", "GET, HEAD"}});
    } else if (req.path == "/json") {
      s = get ? respond(c, req, 200, "application/json", kJson)
              : respond(c, req, 405, "", "", {{"Allow", "GET, HEAD"}});
    } else if (req.path.starts_with("/bytes/")) {
      s = get ? bytes(c, req) : respond(c, req, 405, "", "", {{"Allow", "GET, HEAD"}});
    } else if (req.path == "/echo") {
      s = req.method == "POST" ? respond(c, req, 200, "application/octet-stream", req.body)
                               : respond(c, req, 405, "", "", {{"Allow", "POST"}});
    } else {
      s = respond(c, req, 404, "text/plain", "Not Found");
    }
    return s.is_ok() ? Action::kNone : Action::kClose;
  }

  // GET /bytes/N: N bytes of 'x', N from 0 to 1 MiB; 404 for anything else.
  ringnet::Status bytes(Conn& c, const HttpRequest& req) {
    static const std::string kBulk(kMaxBytes, 'x');
    std::string_view n_text = req.path.substr(7);
    size_t n = 0;
    auto [end, ec] = std::from_chars(n_text.data(), n_text.data() + n_text.size(), n);
    if (ec != std::errc() || end != n_text.data() + n_text.size() || n > kMaxBytes) {
      return respond(c, req, 404, "text/plain", "Not Found");
    }
    return respond(c, req, 200, "application/octet-stream", std::string_view(kBulk).substr(0, n));
  }
  static constexpr size_t kMaxBytes = 1 << 20;

  // After the drain: one line of totals, so a test can match what the server took with
  // what its clients got.
  void on_shutdown(ringnet::Engine&) override {
    std::printf("http_server: requests=%" PRIu64 " protocol_errors=%" PRIu64 "\n",
                frames_decoded(), protocol_errors());
    std::fflush(stdout);
  }
};

}  // namespace

int main(int argc, char** argv) {
  ringnet::proto::Http1Options http;
  sample::Flags flags = sample::parse_flags(
      argc, argv,
      "A small HTTP/1.1 server: GET /plaintext, GET /json, GET /bytes/N (N bytes, up to 1 "
      "MiB), POST /echo (the request body "
      "back), HEAD; 404 and 405 otherwise. Keep-alive and pipelining as the client asks.",
      [&](sample::FlagTable& t) {
        t.add_number("--max-body", "BYTES", "largest request body; a larger one gets 413",
                     &http.max_body, 0, SIZE_MAX, "byte count");
      },
      sample::server_notes() + " On exit it prints \"http_server: requests=N "
                               "protocol_errors=N\".",
      "http/1.1");
  HelloHandler handler(http);
  return sample::run("http_server", handler, flags,
                     [&handler](ringnet::MetricsWriter& w) { handler.write_metrics(w, "http"); });
}
