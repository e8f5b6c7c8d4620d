// SPDX-License-Identifier: MIT
// TLS under the engine, black-box over loopback on both backends: a server context on a
// listener and a client context on Engine::dial / PeerPool / RpcClient, against each
// other and against an OpenSSL client written here (memory BIOs over a plain socket, so
// the test decides how the ciphertext is cut: down to one byte per send). Handshakes in
// 1-byte pieces, bulk echo, ALPN and session resumption, host-name verification, mTLS
// accepted and refused (no certificate, expired, untrusted), plain text and a stalled
// handshake on the TLS port (each closes only its own connection, counted, unseen by the
// handler), close_notify on a graceful close, reload of the certificate, RPC over TLS.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ringnet/proto/rpc_client.h"
#include "ringnet/proto/rpc_server.h"
#include "ringnet/proto/tls.h"
#include "test_support.h"
#include "tls_test_pki.h"

namespace ringnet::test {
namespace {

using proto::TlsConfig;
using proto::TlsContext;

// Server side echoes (optionally closing after the first reply); dialed side writes its
// payload on open, collects the echo and closes when it is complete.
class TlsHandler : public EventHandler {
 public:
  struct Dialed {
    bool opened = false, closed = false;
    CloseInfo close{CloseReason::kError, 0};
    std::string echoed, alpn, version;
    bool resumed = false;
  };

  Action on_open(Conn& c) override {
    std::lock_guard lock(mu_);
    if (!c.dialed()) {
      ++server_opens_;
      if (const proto::TlsInfo* i = proto::tls_info(c)) {
        server_subject_ = i->peer_subject;
        server_sni_ = std::string(i->sni);
      }
      return Action::kNone;
    }
    Dialed& d = dialed_[key(c)];
    d.opened = true;
    if (const proto::TlsInfo* i = proto::tls_info(c)) {
      d.alpn = std::string(i->alpn);
      d.version = std::string(i->version);
      d.resumed = i->resumed;
    }
    return c.write(payload(key(c))).is_ok() ? Action::kNone : Action::kClose;
  }
  Action on_traffic(Conn& c) override {
    if (!c.dialed()) {
      std::string_view in = c.next();
      if (!c.write(in).is_ok()) return Action::kClose;
      return close_after_reply_ ? Action::kClose : Action::kNone;
    }
    std::lock_guard lock(mu_);
    Dialed& d = dialed_[key(c)];
    d.echoed += c.next();
    return d.echoed.size() >= payload(key(c)).size() ? Action::kClose : Action::kNone;
  }
  void on_close(Conn& c, CloseInfo info) override {
    std::lock_guard lock(mu_);
    if (!c.dialed()) {
      ++server_closes_;
      return;
    }
    Dialed& d = dialed_[key(c)];
    d.closed = true;
    d.close = info;
    ++dial_closes_;
  }

  static std::string payload(size_t n) { return make_payload(64 * 1024 + n, n); }
  static void* ctx(size_t n) { return reinterpret_cast<void*>(n); }
  Dialed dialed(size_t n) {
    std::lock_guard lock(mu_);
    return dialed_[n];
  }
  int dial_closes() {
    std::lock_guard lock(mu_);
    return dial_closes_;
  }
  int server_opens() {
    std::lock_guard lock(mu_);
    return server_opens_;
  }
  int server_closes() {
    std::lock_guard lock(mu_);
    return server_closes_;
  }
  std::string server_subject() {
    std::lock_guard lock(mu_);
    return server_subject_;
  }
  bool close_after_reply_ = false;

 private:
  static size_t key(const Conn& c) { return reinterpret_cast<size_t>(c.context()); }
  std::mutex mu_;
  std::map<size_t, Dialed> dialed_;
  int dial_closes_ = 0, server_opens_ = 0, server_closes_ = 0;
  std::string server_subject_, server_sni_;
};

// Bytes the socket has within `timeout`, appended to *out: > 0 read, 0 EOF, -1 timeout or
// error (reset).
ssize_t recv_some(int fd, std::string* out, Millis timeout) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) return -1;
  char buf[65536];
  ssize_t n;
  do {
    n = ::recv(fd, buf, sizeof(buf), 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) out->append(buf, static_cast<size_t>(n));
  return n < 0 ? -1 : n;
}

// An OpenSSL client over memory BIOs and a plain socket: the test cuts the ciphertext.
class MemTlsClient {
 public:
  explicit MemTlsClient(const TestPki& pki, const TestPki::Pair* cert = nullptr,
                        const char* host = "localhost", int max_version = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (max_version != 0) SSL_CTX_set_max_proto_version(ctx_, max_version);
    SSL_CTX_load_verify_locations(ctx_, pki.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (cert != nullptr) {
      SSL_CTX_use_certificate_file(ctx_, cert->cert.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx_, cert->key.c_str(), SSL_FILETYPE_PEM);
    }
    ssl_ = SSL_new(ctx_);
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_, rbio_, wbio_);
    SSL_set_connect_state(ssl_);
    if (host != nullptr) {
      SSL_set_tlsext_host_name(ssl_, host);
      SSL_set1_host(ssl_, host);
    }
  }
  ~MemTlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  MemTlsClient(const MemTlsClient&) = delete;
  MemTlsClient& operator=(const MemTlsClient&) = delete;

  testing::AssertionResult connect(uint16_t port) {
    if (auto r = sock_.connect_tcp(port); !r) return r;
    sock_.set_nodelay();
    return testing::AssertionSuccess();
  }

  // Sends the ClientHello and waits for the server's first flight, leaving the
  // handshake unfinished.
  testing::AssertionResult hello() {
    (void)SSL_do_handshake(ssl_);
    if (auto r = flush(1 << 20); !r) return r;
    if (!pump_in(Clock::now() + kIoTimeout)) return testing::AssertionFailure() << "no answer";
    return testing::AssertionSuccess();
  }
  // Runs the handshake, sending the ciphertext `piece` bytes per send; `first`, if any,
  // is sealed as soon as the client's side is done and leaves in the same send as its
  // Finished (as many clients send their first request).
  testing::AssertionResult handshake(size_t piece = 1 << 20, Millis timeout = kIoTimeout,
                                     std::string_view first = {}) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      ERR_clear_error();
      const int rc = SSL_do_handshake(ssl_);
      if (rc == 1 && !first.empty()) SSL_write(ssl_, first.data(), static_cast<int>(first.size()));
      if (auto r = flush(piece); !r) return r;
      if (rc == 1) return testing::AssertionSuccess();
      if (SSL_get_error(ssl_, rc) != SSL_ERROR_WANT_READ) {
        return testing::AssertionFailure() << "handshake: " << ERR_reason_error_string(ERR_peek_last_error());
      }
      if (Clock::now() > deadline) return testing::AssertionFailure() << "handshake timed out";
      if (!pump_in(deadline)) return testing::AssertionFailure() << "connection ended in the handshake";
    }
  }
  testing::AssertionResult send(std::string_view data, size_t piece = 1 << 20) {
    if (!data.empty() && SSL_write(ssl_, data.data(), static_cast<int>(data.size())) <= 0) {
      return testing::AssertionFailure() << "SSL_write";
    }
    return flush(piece);
  }
  // Exactly n plaintext bytes appended to *out.
  testing::AssertionResult recv_exact(size_t n, std::string* out, Millis timeout = kIoTimeout) {
    const auto deadline = Clock::now() + timeout;
    const size_t want = out->size() + n;
    char buf[16384];
    while (out->size() < want) {
      const int got = SSL_read(ssl_, buf, static_cast<int>(std::min(sizeof(buf), want - out->size())));
      if (got > 0) {
        out->append(buf, static_cast<size_t>(got));
        continue;
      }
      if (SSL_get_error(ssl_, got) != SSL_ERROR_WANT_READ) {
        return testing::AssertionFailure() << "SSL_read failed after " << out->size() << " bytes";
      }
      (void)flush(1 << 20);  // a key update or ticket answer, if any
      if (!pump_in(deadline)) return testing::AssertionFailure() << "ended after " << out->size();
    }
    return testing::AssertionSuccess();
  }
  // Sends `data` (sealed 16 KiB at a time) while reading what comes back, until as many
  // plaintext bytes came back (appended to *out). One thread: an SSL is not shared.
  testing::AssertionResult exchange(std::string_view data, std::string* out,
                                    Millis timeout = kIoTimeout) {
    const auto deadline = Clock::now() + timeout;
    const size_t want = out->size() + data.size();
    std::string pending;  // ciphertext not yet taken by the socket
    char buf[16384];
    while (out->size() < want) {
      if (pending.empty() && !data.empty()) {
        const size_t n = std::min<size_t>(data.size(), 16384);
        if (SSL_write(ssl_, data.data(), static_cast<int>(n)) <= 0) {
          return testing::AssertionFailure() << "SSL_write";
        }
        data.remove_prefix(n);
      }
      int k;
      while ((k = BIO_read(wbio_, buf, sizeof(buf))) > 0) pending.append(buf, static_cast<size_t>(k));
      pollfd p{sock_.fd(), static_cast<short>(POLLIN | (pending.empty() ? 0 : POLLOUT)), 0};
      if (::poll(&p, 1, static_cast<int>(remaining(deadline).count())) <= 0 && Clock::now() > deadline) {
        return testing::AssertionFailure() << "timed out after " << out->size() << " bytes back";
      }
      if ((p.revents & POLLOUT) != 0) {
        const ssize_t n = ::send(sock_.fd(), pending.data(), pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) pending.erase(0, static_cast<size_t>(n));
      }
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        std::string raw;
        if (recv_some(sock_.fd(), &raw, Millis(1)) <= 0) {
          return testing::AssertionFailure() << "ended after " << out->size() << " bytes back";
        }
        BIO_write(rbio_, raw.data(), static_cast<int>(raw.size()));
        int got;
        while ((got = SSL_read(ssl_, buf, sizeof(buf))) > 0) out->append(buf, static_cast<size_t>(got));
      }
    }
    return testing::AssertionSuccess();
  }
  // How the session ends: 1 = the peer's close_notify, 0 = a bare EOF, -1 = an error or
  // timeout. Plaintext before it is appended to *out.
  int wait_end(std::string* out, Millis timeout = kIoTimeout) {
    const auto deadline = Clock::now() + timeout;
    char buf[16384];
    while (true) {
      const int got = SSL_read(ssl_, buf, sizeof(buf));
      if (got > 0) {
        out->append(buf, static_cast<size_t>(got));
        continue;
      }
      const int e = SSL_get_error(ssl_, got);
      if (e == SSL_ERROR_ZERO_RETURN) return 1;
      if (e != SSL_ERROR_WANT_READ) return -1;
      std::string raw;
      const ssize_t n = recv_some(sock_.fd(), &raw, remaining(deadline));
      if (n == 0) return 0;
      if (n < 0) return -1;
      BIO_write(rbio_, raw.data(), static_cast<int>(raw.size()));
    }
  }
  std::string peer_cn() {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (cert == nullptr) return {};
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    return cn;
  }
  Client& socket() { return sock_; }
  // TLS 1.2: asks for a renegotiation (a new ClientHello on the open session).
  testing::AssertionResult renegotiate() {
    if (SSL_renegotiate(ssl_) != 1) return testing::AssertionFailure() << "SSL_renegotiate";
    (void)SSL_do_handshake(ssl_);
    return flush(1 << 20);
  }
  // Writes `chunk` until the socket has taken `limit` bytes or stays full for `stall`;
  // returns the ciphertext bytes the kernel took.
  size_t flood(std::string_view chunk, size_t limit, Millis stall) {
    size_t sent = 0;
    std::string pending;
    while (sent < limit) {
      if (pending.empty()) {
        SSL_write(ssl_, chunk.data(), static_cast<int>(chunk.size()));
        char buf[16384];
        int n;
        while ((n = BIO_read(wbio_, buf, sizeof(buf))) > 0) pending.append(buf, static_cast<size_t>(n));
      }
      pollfd p{sock_.fd(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(stall.count())) <= 0) break;  // full: the peer reads nothing
      const ssize_t n = ::send(sock_.fd(), pending.data(), pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
      if (n > 0) {
        pending.erase(0, static_cast<size_t>(n));
        sent += static_cast<size_t>(n);
      }
    }
    return sent;
  }

 private:
  static Millis remaining(Clock::time_point deadline) {
    return std::max(Millis(1), std::chrono::duration_cast<Millis>(deadline - Clock::now()));
  }
  testing::AssertionResult flush(size_t piece) {
    char buf[16384];
    int n;
    while ((n = BIO_read(wbio_, buf, sizeof(buf))) > 0) {
      std::string_view out(buf, static_cast<size_t>(n));
      while (!out.empty()) {
        const size_t k = std::min(piece, out.size());
        if (auto r = sock_.send_all(out.substr(0, k)); !r) return r;
        out.remove_prefix(k);
      }
    }
    return testing::AssertionSuccess();
  }
  bool pump_in(Clock::time_point deadline) {
    std::string raw;
    if (recv_some(sock_.fd(), &raw, remaining(deadline)) <= 0) return false;
    BIO_write(rbio_, raw.data(), static_cast<int>(raw.size()));
    return true;
  }

  SSL_CTX* ctx_;
  SSL* ssl_;
  BIO* rbio_;
  BIO* wbio_;
  Client sock_;
};

// An RPC client on an engine of its own, its pool's dials under `tls`.
struct RpcClientSide {
  proto::RpcClientHandler handler;
  Engine engine;
  proto::PeerPool pool;
  proto::RpcClient rpc;
  RpcClientSide(Backend backend, std::shared_ptr<TlsContext> tls)
      : engine(handler, test_options(backend, 1)),
        pool(engine, {.transport = std::move(tls)}),
        rpc(pool, {.default_timeout = 5000ms}) {
    handler.attach(pool, rpc);
  }
  ~RpcClientSide() {
    engine.stop();
    engine.wait();
  }
};

class TlsTest : public testing::TestWithParam<Backend> {
 protected:
  void TearDown() override {
    if (engine_) {
      engine_->stop();
      engine_->wait();
    }
  }
  std::shared_ptr<TlsContext> server_ctx(TlsConfig cfg = {}) {
    if (cfg.cert_file.empty()) {
      cfg.cert_file = pki_.server.cert;
      cfg.key_file = pki_.server.key;
    }
    std::shared_ptr<TlsContext> ctx;
    Status s = TlsContext::server(cfg, &ctx);
    EXPECT_TRUE(s.is_ok()) << s.message();
    return ctx;
  }
  std::shared_ptr<TlsContext> client_ctx(TlsConfig cfg = {}) {
    if (cfg.ca_file.empty()) cfg.ca_file = pki_.ca_file;
    std::shared_ptr<TlsContext> ctx;
    Status s = TlsContext::client(cfg, &ctx);
    EXPECT_TRUE(s.is_ok()) << s.message();
    return ctx;
  }
  // Starts the engine with one TLS listener on 127.0.0.1.
  void start(std::shared_ptr<TlsContext> tls, int loops = 1) {
    server_tls_ = tls;
    engine_.emplace(handler_, test_options(GetParam(), loops));
    ASSERT_TRUE(engine_->listen("tcp://127.0.0.1:0", {.transport = tls}).is_ok());
    ASSERT_TRUE(engine_->start().is_ok());
    port_ = engine_->listen_addrs().at(0).port();
  }
  void dial(size_t n, std::shared_ptr<TlsContext> client, std::string server_name = {}) {
    ASSERT_TRUE(engine_
                    ->dial("tcp://localhost:" + std::to_string(port_),
                           {.context = TlsHandler::ctx(n), .transport = client,
                            .server_name = std::move(server_name)})
                    .is_ok());
  }
  uint64_t closed_by(CloseReason r) { return engine_->stats().closed_by_reason[static_cast<int>(r)]; }

  TestPki pki_;
  TlsHandler handler_;
  std::shared_ptr<TlsContext> server_tls_;
  std::optional<Engine> engine_;
  uint16_t port_ = 0;
};

TEST_P(TlsTest, HandshakeAndEchoWithCiphertextInOneBytePieces) {
  start(server_ctx());
  MemTlsClient c(pki_);
  ASSERT_TRUE(c.connect(port_));
  ASSERT_TRUE(c.handshake(1));
  EXPECT_EQ(c.peer_cn(), "localhost");
  const std::string small = make_payload(3000, 1);
  ASSERT_TRUE(c.send(small, 1));
  std::string got;
  ASSERT_TRUE(c.recv_exact(small.size(), &got));
  EXPECT_TRUE(same_bytes(small, got));
  // Then bulk: 1 MiB in 16 KiB sends, several records per arrival.
  const std::string bulk = make_payload(1 << 20, 2);
  got.clear();
  EXPECT_TRUE(c.exchange(bulk, &got, 20000ms));
  EXPECT_TRUE(same_bytes(bulk, got));
  EXPECT_EQ(handler_.server_opens(), 1);
  const proto::TlsStats st = server_tls_->stats();
  EXPECT_EQ(st.handshakes_ok, 1u);
  EXPECT_EQ(st.handshake_us.count, 1u);
  EXPECT_EQ(st.ktls_unavailable + st.ktls_unsupported, 1u);  // kAuto: each one counted by path
}

TEST_P(TlsTest, DialedConnectionsEchoNegotiateAlpnAndResume) {
  start(server_ctx({.alpn = {"x-other", "x-test"}}), 2);
  auto client = client_ctx({.alpn = {"x-test"}});
  constexpr size_t kFirst = 6;
  for (size_t i = 1; i <= kFirst; ++i) dial(i, client);
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == int(kFirst); }, 15000ms));
  for (size_t i = 1; i <= kFirst; ++i) {
    TlsHandler::Dialed d = handler_.dialed(i);
    EXPECT_TRUE(d.opened) << i;
    EXPECT_EQ(d.close.reason, CloseReason::kLocalClose) << i;
    EXPECT_TRUE(same_bytes(TlsHandler::payload(i), d.echoed)) << i;
    EXPECT_EQ(d.alpn, "x-test");
    EXPECT_EQ(d.version, "TLSv1.3");
  }
  // The client kept the session (ticket) per host: the next dial resumes it.
  dial(100, client);
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == int(kFirst) + 1; }, 10000ms));
  EXPECT_TRUE(handler_.dialed(100).resumed);
  EXPECT_TRUE(same_bytes(TlsHandler::payload(100), handler_.dialed(100).echoed));
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().resumed >= 1; }));
  EXPECT_EQ(client->stats().handshakes_ok, kFirst + 1);
  EXPECT_TRUE(eventually([&] { return engine_->stats().dialed == kFirst + 1; }));
}

// The server's ALPN callback picks from the client's offer (how a server chooses the
// codec by protocol); a client offering nothing the server speaks is refused.
TEST_P(TlsTest, AlpnCallbackPicksAndNoCommonProtocolIsRefused) {
  TlsConfig cfg;
  cfg.alpn = {"x-first", "x-second"};
  cfg.alpn_select = [](std::span<const std::string_view> offered) {
    for (size_t i = 0; i < offered.size(); ++i) {
      if (offered[i] == "x-second") return static_cast<int>(i);
    }
    return -1;
  };
  start(server_ctx(cfg));
  dial(1, client_ctx({.alpn = {"x-first", "x-second"}}));
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 1; }, 10000ms));
  EXPECT_EQ(handler_.dialed(1).alpn, "x-second");  // the callback's choice, not the first
  EXPECT_TRUE(same_bytes(TlsHandler::payload(1), handler_.dialed(1).echoed));
  auto other = client_ctx({.alpn = {"x-first"}});
  dial(2, other);
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 2; }, 10000ms));
  EXPECT_FALSE(handler_.dialed(2).opened);
  EXPECT_EQ(handler_.dialed(2).close.reason, CloseReason::kHandshakeFailed);
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().failed_alpn == 1; }));
  EXPECT_EQ(other->stats().failed_alpn, 1u);
}

// Ticket keys rotate: a ticket sealed more than two periods ago is not taken (a full
// handshake instead). The passage of time is what is tested, so this one waits.
TEST_P(TlsTest, TicketsOlderThanTwoRotationsAreNotResumed) {
  start(server_ctx({.ticket_rotation = std::chrono::seconds(1)}));
  auto client = client_ctx();
  dial(1, client);
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 1; }, 10000ms));
  dial(2, client);  // at once: resumed
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 2; }, 10000ms));
  EXPECT_TRUE(handler_.dialed(2).resumed);
  std::this_thread::sleep_for(2300ms);  // the ticket's key is now over two periods old
  dial(3, client);
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 3; }, 10000ms));
  EXPECT_TRUE(handler_.dialed(3).opened);
  EXPECT_FALSE(handler_.dialed(3).resumed);
  EXPECT_TRUE(same_bytes(TlsHandler::payload(3), handler_.dialed(3).echoed));
}

TEST_P(TlsTest, AServerWithTheWrongNameIsRefusedByTheDial) {
  start(server_ctx({.cert_file = pki_.other_name.cert, .key_file = pki_.other_name.key}));
  auto client = client_ctx();
  dial(1, client);  // to "localhost": the certificate says wrong.example
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 1; }, 10000ms));
  TlsHandler::Dialed d = handler_.dialed(1);
  EXPECT_FALSE(d.opened);
  EXPECT_EQ(d.close.reason, CloseReason::kHandshakeFailed);
  EXPECT_EQ(client->stats().failed_certificate, 1u);
  EXPECT_TRUE(eventually([&] { return engine_->stats().dial_failures == 1; }));
  // The server heard the client's alert: counted, the handler never saw it.
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().failed_certificate == 1; }));
  EXPECT_EQ(handler_.server_opens(), 0);
  // With the name the certificate has, the same server is accepted.
  dial(2, client, "wrong.example");
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 2; }, 10000ms));
  EXPECT_TRUE(same_bytes(TlsHandler::payload(2), handler_.dialed(2).echoed));
}

TEST_P(TlsTest, PlainTextToTheTlsPortClosesOnlyThatConnection) {
  start(server_ctx());
  MemTlsClient good(pki_);
  ASSERT_TRUE(good.connect(port_));
  ASSERT_TRUE(good.handshake());
  Client plain;
  ASSERT_TRUE(plain.connect_tcp(port_));
  ASSERT_TRUE(plain.send_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string junk;
  const End end = plain.wait_end(5000ms, &junk);
  EXPECT_TRUE(end == End::kEof || end == End::kReset) << end_name(end);
  Client garbage;  // a record header of type 0x17 before any handshake
  ASSERT_TRUE(garbage.connect_tcp(port_));
  ASSERT_TRUE(garbage.send_all(std::string("\x17\x03\x03\x00\x10", 5) + make_payload(16, 3)));
  const End end2 = garbage.wait_end(5000ms);
  EXPECT_TRUE(end2 == End::kEof || end2 == End::kReset) << end_name(end2);
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().failed_protocol == 2; }));
  EXPECT_TRUE(eventually([&] { return closed_by(CloseReason::kHandshakeFailed) == 2; }));
  // The good connection goes on; the handler saw it alone.
  const std::string p = make_payload(5000, 4);
  ASSERT_TRUE(good.send(p));
  std::string got;
  ASSERT_TRUE(good.recv_exact(p.size(), &got));
  EXPECT_TRUE(same_bytes(p, got));
  EXPECT_EQ(handler_.server_opens(), 1);
  EXPECT_EQ(handler_.server_closes(), 0);
}

TEST_P(TlsTest, AStalledHandshakeTimesOut) {
  start(server_ctx({.handshake_timeout = 200ms}));
  Client silent, half;
  ASSERT_TRUE(silent.connect_tcp(port_));
  ASSERT_TRUE(half.connect_tcp(port_));
  // The start of a ClientHello record, never finished.
  ASSERT_TRUE(half.send_all(std::string("\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03", 11)));
  const auto t0 = Clock::now();
  EXPECT_EQ(silent.wait_end(5000ms), End::kEof);
  EXPECT_EQ(half.wait_end(5000ms), End::kEof);
  EXPECT_LT(Clock::now() - t0, 3000ms);
  EXPECT_TRUE(eventually([&] { return closed_by(CloseReason::kHandshakeTimeout) == 2; }));
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().failed_timeout == 2; }));
  EXPECT_EQ(handler_.server_opens(), 0);
  EXPECT_EQ(handler_.server_closes(), 0);
}

TEST_P(TlsTest, MutualTlsAcceptsTheCaSignedClientOnly) {
  start(server_ctx({.ca_file = pki_.ca_file}));
  {
    MemTlsClient ok(pki_, &pki_.client);
    ASSERT_TRUE(ok.connect(port_));
    ASSERT_TRUE(ok.handshake());
    ASSERT_TRUE(ok.send("ping"));
    std::string got;
    ASSERT_TRUE(ok.recv_exact(4, &got));
    EXPECT_EQ(got, "ping");
    EXPECT_TRUE(eventually([&] { return handler_.server_subject() == "CN=client"; }))
        << handler_.server_subject();
  }
  // Refused: no certificate, an expired one, one from another CA. With TLS 1.3 the client
  // finishes its side before the server judges its certificate, so the refusal shows as
  // the server's alert and the end of the connection, before any echo.
  const TestPki::Pair* bad[] = {nullptr, &pki_.expired_client, &pki_.untrusted_client};
  uint64_t refused = 0;
  for (const TestPki::Pair* cert : bad) {
    MemTlsClient c(pki_, cert);
    ASSERT_TRUE(c.connect(port_));
    (void)c.handshake();
    (void)c.send("ping");
    std::string got;
    EXPECT_EQ(c.wait_end(&got, 5000ms), -1);  // the alert: an error, no data
    EXPECT_EQ(got, "");
    ++refused;
    EXPECT_TRUE(eventually([&] { return server_tls_->stats().failed_certificate == refused; }));
  }
  EXPECT_TRUE(eventually([&] { return closed_by(CloseReason::kHandshakeFailed) == 3; }));
  EXPECT_EQ(handler_.server_opens(), 1);
  // A dial with the client certificate, through the engine's own client side.
  auto client = client_ctx({.cert_file = pki_.client.cert, .key_file = pki_.client.key});
  dial(1, client);
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 1; }, 10000ms));
  EXPECT_TRUE(same_bytes(TlsHandler::payload(1), handler_.dialed(1).echoed));
}

TEST_P(TlsTest, RenegotiationIsRefusedAndCounted) {
  start(server_ctx());
  MemTlsClient old(pki_, nullptr, "localhost", TLS1_2_VERSION);
  ASSERT_TRUE(old.connect(port_));
  ASSERT_TRUE(old.handshake());
  ASSERT_TRUE(old.renegotiate());
  std::string got;
  EXPECT_EQ(old.wait_end(&got, 5000ms), -1);  // the server's no_renegotiation alert
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().renegotiations_refused == 1; }));
  MemTlsClient next(pki_);  // the server goes on
  ASSERT_TRUE(next.connect(port_));
  ASSERT_TRUE(next.handshake());
  ASSERT_TRUE(next.send("after"));
  got.clear();
  ASSERT_TRUE(next.recv_exact(5, &got));
  EXPECT_EQ(got, "after");
}

// A client that sends without reading: the echoes fill the connection's output, the
// engine stops reading it, and TCP holds the client back. The server takes a bounded
// share of what the client wanted to send, whatever the TLS layer buffers.
TEST_P(TlsTest, BackpressureHoldsAcrossTheTlsLayer) {
  start(server_ctx());
  MemTlsClient c(pki_);
  ASSERT_TRUE(c.connect(port_));
  ASSERT_TRUE(c.handshake());
  const std::string chunk = make_payload(64 * 1024, 5);
  constexpr size_t kWanted = 256u << 20;
  const size_t sent = c.flood(chunk, kWanted, 500ms);
  EXPECT_LT(sent, kWanted / 4) << "the client was never held back";
  EXPECT_TRUE(eventually([&] { return engine_->stats().read_pauses >= 1; }));
  const EngineStats st = engine_->stats();
  EXPECT_LT(st.bytes_in, 64u << 20) << describe(st);
  // Once the client reads, what the server echoed comes back intact.
  std::string got;
  ASSERT_TRUE(c.recv_exact(chunk.size(), &got, 20000ms));
  EXPECT_TRUE(same_bytes(chunk, got));
}

// A graceful drain lets a handshake in progress finish and serves the request that
// comes with it, then closes at the frame boundary (close_notify); it does not cut the
// connection for holding no plaintext yet.
TEST_P(TlsTest, AGracefulDrainLetsAHandshakeInProgressFinish) {
  start(server_ctx());
  MemTlsClient c(pki_);
  ASSERT_TRUE(c.connect(port_));
  ASSERT_TRUE(c.hello());  // the server has answered; our Finished is still to come
  engine_->shutdown(5000ms);
  ASSERT_TRUE(eventually([&] { return !engine_->running() || engine_->stopping(); }));
  ASSERT_TRUE(c.handshake(1 << 20, kIoTimeout, "request"));
  std::string got;
  ASSERT_TRUE(c.recv_exact(7, &got));
  EXPECT_EQ(got, "request");
  EXPECT_EQ(c.wait_end(&got, 5000ms), 1);  // then closed in order, at the frame boundary
  EXPECT_TRUE(eventually([&] { return closed_by(CloseReason::kShutdown) == 1; }));
  EXPECT_EQ(engine_->stats().drain_deadline_closed, 0u);
}

// A peer that resets in the middle of the handshake: the dial fails as a connect would
// (kConnectFailed with the errno, which a pool may retry), not as a refused handshake.
TEST_P(TlsTest, AResetMidHandshakeFailsTheDialAsAConnect) {
  start(server_ctx());
  uint16_t raw_port = 0;
  const int lfd = raw_listener(16, &raw_port);
  ASSERT_GE(lfd, 0);
  std::thread rude([lfd] {
    const int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    std::string hello;
    (void)recv_some(fd, &hello, 5000ms);  // the ClientHello
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    ::close(fd);
  });
  auto client = client_ctx();
  ASSERT_TRUE(engine_->dial("tcp://127.0.0.1:" + std::to_string(raw_port),
                            {.context = TlsHandler::ctx(1), .transport = client,
                             .server_name = "localhost"}).is_ok());
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 1; }, 10000ms));
  rude.join();
  ::close(lfd);
  const TlsHandler::Dialed d = handler_.dialed(1);
  EXPECT_FALSE(d.opened);
  EXPECT_EQ(d.close.reason, CloseReason::kConnectFailed);
  EXPECT_EQ(d.close.error, ECONNRESET);
  EXPECT_EQ(client->stats().failed_closed, 1u);
  EXPECT_TRUE(eventually([&] { return engine_->stats().dial_failures == 1; }));
  // A dial that never connects is no TLS handshake at all: not counted by the context.
  ASSERT_TRUE(engine_->dial("tcp://127.0.0.1:" + std::to_string(unused_port()),
                            {.context = TlsHandler::ctx(2), .transport = client}).is_ok());
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 2; }, 10000ms));
  EXPECT_EQ(handler_.dialed(2).close.reason, CloseReason::kConnectFailed);
  EXPECT_EQ(client->stats().failed_closed, 1u);
}

// A context of the wrong role: the listener's connections close unseen (no on_close
// without on_open), a dial fails at once with kHandshakeFailed and no socket.
TEST_P(TlsTest, AContextOfTheWrongRoleRefusesItsConnections) {
  start(client_ctx());  // a client context on a listener
  Client plain;
  ASSERT_TRUE(plain.connect_tcp(port_));
  const End end = plain.wait_end(5000ms);
  EXPECT_TRUE(end == End::kEof || end == End::kReset) << end_name(end);
  EXPECT_TRUE(eventually([&] { return closed_by(CloseReason::kHandshakeFailed) == 1; }));
  EXPECT_EQ(handler_.server_opens(), 0);
  EXPECT_EQ(handler_.server_closes(), 0);
  dial(1, server_ctx());  // a server context on a dial
  ASSERT_TRUE(wait_until([&] { return handler_.dial_closes() == 1; }, 10000ms));
  EXPECT_EQ(handler_.dialed(1).close.reason, CloseReason::kHandshakeFailed);
  EXPECT_TRUE(eventually([&] { return engine_->stats().dial_failures == 1; }));
}

// The client keeps its session across connections that ended without close_notify (an
// engine stopped under them): the next engine with the same context resumes.
TEST_P(TlsTest, AKeptSessionSurvivesAnUncleanEnd) {
  start(server_ctx());
  auto client = client_ctx();
  class Idle : public EventHandler {
   public:
    Action on_traffic(Conn& c) override {
      c.discard();
      echoed = true;  // the echo of "x" came after the server's tickets
      return Action::kNone;
    }
    Action on_open(Conn& c) override {
      opened = true;
      return c.write("x").is_ok() ? Action::kNone : Action::kClose;
    }
    std::atomic<bool> opened{false}, echoed{false};
  };
  for (int round = 0; round < 2; ++round) {
    Idle idle;
    Engine other(idle, test_options(GetParam(), 1));
    ASSERT_TRUE(other.start().is_ok());
    ASSERT_TRUE(other.dial("tcp://localhost:" + std::to_string(port_), {.transport = client}).is_ok());
    ASSERT_TRUE(wait_until([&] { return idle.echoed.load(); }, 10000ms));
    other.stop();  // closes the idle connection: no close_notify was exchanged first
    other.wait();
  }
  EXPECT_TRUE(eventually([&] { return server_tls_->stats().resumed == 1; }))
      << server_tls_->stats().resumed;
}

TEST_P(TlsTest, AGracefulCloseSendsCloseNotify) {
  handler_.close_after_reply_ = true;
  start(server_ctx());
  MemTlsClient c(pki_);
  ASSERT_TRUE(c.connect(port_));
  ASSERT_TRUE(c.handshake());
  ASSERT_TRUE(c.send("last words"));
  std::string got;
  EXPECT_EQ(c.wait_end(&got), 1);  // close_notify, not a bare EOF
  EXPECT_EQ(got, "last words");
  EXPECT_TRUE(eventually([&] { return closed_by(CloseReason::kLocalClose) == 1; }));
}

TEST_P(TlsTest, ReloadServesTheNewCertificateAndKeepsTheOldOnError) {
  const std::string dir = std::filesystem::path(pki_.server.cert).parent_path() / "live";
  std::filesystem::create_directory(dir);
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  auto copy = [&](const TestPki::Pair& from) {
    std::filesystem::copy_file(from.cert, cert, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(from.key, key, std::filesystem::copy_options::overwrite_existing);
  };
  copy(pki_.server);
  start(server_ctx({.cert_file = cert, .key_file = key}));
  auto peer_cn = [&] {
    MemTlsClient c(pki_, nullptr, nullptr);  // no name check: the CN is what is looked at
    EXPECT_TRUE(c.connect(port_));
    EXPECT_TRUE(c.handshake());
    return c.peer_cn();
  };
  EXPECT_EQ(peer_cn(), "localhost");
  copy(pki_.other_name);
  ASSERT_TRUE(server_tls_->reload().is_ok());
  EXPECT_EQ(peer_cn(), "wrong.example");
  EXPECT_EQ(server_tls_->stats().reloads, 1u);
  // A key that does not match the certificate: refused, the last good pair stays.
  std::filesystem::copy_file(pki_.client.key, key, std::filesystem::copy_options::overwrite_existing);
  EXPECT_FALSE(server_tls_->reload().is_ok());
  EXPECT_EQ(peer_cn(), "wrong.example");
  EXPECT_EQ(server_tls_->stats().reloads, 1u);
}

TEST_P(TlsTest, RpcClientCallsAnRpcServerOverTls) {
  proto::RpcServerOptions options;
  options.engine = test_options(GetParam(), 1);
  proto::RpcServer server(options);
  proto::RpcService& svc = server.add_service(
      {.name = "main", .listen = {"tcp://127.0.0.1:0"}, .transport = server_ctx()});
  ASSERT_TRUE(svc.add_unary("echo", 1, [](proto::RpcCall&, std::string_view in, std::string& out) {
    out.assign(in);
    return proto::RpcStatus::ok();
  }).is_ok());
  ASSERT_TRUE(server.start().is_ok());
  const uint16_t port = svc.addrs().at(0).port();

  RpcClientSide client(GetParam(), client_ctx());
  ASSERT_TRUE(client.engine.start().is_ok());
  proto::RpcClient& rpc = client.rpc;
  constexpr int kCalls = 50;
  std::vector<std::promise<std::pair<proto::RpcStatus, std::string>>> results(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    rpc.call("tcp://localhost:" + std::to_string(port), 1, make_payload(1000 + i * 97, i), {},
             [&results, i](const proto::RpcStatus& s, std::string_view body) {
               results[i].set_value({s, std::string(body)});
             });
  }
  for (int i = 0; i < kCalls; ++i) {
    auto [status, body] = results[i].get_future().get();
    EXPECT_TRUE(status.is_ok()) << status.to_string();
    EXPECT_TRUE(same_bytes(make_payload(1000 + i * 97, i), body)) << i;
  }
  EXPECT_EQ(client.pool.stats().dials, 1u);  // one TLS connection carried every call
  // A client that trusts another CA: the call fails at the handshake, not retried.
  RpcClientSide strict(GetParam(), client_ctx({.ca_file = pki_.other_name.cert}));
  ASSERT_TRUE(strict.engine.start().is_ok());
  std::promise<proto::RpcStatus> refused;
  strict.rpc.call("tcp://localhost:" + std::to_string(port), 1, "x", {},
            [&refused](const proto::RpcStatus& s, std::string_view) { refused.set_value(s); });
  const proto::RpcStatus s = refused.get_future().get();
  EXPECT_EQ(s.code, proto::RpcCode::kUnavailable) << s.to_string();
  EXPECT_EQ(strict.rpc.stats().retries, 0u);
  server.shutdown(0ms);
}

INSTANTIATE_TEST_SUITE_P(Backends, TlsTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

}  // namespace
}  // namespace ringnet::test
