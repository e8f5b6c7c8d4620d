// SPDX-License-Identifier: MIT
// What TlsContext (tls_context.cc) and its sessions (tls_session.cc) share: the context's
// state behind TlsContext::Impl, its counters, and the OpenSSL callbacks' glue.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <map>
#include <mutex>
#include <string>

#include "ringnet/proto/tls.h"

namespace ringnet::proto {

// Why a handshake did not finish (TlsStats' failed_* and the metrics' result label).
enum class TlsFailure { kProtocol, kCertificate, kAlpn, kTimeout, kClosed };

// What the OpenSSL callbacks note on a session (SSL_get_app_data points here).
struct TlsSessionFlags {
  bool alpn_refused = false;  // select_alpn found no protocol in common
  bool established = false;   // the first handshake finished (a later one is a renegotiation)
  std::string host;           // a client's peer name: its resumable session is kept by it
};
inline TlsSessionFlags* flags_of(const SSL* ssl) {
  return static_cast<TlsSessionFlags*>(SSL_get_app_data(ssl));
}

// A session-ticket key: the name a ticket carries, the AES-256-CBC key that seals it and
// the HMAC-SHA256 key that signs it (OpenSSL's ticket format).
struct TicketKey {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
  std::chrono::steady_clock::time_point made;
};

// Counters every loop bumps (relaxed atomics: a handshake is rare next to a message).
struct TlsCounters {
  std::atomic<uint64_t> ok{0}, resumed{0}, renegotiations{0}, reloads{0};
  std::atomic<uint64_t> failed[5]{};  // indexed by TlsFailure
  std::atomic<uint64_t> ktls_tx{0}, ktls_rx{0}, ktls_unavailable{0}, ktls_unsupported{0};
  std::array<std::atomic<uint64_t>, Log2Histogram::kBuckets> handshake_buckets{};
  std::atomic<uint64_t> handshake_count{0}, handshake_sum{0};

  void failure(TlsFailure f) { failed[static_cast<int>(f)].fetch_add(1, std::memory_order_relaxed); }
  void handshake_took(std::chrono::steady_clock::duration d);
};

using SslCtxPtr = std::shared_ptr<SSL_CTX>;

struct TlsContext::Impl {
  ~Impl();
  TlsConfig config;
  bool server = false;
  std::string alpn_wire;  // config.alpn in ALPN wire form (length-prefixed names)
  TlsCounters counters;

  // The SSL_CTX new sessions are made from; reload() swaps it. An SSL holds a reference
  // to its SSL_CTX, so open sessions keep the old one alive.
  SslCtxPtr current() const {
    std::lock_guard lock(mu);
    return ctx;
  }
  void set_current(SslCtxPtr next) {
    std::lock_guard lock(mu);
    ctx = std::move(next);
  }

  // Session tickets: the key that seals new tickets, and the one before it, which still
  // opens tickets (they are renewed). Rotated every config.ticket_rotation.
  bool ticket_key(const unsigned char* name, TicketKey* out, bool* current_key);
  TicketKey sealing_key();

  // Client side: the last resumable session per host, for the next connection there.
  // take_client_session returns a reference the caller frees (or nullptr).
  SSL_SESSION* take_client_session(const std::string& host);
  void keep_client_session(const std::string& host, SSL_SESSION* session);  // takes it
  void forget_client_sessions();
  // The next ticket is sealed under a new key, and none sealed before is opened.
  void forget_ticket_keys();
  bool ktls_module = false;  // ktls_available() when the context was made

 private:
  mutable std::mutex mu;
  SslCtxPtr ctx;
  std::mutex sessions_mu;
  std::map<std::string, SSL_SESSION*> sessions;  // at most kMaxClientSessions
  std::mutex ticket_mu;
  TicketKey ticket_now{}, ticket_before{};
  bool have_before = false;
  bool have_now = false;
  void rotate_locked();
};

// Builds an SSL_CTX from impl.config (files read now). On error: the OpenSSL reason.
Status make_ssl_ctx(TlsContext::Impl& impl, SslCtxPtr* out);

// The OpenSSL error queue as text ("file: reason; reason"), emptied.
std::string ssl_errors(std::string_view what);

// Which TlsFailure an OpenSSL handshake error is, from the error queue's last entry and
// the session's verify result.
TlsFailure classify_failure(SSL* ssl, unsigned long err);

}  // namespace ringnet::proto
