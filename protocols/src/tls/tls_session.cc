// SPDX-License-Identifier: MIT
// TlsSession: one connection's OpenSSL session as a ringnet Transport. OpenSSL reads and
// writes through a BIO of our own that takes ciphertext straight from the arrival the loop
// hands over and appends records straight to the connection's outbound queue: no memory
// BIO, no copy in between. A partial record stays inside OpenSSL (its read buffer), which
// SSL_MODE_RELEASE_BUFFERS gives back once the record completes.
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "ringnet/log.h"
#include "tls_internal.h"

namespace ringnet::proto {

namespace {

// Plaintext room asked of the loop's buffer per SSL_read: one full record.
constexpr size_t kReadChunk = 16 * 1024;
// writev parts up to this total are sealed as one record, not one record per part.
constexpr size_t kCoalesceMax = 16 * 1024;

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

class TlsSession final : public Transport, public TlsSessionFlags {
 public:
  TlsSession(std::shared_ptr<TlsContext> owner, TlsContext::Impl& impl)
      : owner_(std::move(owner)), impl_(impl) {}
  ~TlsSession() override {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }

  Status init(const TransportPeer& peer);
  TransportResult start(OutboundQueue& wire) override;
  TransportResult on_input(std::string_view in, Buffer& app, OutboundQueue& wire) override;
  TransportResult seal(std::span<const std::string_view> app, OutboundQueue& wire) override;
  void shutdown(OutboundQueue& wire) override;
  void on_close(CloseInfo info) override;
  std::chrono::milliseconds handshake_timeout() const override {
    return impl_.config.handshake_timeout;
  }
  bool has_pending_input() const override { return SSL_has_pending(ssl_) == 1; }
  const TlsInfo& info() const { return info_; }

  // The BIO's two directions.
  int bio_read(char* buf, int len);
  int bio_write(const char* buf, int len);

 private:
  TransportResult handshake();
  TransportResult established_now();
  TransportResult failed(int ssl_error);
  bool write_all(std::string_view bytes);

  std::shared_ptr<TlsContext> owner_;  // keeps impl_ alive as long as the session
  TlsContext::Impl& impl_;
  SSL* ssl_ = nullptr;
  std::string_view in_;            // ciphertext of the arrival being read
  OutboundQueue* out_ = nullptr;   // where records go during a call
  std::chrono::steady_clock::time_point started_;  // start(): the handshake's latency
  TlsInfo info_;
  std::string cache_key_;          // a client's "host:port": its session is kept by it
  bool started_run_ = false;       // start() ran (a dial that never connected: never)
  bool counted_ = false;           // this session's handshake outcome is counted
  bool goodbye_sent_ = false;
};

// ---------------------------------------------------------------- the BIO

namespace {

TlsSession* session_of(BIO* b) { return static_cast<TlsSession*>(BIO_get_data(b)); }

int bio_read_cb(BIO* b, char* buf, int len) {
  BIO_clear_retry_flags(b);
  const int n = session_of(b)->bio_read(buf, len);
  if (n > 0) return n;
  BIO_set_retry_read(b);  // nothing more in this arrival: OpenSSL keeps what it has
  return -1;
}

int bio_write_cb(BIO* b, const char* buf, int len) {
  BIO_clear_retry_flags(b);
  int n = session_of(b)->bio_write(buf, len);
  if (n <= 0) BIO_set_retry_write(b);
  return n;
}

long bio_ctrl_cb(BIO* /*b*/, int cmd, long /*num*/, void* /*ptr*/) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create_cb(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD* bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringnet conn");
    BIO_meth_set_read(m, bio_read_cb);
    BIO_meth_set_write(m, bio_write_cb);
    BIO_meth_set_ctrl(m, bio_ctrl_cb);
    BIO_meth_set_create(m, bio_create_cb);
    return m;
  }();
  return method;
}

}  // namespace

int TlsSession::bio_read(char* buf, int len) {
  const size_t n = std::min<size_t>(in_.size(), static_cast<size_t>(std::max(len, 0)));
  if (n == 0) return 0;  // (in_ may be empty with a null data())
  std::memcpy(buf, in_.data(), n);
  in_.remove_prefix(n);
  return static_cast<int>(n);
}

int TlsSession::bio_write(const char* buf, int len) {
  if (out_ == nullptr) return -1;  // outside a call: never, as OpenSSL writes only inside one
  out_->append(std::string_view(buf, static_cast<size_t>(len)));
  return len;
}

// ---------------------------------------------------------------- session

Status TlsSession::init(const TransportPeer& peer) {
  SslCtxPtr ctx = impl_.current();
  ssl_ = SSL_new(ctx.get());
  if (ssl_ == nullptr) return Status::invalid(ssl_errors("tls: SSL_new"));
  SSL_set_app_data(ssl_, static_cast<TlsSessionFlags*>(this));
  BIO* bio = BIO_new(bio_method());
  if (bio == nullptr) return Status::invalid(ssl_errors("tls: BIO_new"));
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: one reference, owned by ssl_
  if (!peer.client) {
    SSL_set_accept_state(ssl_);
    return Status::ok();
  }
  SSL_set_connect_state(ssl_);
  host = std::string(peer.host);
  cache_key_ = host + ":" + std::to_string(peer.port);
  const bool ip = is_ip_literal(host);
  if (!host.empty() && !ip) SSL_set_tlsext_host_name(ssl_, host.c_str());  // SNI: names only
  if (impl_.config.verify_peer && !host.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                      : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    if (ok != 1) return Status::invalid(ssl_errors("tls: peer name '" + host + "'"));
  }
  if (!impl_.alpn_wire.empty() &&
      SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(impl_.alpn_wire.data()),
                          static_cast<unsigned int>(impl_.alpn_wire.size())) != 0) {
    return Status::invalid(ssl_errors("tls: ALPN"));
  }
  if (SSL_SESSION* kept = impl_.take_client_session(cache_key_)) {  // resume the last one
    SSL_set_session(ssl_, kept);
    SSL_SESSION_free(kept);
  }
  return Status::ok();
}

TransportResult TlsSession::start(OutboundQueue& wire) {
  started_run_ = true;
  started_ = std::chrono::steady_clock::now();
  out_ = &wire;
  TransportResult r = handshake();  // a client's ClientHello; a server waits for one
  out_ = nullptr;
  return r;
}

TransportResult TlsSession::handshake() {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return established_now();
  const int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return {};
  return failed(e);
}

TransportResult TlsSession::established_now() {
  established = true;
  counted_ = true;
  TlsCounters& c = impl_.counters;
  c.ok.fetch_add(1, std::memory_order_relaxed);
  c.handshake_took(std::chrono::steady_clock::now() - started_);
  info_.resumed = SSL_session_reused(ssl_) == 1;
  if (info_.resumed) c.resumed.fetch_add(1, std::memory_order_relaxed);
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) info_.alpn = std::string_view(reinterpret_cast<const char*>(alpn), alpn_len);
  info_.version = SSL_get_version(ssl_);
  info_.cipher = SSL_get_cipher_name(ssl_);
  if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) info_.sni = sni;
  if (X509* peer = SSL_get0_peer_certificate(ssl_)) {
    if (BIO* mem = BIO_new(BIO_s_mem())) {
      X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
      char* data = nullptr;
      long n = BIO_get_mem_data(mem, &data);
      if (n > 0) info_.peer_subject.assign(data, static_cast<size_t>(n));
      BIO_free(mem);
    }
  }
  // Kernel TLS: detected (once, when the context was made), not handed the keys yet; the
  // records stay in user space and each connection is counted by why.
  if (impl_.config.ktls == KtlsMode::kAuto) {
    (impl_.ktls_module ? c.ktls_unsupported : c.ktls_unavailable)
        .fetch_add(1, std::memory_order_relaxed);
  }
  TransportResult r;
  r.established = true;
  return r;
}

TransportResult TlsSession::failed(int ssl_error) {
  const unsigned long err = ERR_peek_last_error();
  const int reason = err != 0 ? ERR_GET_REASON(err) : (ssl_error == SSL_ERROR_SYSCALL ? EPROTO : 0);
  if (!counted_) {
    counted_ = true;
    const TlsFailure f = classify_failure(ssl_, err);
    impl_.counters.failure(f);
    RINGNET_LOG_LIMITED(LogLevel::kInfo, 1, "tls {}: handshake failed: {}", impl_.config.name,
                        err != 0 ? ERR_reason_error_string(err) : "protocol error");
  }
  ERR_clear_error();
  TransportResult r;
  r.failed = true;
  r.error = reason != 0 ? reason : EPROTO;
  return r;
}

TransportResult TlsSession::on_input(std::string_view in, Buffer& app, OutboundQueue& wire) {
  in_ = in;
  out_ = &wire;
  TransportResult r;
  if (!established) {
    r = handshake();
    if (r.failed || !established) {
      in_ = {};
      out_ = nullptr;
      return r;
    }
  }
  for (;;) {
    ERR_clear_error();
    app.ensure_writable(kReadChunk);
    const int n = SSL_read(ssl_, app.write_ptr(),
                           static_cast<int>(std::min<size_t>(app.writable_bytes(), INT_MAX)));
    if (n > 0) {
      app.commit(static_cast<size_t>(n));
      continue;
    }
    const int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      r.peer_closed = true;
      break;
    }
    const TransportResult f = failed(e);  // after `established`, if this step made it
    r.failed = true;
    r.error = f.error;
    break;
  }
  in_ = {};
  out_ = nullptr;
  return r;
}

bool TlsSession::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, bytes.data(),
                            static_cast<int>(std::min<size_t>(bytes.size(), INT_MAX / 2)));
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

TransportResult TlsSession::seal(std::span<const std::string_view> parts, OutboundQueue& wire) {
  out_ = &wire;
  bool ok = true;
  size_t total = 0;
  for (std::string_view p : parts) total += p.size();
  if (parts.size() > 1 && total <= kCoalesceMax) {
    char joined[kCoalesceMax];
    size_t at = 0;
    for (std::string_view p : parts) {
      std::memcpy(joined + at, p.data(), p.size());
      at += p.size();
    }
    ok = write_all(std::string_view(joined, at));
  } else {
    for (std::string_view p : parts) {
      if (!(ok = write_all(p))) break;
    }
  }
  out_ = nullptr;
  if (ok) return {};
  const unsigned long err = ERR_peek_last_error();
  ERR_clear_error();
  TransportResult r;
  r.failed = true;
  r.error = err != 0 ? ERR_GET_REASON(err) : EPROTO;
  return r;
}

void TlsSession::shutdown(OutboundQueue& wire) {
  if (!established || goodbye_sent_) return;
  goodbye_sent_ = true;
  out_ = &wire;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues close_notify; the peer's is not waited for
  ERR_clear_error();
  out_ = nullptr;
}

void TlsSession::on_close(CloseInfo info) {
  if (!counted_ && started_run_) {  // the handshake never finished nor failed on its own
    counted_ = true;
    const bool timed_out = info.reason == CloseReason::kHandshakeTimeout ||
                           info.reason == CloseReason::kIdleTimeout ||
                           info.reason == CloseReason::kReadTimeout;
    impl_.counters.failure(timed_out ? TlsFailure::kTimeout : TlsFailure::kClosed);
  }
  // A client keeps its session (ticket) for the next connection to this host and port,
  // after a clean end only. Marked shut down, so SSL_free does not flag the session
  // unresumable (OpenSSL does that to sessions of connections that ended uncleanly).
  const bool clean = info.reason != CloseReason::kReset && info.reason != CloseReason::kError &&
                     info.reason != CloseReason::kHandshakeFailed;
  if (!host.empty() && established && clean) {
    if (SSL_SESSION* s = SSL_get1_session(ssl_)) {
      if (SSL_SESSION_is_resumable(s) == 1) {
        impl_.keep_client_session(cache_key_, s);
        SSL_set_shutdown(ssl_, SSL_get_shutdown(ssl_) | SSL_SENT_SHUTDOWN);
      } else {
        SSL_SESSION_free(s);
      }
    }
  }
}

// ---------------------------------------------------------------- factory side

std::unique_ptr<Transport> TlsContext::create(const TransportPeer& peer) {
  if (impl_->server == peer.client) {
    RINGNET_LOG_LIMITED(LogLevel::kError, 1, "tls {}: a {} context used for a {} connection",
                        impl_->config.name, impl_->server ? "server" : "client",
                        peer.client ? "dialed" : "accepted");
    return nullptr;
  }
  auto session = std::make_unique<TlsSession>(shared_from_this(), *impl_);
  if (Status s = session->init(peer); !s) {
    RINGNET_LOG_LIMITED(LogLevel::kWarn, 1, "{}", s.message());
    return nullptr;
  }
  return session;
}

const TlsInfo* tls_info(const Conn& conn) {
  const auto* s = dynamic_cast<const TlsSession*>(conn.transport());
  return s != nullptr && s->established ? &s->info() : nullptr;
}

}  // namespace ringnet::proto
