// SPDX-License-Identifier: MIT
// TLS for the sample servers: the --tls-* flags, the server context they make, and
// SIGHUP reloading the certificate and key (TlsContext::reload) without a restart.
#pragma once

#include <ringnet/proto/tls.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

namespace sample {

struct TlsFlags {
  std::string cert, key, ca, alpn, min = "1.2";
  std::chrono::milliseconds handshake_timeout{10000};
  bool on() const { return !cert.empty(); }
};

// Comma-separated names, empty ones dropped.
inline std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// A server context from the flags; exits 2 with the reason on a bad combination, 1 when
// OpenSSL refuses the files.
inline std::shared_ptr<ringnet::proto::TlsContext> make_server_tls(const char* name, const TlsFlags& f) {
  if (f.cert.empty() != f.key.empty()) {
    std::fprintf(stderr, "%s: --tls-cert and --tls-key go together\n", name);
    std::exit(2);
  }
  if (!f.on()) {
    if (!f.ca.empty()) {
      std::fprintf(stderr, "%s: --tls-ca needs --tls-cert and --tls-key\n", name);
      std::exit(2);
    }
    return nullptr;
  }
  ringnet::proto::TlsConfig cfg;
  cfg.cert_file = f.cert;
  cfg.key_file = f.key;
  cfg.ca_file = f.ca;
  cfg.alpn = split_commas(f.alpn);
  cfg.min_version = f.min == "1.3" ? ringnet::proto::TlsVersion::kTls13 : ringnet::proto::TlsVersion::kTls12;
  cfg.handshake_timeout = f.handshake_timeout;
  std::shared_ptr<ringnet::proto::TlsContext> tls;
  if (ringnet::Status s = ringnet::proto::TlsContext::server(cfg, &tls); !s) {
    std::fprintf(stderr, "%s: %s\n", name, s.message().c_str());
    std::exit(1);
  }
  return tls;
}

// SIGHUP re-reads the certificate, key and CA files. Like ShutdownOnSignals, it blocks the
// signal before any other thread exists and takes it with sigtimedwait on its own thread.
class ReloadOnSighup {
 public:
  explicit ReloadOnSighup(std::shared_ptr<ringnet::proto::TlsContext> tls) : tls_(std::move(tls)) {
    if (tls_ == nullptr) return;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    // The thread must not be the one the kernel hands SIGINT/SIGTERM to (their default
    // action kills the process before ShutdownOnSignals can drain): it starts with them
    // blocked too; the caller keeps its mask, plus SIGHUP.
    sigset_t quiet = set, old;
    sigaddset(&quiet, SIGINT);
    sigaddset(&quiet, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &quiet, &old);
    thread_ = std::thread([this, set] {
      const timespec tick{0, 200'000'000};
      while (!leaving_.load()) {
        if (sigtimedwait(&set, nullptr, &tick) != SIGHUP) continue;
        if (ringnet::Status s = tls_->reload(); s) {
          std::fprintf(stderr, "tls: reloaded\n");
        } else {
          std::fprintf(stderr, "tls: reload failed: %s\n", s.message().c_str());
        }
      }
    });
    sigaddset(&old, SIGHUP);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  ~ReloadOnSighup() {
    leaving_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  ReloadOnSighup(const ReloadOnSighup&) = delete;
  ReloadOnSighup& operator=(const ReloadOnSighup&) = delete;

 private:
  std::shared_ptr<ringnet::proto::TlsContext> tls_;
  std::atomic<bool> leaving_{false};
  std::thread thread_;
};

}  // namespace sample
