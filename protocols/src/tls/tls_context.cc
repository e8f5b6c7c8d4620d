// SPDX-License-Identifier: MIT
// TlsContext: an OpenSSL SSL_CTX built from a TlsConfig, swapped whole on reload();
// session-ticket keys kept across reloads and rotated; counters and their metrics; the
// kernel TLS probe.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "ringnet/log.h"
#include "tls_internal.h"

namespace ringnet::proto {

namespace {

const char* const kFailureNames[] = {"protocol", "certificate", "alpn", "timeout", "closed"};

TlsContext::Impl* impl_of(SSL* ssl) {
  return static_cast<TlsContext::Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

// ALPN, server side: the first of the server's protocols the client offers (or what
// alpn_select picks); none in common refuses the handshake (no_application_protocol).
int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  TlsContext::Impl& impl = *impl_of(ssl);
  std::vector<std::string_view> offered;
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (n == 0 || i + 1 + n > inlen) return SSL_TLSEXT_ERR_ALERT_FATAL;  // malformed
    offered.emplace_back(reinterpret_cast<const char*>(in + i + 1), n);
    i += 1 + n;
  }
  int pick = -1;
  if (impl.config.alpn_select) {
    pick = impl.config.alpn_select(offered);
    if (pick >= static_cast<int>(offered.size())) pick = -1;
  } else {
    for (const std::string& mine : impl.config.alpn) {
      for (size_t i = 0; i < offered.size() && pick < 0; ++i) {
        if (offered[i] == mine) pick = static_cast<int>(i);
      }
      if (pick >= 0) break;
    }
  }
  if (pick < 0) {
    if (impl.config.alpn.empty() && !impl.config.alpn_select) return SSL_TLSEXT_ERR_NOACK;
    flags_of(ssl)->alpn_refused = true;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = reinterpret_cast<const unsigned char*>(offered[static_cast<size_t>(pick)].data());
  *outlen = static_cast<unsigned char>(offered[static_cast<size_t>(pick)].size());
  return SSL_TLSEXT_ERR_OK;
}

// Stateless resumption with our own keys, so tickets outlive reload() and keys rotate.
int ticket_key_cb(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                  EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  TlsContext::Impl& impl = *impl_of(ssl);
  TicketKey key;
  int rc = 1;
  if (enc != 0) {
    key = impl.sealing_key();
    std::memcpy(key_name, key.name, sizeof(key.name));
    if (RAND_bytes(iv, 16) != 1) return -1;
  } else {
    bool current = false;
    if (!impl.ticket_key(key_name, &key, &current)) return 0;  // unknown: full handshake
    rc = current ? 1 : 2;                                      // 2: issue a fresh ticket
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof(key.hmac)),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  const int ok = enc != 0 ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv)
                          : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv);
  return ok == 1 ? rc : -1;
}

// A renegotiation attempt (TLS 1.2 ClientHello on an established session): refused by
// SSL_OP_NO_RENEGOTIATION; counted here.
void info_cb(const SSL* ssl, int where, int /*ret*/) {
  if ((where & SSL_CB_HANDSHAKE_START) != 0 && flags_of(ssl)->established) {
    impl_of(const_cast<SSL*>(ssl))->counters.renegotiations.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

std::string ssl_errors(std::string_view what) {
  std::string text(what);
  bool first = true;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    text += first ? ": " : "; ";
    text += buf;
    first = false;
  }
  return text;
}

TlsFailure classify_failure(SSL* ssl, unsigned long err) {
  if (flags_of(ssl)->alpn_refused) return TlsFailure::kAlpn;
  if (SSL_get_verify_result(ssl) != X509_V_OK) return TlsFailure::kCertificate;
  switch (ERR_GET_REASON(err)) {
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
      return TlsFailure::kAlpn;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      return TlsFailure::kCertificate;
    default:
      return TlsFailure::kProtocol;
  }
}

void TlsCounters::handshake_took(std::chrono::steady_clock::duration d) {
  const auto us = static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(d).count()));
  handshake_buckets[static_cast<size_t>(Log2Histogram::bucket_of(us))].fetch_add(
      1, std::memory_order_relaxed);
  handshake_count.fetch_add(1, std::memory_order_relaxed);
  handshake_sum.fetch_add(us, std::memory_order_relaxed);
}

// ---------------------------------------------------------------- ticket keys

void TlsContext::Impl::rotate_locked() {
  const auto now = std::chrono::steady_clock::now();
  if (have_now && now - ticket_now.made < config.ticket_rotation) return;
  if (have_now) {
    ticket_before = ticket_now;
    have_before = true;
  }
  TicketKey k{};
  if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
      RAND_bytes(k.hmac, sizeof(k.hmac)) != 1) {
    return;  // keep the old key; OpenSSL's RNG does not fail once seeded
  }
  k.made = now;
  ticket_now = k;
  have_now = true;
}

TicketKey TlsContext::Impl::sealing_key() {
  std::lock_guard lock(ticket_mu);
  rotate_locked();
  return ticket_now;
}

bool TlsContext::Impl::ticket_key(const unsigned char* name, TicketKey* out, bool* current_key) {
  std::lock_guard lock(ticket_mu);
  rotate_locked();
  if (have_now && std::memcmp(name, ticket_now.name, sizeof(ticket_now.name)) == 0) {
    *out = ticket_now;
    *current_key = true;
    return true;
  }
  // The key before stays good for one more period (a ticket lives two at most).
  if (have_before && std::memcmp(name, ticket_before.name, sizeof(ticket_before.name)) == 0 &&
      std::chrono::steady_clock::now() - ticket_before.made < 2 * config.ticket_rotation) {
    *out = ticket_before;
    *current_key = false;
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- client sessions

namespace {
constexpr size_t kMaxClientSessions = 1024;
}  // namespace

TlsContext::Impl::~Impl() {
  for (auto& [host, s] : sessions) SSL_SESSION_free(s);
}

// A copy: the session a connection resumes belongs to that connection alone, so what
// becomes of it (OpenSSL flags one whose connection ended badly) never spoils the kept one.
SSL_SESSION* TlsContext::Impl::take_client_session(const std::string& key) {
  std::lock_guard lock(sessions_mu);
  auto it = sessions.find(key);
  return it == sessions.end() ? nullptr : SSL_SESSION_dup(it->second);
}

void TlsContext::Impl::forget_client_sessions() {
  std::lock_guard lock(sessions_mu);
  for (auto& [key, s] : sessions) SSL_SESSION_free(s);
  sessions.clear();
}

void TlsContext::Impl::forget_ticket_keys() {
  std::lock_guard lock(ticket_mu);
  have_now = have_before = false;
}

void TlsContext::Impl::keep_client_session(const std::string& host, SSL_SESSION* session) {
  std::lock_guard lock(sessions_mu);
  auto [it, fresh] = sessions.try_emplace(host, session);
  if (!fresh) {
    SSL_SESSION_free(it->second);
    it->second = session;
  } else if (sessions.size() > kMaxClientSessions) {  // many hosts: start over
    for (auto& [h, s] : sessions) {
      if (s != session) SSL_SESSION_free(s);
    }
    sessions.clear();
    sessions.emplace(host, session);
  }
}

// ---------------------------------------------------------------- SSL_CTX

Status make_ssl_ctx(TlsContext::Impl& impl, SslCtxPtr* out) {
  const TlsConfig& cfg = impl.config;
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(impl.server ? TLS_server_method() : TLS_client_method());
  if (raw == nullptr) return Status::invalid(ssl_errors("tls: SSL_CTX_new"));
  SslCtxPtr ctx(raw, SSL_CTX_free);
  SSL_CTX_set_app_data(raw, &impl);
  SSL_CTX_set_min_proto_version(
      raw, cfg.min_version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  // Idle sessions give their read and write buffers back (tens of KiB per connection).
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_info_callback(raw, info_cb);
  if (!cfg.ciphers.empty() && SSL_CTX_set_cipher_list(raw, cfg.ciphers.c_str()) != 1) {
    return Status::invalid(ssl_errors("tls: ciphers '" + cfg.ciphers + "'"));
  }
  if (!cfg.ciphersuites.empty() && SSL_CTX_set_ciphersuites(raw, cfg.ciphersuites.c_str()) != 1) {
    return Status::invalid(ssl_errors("tls: ciphersuites '" + cfg.ciphersuites + "'"));
  }
  if (!cfg.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(raw, cfg.cert_file.c_str()) != 1) {
      return Status::invalid(ssl_errors("tls: certificate " + cfg.cert_file));
    }
    const std::string& key = cfg.key_file.empty() ? cfg.cert_file : cfg.key_file;
    if (SSL_CTX_use_PrivateKey_file(raw, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Status::invalid(ssl_errors("tls: private key " + key));
    }
    if (SSL_CTX_check_private_key(raw) != 1) {
      return Status::invalid(ssl_errors("tls: " + key + " does not match " + cfg.cert_file));
    }
  } else if (impl.server) {
    return Status::invalid("tls: a server needs cert_file and key_file");
  }
  if (impl.server) {
    static const unsigned char kSessionContext[] = "ringnet";
    SSL_CTX_set_session_id_context(raw, kSessionContext, sizeof(kSessionContext) - 1);
    SSL_CTX_set_alpn_select_cb(raw, select_alpn, nullptr);
    if (cfg.session_tickets) {
      SSL_CTX_set_tlsext_ticket_key_evp_cb(raw, ticket_key_cb);
      // Tickets carry the session: no server-side cache to fill (and lock) per handshake.
      SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    } else {
      SSL_CTX_set_options(raw, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(raw, 0);
    }
    if (!cfg.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(raw, cfg.ca_file.c_str(), nullptr) != 1) {
        return Status::invalid(ssl_errors("tls: CA file " + cfg.ca_file));
      }
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.ca_file.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(raw, names);
      SSL_CTX_set_verify(raw,
                         SSL_VERIFY_PEER |
                             (cfg.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         nullptr);
    }
  } else {
    if (!cfg.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(raw, cfg.ca_file.c_str(), nullptr) != 1) {
        return Status::invalid(ssl_errors("tls: CA file " + cfg.ca_file));
      }
    } else if (SSL_CTX_set_default_verify_paths(raw) != 1) {
      return Status::invalid(ssl_errors("tls: the system's CA store"));
    }
    SSL_CTX_set_verify(raw, cfg.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    // Clients keep sessions themselves (tls_session.cc); no internal cache lookups.
    SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  }
  *out = std::move(ctx);
  return Status::ok();
}

// ---------------------------------------------------------------- TlsContext

namespace {
Status make_context(TlsConfig config, bool server, std::shared_ptr<TlsContext>* out) {
  auto impl = std::make_unique<TlsContext::Impl>();
  impl->config = std::move(config);
  impl->server = server;
  impl->ktls_module = ktls_available();  // probed here, never on a loop
  for (const std::string& p : impl->config.alpn) {
    if (p.empty() || p.size() > 255) return Status::invalid("tls: bad ALPN name '" + p + "'");
    impl->alpn_wire += static_cast<char>(p.size());
    impl->alpn_wire += p;
  }
  if (impl->config.ticket_rotation.count() <= 0) impl->config.ticket_rotation = std::chrono::hours(1);
  SslCtxPtr ctx;
  if (Status s = make_ssl_ctx(*impl, &ctx); !s) return s;
  impl->set_current(std::move(ctx));
  *out = std::make_shared<TlsContext>(std::move(impl));
  return Status::ok();
}
}  // namespace

Status TlsContext::server(TlsConfig config, std::shared_ptr<TlsContext>* out) {
  return make_context(std::move(config), true, out);
}

Status TlsContext::client(TlsConfig config, std::shared_ptr<TlsContext>* out) {
  return make_context(std::move(config), false, out);
}

TlsContext::TlsContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsContext::~TlsContext() = default;

const TlsConfig& TlsContext::config() const { return impl_->config; }

Status TlsContext::reload() {
  SslCtxPtr next;
  if (Status s = make_ssl_ctx(*impl_, &next); !s) {
    log(LogLevel::kWarn, "tls {}: reload failed, keeping the old files: {}", impl_->config.name,
        s.message());
    return s;
  }
  impl_->set_current(std::move(next));
  // Resuming skips the certificate checks: what was trusted under the old files must not
  // come back that way. Clients forget their sessions; an mTLS server its ticket keys.
  impl_->forget_client_sessions();
  if (impl_->server && !impl_->config.ca_file.empty()) impl_->forget_ticket_keys();
  impl_->counters.reloads.fetch_add(1, std::memory_order_relaxed);
  return Status::ok();
}

TlsStats TlsContext::stats() const {
  const TlsCounters& c = impl_->counters;
  auto get = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  TlsStats s;
  s.handshakes_ok = get(c.ok);
  s.resumed = get(c.resumed);
  s.failed_protocol = get(c.failed[static_cast<int>(TlsFailure::kProtocol)]);
  s.failed_certificate = get(c.failed[static_cast<int>(TlsFailure::kCertificate)]);
  s.failed_alpn = get(c.failed[static_cast<int>(TlsFailure::kAlpn)]);
  s.failed_timeout = get(c.failed[static_cast<int>(TlsFailure::kTimeout)]);
  s.failed_closed = get(c.failed[static_cast<int>(TlsFailure::kClosed)]);
  s.renegotiations_refused = get(c.renegotiations);
  s.ktls_tx = get(c.ktls_tx);
  s.ktls_rx = get(c.ktls_rx);
  s.ktls_unavailable = get(c.ktls_unavailable);
  s.ktls_unsupported = get(c.ktls_unsupported);
  s.reloads = get(c.reloads);
  for (int b = 0; b < Log2Histogram::kBuckets; ++b) {
    s.handshake_us.buckets[static_cast<size_t>(b)] = get(c.handshake_buckets[static_cast<size_t>(b)]);
  }
  s.handshake_us.count = get(c.handshake_count);
  s.handshake_us.sum = get(c.handshake_sum);
  return s;
}

void TlsContext::write_metrics(MetricsWriter& w) const {
  const TlsStats s = stats();
  const std::string tls = "tls=\"" + MetricsWriter::escape_label(impl_->config.name) + "\"";
  w.family("ringnet_tls_handshakes_total", MetricType::kCounter,
           "TLS handshakes by result: ok, or why one did not finish.");
  const uint64_t results[] = {s.failed_protocol, s.failed_certificate, s.failed_alpn,
                              s.failed_timeout, s.failed_closed};
  w.value(tls + ",result=\"ok\"", s.handshakes_ok);
  for (int i = 0; i < 5; ++i) {
    w.value(tls + ",result=\"" + kFailureNames[i] + "\"", results[i]);
  }
  w.family("ringnet_tls_resumed_total", MetricType::kCounter,
           "TLS handshakes that resumed a session (ticket or cache).");
  w.value(tls, s.resumed);
  w.family("ringnet_tls_renegotiations_refused_total", MetricType::kCounter,
           "Renegotiations a peer asked for, refused.");
  w.value(tls, s.renegotiations_refused);
  w.family("ringnet_tls_ktls_total", MetricType::kCounter,
           "Established TLS connections by record path: tx/rx taken over by the kernel, or "
           "user space because the kernel has no tls module (unavailable) or the "
           "cipher/version is not offloaded (unsupported).");
  w.value(tls + ",path=\"tx\"", s.ktls_tx);
  w.value(tls + ",path=\"rx\"", s.ktls_rx);
  w.value(tls + ",path=\"unavailable\"", s.ktls_unavailable);
  w.value(tls + ",path=\"unsupported\"", s.ktls_unsupported);
  w.family("ringnet_tls_reloads_total", MetricType::kCounter,
           "Certificate/key reloads that succeeded.");
  w.value(tls, s.reloads);
  w.family("ringnet_tls_handshake_seconds", MetricType::kHistogram,
           "TLS handshake latency, accept or connect to established.");
  w.histogram(tls, s.handshake_us, 1e-6, 6, 24, 2);
}

// ---------------------------------------------------------------- kTLS probe

// The kernel loads the tls module on the first TCP_ULP "tls" if it can; an unconnected
// socket then says ENOTCONN, while a kernel without the module says ENOENT.
bool ktls_available() {
  static const bool available = [] {
    std::ifstream ulp("/proc/sys/net/ipv4/tcp_available_ulp");
    std::string word;
    while (ulp >> word) {
      if (word == "tls") return true;
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    int rc = ::setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"));
    int err = errno;
    ::close(fd);
    return rc == 0 || err == ENOTCONN;
  }();
  return available;
}

}  // namespace ringnet::proto
