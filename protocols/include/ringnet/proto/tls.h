// SPDX-License-Identifier: MIT
/// @file
/// TLS under every codec: OpenSSL 3 as a ringnet Transport (see `<ringnet/transport.h>`).
///
///   ringnet::proto::TlsConfig cfg;
///   cfg.cert_file = "server.pem";  cfg.key_file = "server.key";
///   std::shared_ptr<ringnet::proto::TlsContext> tls;
///   if (ringnet::Status s = ringnet::proto::TlsContext::server(cfg, &tls); !s) { ... }
///   engine.listen("tcp://0.0.0.0:8443", {.transport = tls});
///
/// The handler sees plaintext; on_open comes after the handshake. Dials take a client
/// context in DialOptions::transport (and PeerPool/RpcClient through their DialOptions):
/// the peer's certificate is verified against `ca_file` (or the system store) and its
/// name against the dialed host (or DialOptions::server_name), which is also sent as SNI.
///
/// Threads: a TlsContext is shared by every loop; reload() and stats() may be called from
/// any thread. Per-connection queries (tls_info) are loop-thread only, like Conn.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/metrics.h"
#include "ringnet/status.h"
#include "ringnet/transport.h"

namespace ringnet::proto {

/// The oldest protocol version a context accepts.
enum class TlsVersion { kTls12, kTls13 };

/// Kernel TLS offload after the handshake.
enum class KtlsMode {
  kAuto,  ///< use it where the kernel (the `tls` module) and the cipher allow, else user space
  kOff,   ///< always user-space records
};

/// How a TlsContext is made. Paths are PEM files.
struct TlsConfig {
  /// Certificate chain (leaf first). Required for a server; a client's for mTLS.
  std::string cert_file{};
  /// The private key of cert_file.
  std::string key_file{};
  /// Server: when set, clients must present a certificate signed by one of these CAs
  /// (mTLS; see require_client_cert). Client: the CAs that sign servers (empty: the
  /// system's default store).
  std::string ca_file{};
  /// Server with ca_file: refuse a client without a certificate (false: ask, verify if
  /// given).
  bool require_client_cert = true;
  /// Oldest version accepted.
  TlsVersion min_version = TlsVersion::kTls12;
  /// TLS 1.2 cipher list (OpenSSL syntax; empty: OpenSSL's default).
  std::string ciphers{};
  /// TLS 1.3 cipher suites (OpenSSL syntax; empty: OpenSSL's default).
  std::string ciphersuites{};
  /// ALPN protocols ("http/1.1", "redis", ...). Server: the ones it speaks, in order of
  /// preference (the first the client also offers wins, unless alpn_select decides);
  /// a client offering only others is refused (no_application_protocol). Client: offered.
  std::vector<std::string> alpn{};
  /// Server, optional: picks the protocol from the client's offer (returns its index, or
  /// -1 to refuse the handshake). Runs on the loop thread, during the handshake.
  std::function<int(std::span<const std::string_view> offered)> alpn_select{};
  /// Server: issue session tickets (stateless resumption), keys rotated every
  /// ticket_rotation (a ticket stays valid for two periods).
  bool session_tickets = true;
  /// How often the ticket encryption key changes.
  std::chrono::seconds ticket_rotation{3600};
  /// Client: verify the server's certificate and host name (default). Off only for tests.
  bool verify_peer = true;
  /// From accept (or connect) to the end of the handshake.
  std::chrono::milliseconds handshake_timeout{10000};
  /// Kernel TLS offload.
  KtlsMode ktls = KtlsMode::kAuto;
  /// Label of this context's metrics (`ringnet_tls_*{tls="name"}`).
  std::string name = "default";
};

/// Counters of one context (all loops). Gauges are noted as such.
struct TlsStats {
  uint64_t handshakes_ok = 0;        ///< handshakes completed
  uint64_t resumed = 0;              ///< ... of which resumed a session (ticket or cache)
  uint64_t failed_protocol = 0;      ///< bad records, not TLS (plain text), version, cipher
  uint64_t failed_certificate = 0;   ///< a peer certificate refused (untrusted, expired,
                                     ///< wrong name, missing when required)
  uint64_t failed_alpn = 0;          ///< no protocol in common
  uint64_t failed_timeout = 0;       ///< handshake_timeout passed
  uint64_t failed_closed = 0;        ///< the peer closed or reset mid-handshake
  uint64_t renegotiations_refused = 0;  ///< a peer asked to renegotiate (refused)
  uint64_t ktls_tx = 0;              ///< connections whose sending the kernel took over
  uint64_t ktls_rx = 0;              ///< ... and receiving
  uint64_t ktls_unavailable = 0;     ///< established in user space: no `tls` kernel module
  uint64_t ktls_unsupported = 0;     ///< ... the module is there, the cipher/version not
  uint64_t reloads = 0;              ///< successful reload() calls
  Log2Histogram handshake_us;        ///< handshake latency, accept/connect to established
};

/// What a connection negotiated. Loop thread, after on_open.
struct TlsInfo {
  std::string_view alpn;      ///< the protocol agreed (empty: none)
  std::string_view version;   ///< "TLSv1.3", "TLSv1.2"
  std::string_view cipher;    ///< e.g. "TLS_AES_256_GCM_SHA384"
  std::string_view sni;       ///< server: the name the client asked for (empty: none)
  bool resumed = false;       ///< the session was resumed
  bool ktls_tx = false;       ///< the kernel seals the records this side sends
  bool ktls_rx = false;       ///< ... and opens the ones it receives
  /// Subject of the peer's certificate ("CN=client,O=..."), empty when none was given.
  std::string peer_subject;
};

/// An OpenSSL context (SSL_CTX) as a TransportFactory. Immutable once made, except for
/// reload(). Shared: give the same one to several listeners or dials.
class RINGNET_PROTO_EXPORT TlsContext : public TransportFactory,
                                        public std::enable_shared_from_this<TlsContext> {
 public:
  /// A server context: cert_file and key_file required. Errors name the file and the
  /// OpenSSL reason.
  static Status server(TlsConfig config, std::shared_ptr<TlsContext>* out);
  /// A client context.
  static Status client(TlsConfig config, std::shared_ptr<TlsContext>* out);
  ~TlsContext() override;

  /// Any thread: reads the certificate, key and CA files again; connections made from
  /// now on use them, open ones keep theirs. On an error the old ones stay in use.
  /// Resumption skips certificate checks, so nothing trusted under the old files comes
  /// back that way: a client context forgets its kept sessions, and a server that
  /// verifies clients (ca_file) its ticket keys (those clients do a full handshake
  /// once). A server without ca_file keeps its ticket keys: its tickets stay valid.
  Status reload();
  /// Any thread.
  TlsStats stats() const;
  /// Any thread: `ringnet_tls_*` families labelled tls="<name>" (Engine::add_metrics).
  void write_metrics(MetricsWriter& out) const;
  /// The context's config, as given.
  const TlsConfig& config() const;

  /// A session for one connection (TransportFactory).
  std::unique_ptr<Transport> create(const TransportPeer& peer) override;

  /// Internal state; opaque.
  struct RINGNET_HIDDEN Impl;
  /// Made by server()/client().
  explicit TlsContext(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

/// What `conn` negotiated; nullptr when it has no TLS (or has not finished its handshake).
/// Loop thread.
RINGNET_PROTO_EXPORT const TlsInfo* tls_info(const Conn& conn);

/// Whether this kernel can take TLS records over (the `tls` module is loaded or
/// loadable: "tls" in /proc/sys/net/ipv4/tcp_available_ulp, or TCP_ULP "tls" accepted on a
/// socket). Checked once per process.
RINGNET_PROTO_EXPORT bool ktls_available();

}  // namespace ringnet::proto
