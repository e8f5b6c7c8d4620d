// SPDX-License-Identifier: MIT
// Fuzz target for the TLS server transport (protocols/src/tls): what a peer sends, cut into
// pieces, into a server session, as the engine would hand it over. The first byte picks
// the piece size (low 7 bits, 1-128) and, with its top bit, whether an in-process OpenSSL
// client completes a real handshake first (so the input lands on an established session,
// as records after the handshake). Aborts on any broken invariant:
//   - no plaintext reaches the handler before the handshake is established;
//   - after kFailed nothing more is fed, and nothing decodes as plaintext from the input
//     (it was never sealed by a peer that has the keys);
//   - on_close always comes, once.
// OpenSSL itself is not instrumented: this exercises our BIO, the session's state handling
// and the error paths around it.
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "../tls_test_pki.h"
#include "ringnet/proto/tls.h"

namespace {

using ringnet::Buffer;
using ringnet::OutboundQueue;
using ringnet::Transport;
using ringnet::TransportResult;

void require(bool ok) {
  if (!ok) std::abort();
}

struct Fixture {
  ringnet::test::TestPki pki;
  std::shared_ptr<ringnet::proto::TlsContext> server;
  SSL_CTX* client = nullptr;
  Fixture() {
    ringnet::proto::TlsConfig cfg;
    cfg.cert_file = pki.server.cert;
    cfg.key_file = pki.server.key;
    cfg.alpn = {"x-fuzz"};
    require(ringnet::proto::TlsContext::server(cfg, &server).is_ok());
    client = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client, SSL_VERIFY_NONE, nullptr);
  }
};

Fixture& fixture() {
  static Fixture* f = new Fixture();  // never destroyed: the PKI files live for the run
  return *f;
}

std::string drain(OutboundQueue& q) {
  std::string out;
  while (!q.empty()) {
    iovec iov[16];
    size_t n = q.gather(iov, 16);
    size_t taken = 0;
    for (size_t i = 0; i < n; ++i) {
      out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      taken += iov[i].iov_len;
    }
    q.consume(taken);
  }
  return out;
}

// Runs a real client handshake against `t`; true once both sides are established.
bool handshake(Transport& t, Buffer& app, OutboundQueue& wire) {
  SSL* ssl = SSL_new(fixture().client);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  bool server_up = false;
  for (int round = 0; round < 8; ++round) {
    SSL_do_handshake(ssl);
    char buf[16384];
    std::string to_server;
    int n;
    while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0) to_server.append(buf, size_t(n));
    if (!to_server.empty()) {
      TransportResult r = t.on_input(to_server, app, wire);
      require(!r.failed);
      if (r.established) server_up = true;
    }
    std::string back = drain(wire);
    if (!back.empty()) BIO_write(rbio, back.data(), static_cast<int>(back.size()));
    if (server_up && SSL_is_init_finished(ssl)) break;
  }
  const bool ok = server_up && SSL_is_init_finished(ssl);
  SSL_free(ssl);
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = (data[0] & 0x7f) + 1;
  const bool established_first = (data[0] & 0x80) != 0;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  std::unique_ptr<Transport> t = fixture().server->create(ringnet::TransportPeer{});
  // (TransportPeer{}: an accepted connection, as the engine makes one.)
  require(t != nullptr);
  Buffer app(nullptr);
  OutboundQueue wire(nullptr);
  bool established = t->start(wire).established;
  if (established_first) {
    require(handshake(*t, app, wire));
    established = true;
  }
  bool failed = false;
  while (!input.empty() && !failed) {
    const std::string_view chunk = input.substr(0, piece);
    input.remove_prefix(chunk.size());
    const size_t before = app.readable_bytes();
    TransportResult r = t->on_input(chunk, app, wire);
    if (r.established) established = true;
    if (r.failed) failed = true;
    // Plaintext needs a peer with the keys: fuzz bytes never decode to any.
    require(app.readable_bytes() == before);
    if (r.peer_closed) break;
    (void)drain(wire);
  }
  require(established || app.empty());
  t->on_close(ringnet::CloseInfo{ringnet::CloseReason::kPeerClosed, 0});
  return 0;
}
