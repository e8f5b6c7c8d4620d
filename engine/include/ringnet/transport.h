// SPDX-License-Identifier: MIT
/// @file
/// Transport: a per-connection byte transform between the socket and the handler (TLS is
/// the one ringnet ships, in `<ringnet/proto/tls.h>`). The engine knows only this seam:
/// what the kernel hands over goes through Transport::on_input, and the handler's
/// plaintext comes out of it; what the handler writes goes through Transport::seal before
/// it is queued. Every codec and handler therefore runs over it unchanged.
///
/// A connection with a transport opens in two steps: the socket connects (or is
/// accepted), then the transport's handshake runs; only when on_input (or start) reports
/// `established` does the handler hear on_open. A handshake that fails or times out
/// (Transport::handshake_timeout) closes the connection with
/// CloseReason::kHandshakeFailed or kHandshakeTimeout; the handler hears of it only for
/// a dial (on_close without on_open, as a connect failure), never for an accepted socket
/// it was never shown.
///
/// Threads: a Transport belongs to its connection and is called on that connection's loop
/// only. A TransportFactory is shared by every loop: create() runs concurrently on them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "ringnet/buffer.h"
#include "ringnet/config.h"
#include "ringnet/handler.h"

namespace ringnet {

/// The outcome of a transport step; all false: carry on (a handshake may still run).
/// In one step they happen in this order: established, plaintext, then failed or
/// peer_closed.
struct TransportResult {
  /// The handshake completed in this step: the handler hears on_open now.
  bool established = false;
  /// A protocol error: the connection closes (what `wire` holds is sent if the socket
  /// takes it at once: an alert, best effort); plaintext decoded before the error still
  /// reaches the handler.
  bool failed = false;
  /// With failed: an error code of the transport's own (for TLS, the library's reason);
  /// reported in CloseInfo::error.
  int error = 0;
  /// The peer ended the session in order (TLS close_notify), after the plaintext this
  /// step appended: handled as the peer's EOF.
  bool peer_closed = false;
};

/// One connection's transform. Loop thread only.
class RINGNET_EXPORT Transport {
 public:
  virtual ~Transport() = default;
  /// The socket is connected (a dial) or accepted: a client writes its first handshake
  /// bytes into `wire`. May report `established` at once (a transport with no handshake).
  virtual TransportResult start(OutboundQueue& wire) = 0;
  /// Bytes from the socket. Plaintext for the handler is appended to `app`; bytes to
  /// send (handshake messages, alerts, session tickets) to `wire`. `in` is consumed
  /// whole: what does not make a complete record yet is kept by the transport.
  virtual TransportResult on_input(std::string_view in, Buffer& app, OutboundQueue& wire) = 0;
  /// The handler's plaintext, once established: appended to `wire` as records. A failure
  /// closes the connection.
  virtual TransportResult seal(std::span<const std::string_view> app, OutboundQueue& wire) = 0;
  /// A graceful close is beginning (the handler's close(), a drain, the peer's EOF): the
  /// transport may queue its goodbye (TLS close_notify) into `wire`.
  virtual void shutdown(OutboundQueue& wire) = 0;
  /// The connection closed (for whatever reason: lets a transport count handshakes that
  /// ended unfinished by their cause). Called once, before the transport is destroyed.
  virtual void on_close(CloseInfo info) = 0;
  /// How long the handshake may take, from start() to `established`.
  virtual std::chrono::milliseconds handshake_timeout() const { return std::chrono::seconds(10); }
  /// Input is held inside the transport that is not plaintext yet (an unfinished record):
  /// the connection is not at a frame boundary (the graceful drain, the read timeout).
  virtual bool has_pending_input() const { return false; }
};

/// Who a transport is for.
struct TransportPeer {
  bool client = false;          ///< this side dialed (a TLS client)
  std::string_view host;        ///< a dial's host: the name dialed (or the numeric address)
                                ///< unless DialOptions::server_name is set; empty on accept
  uint16_t port = 0;            ///< a dial's port (0 on accept)
  int listen_index = -1;        ///< an accepted socket's Engine::listen() call, in order
};

/// Makes a Transport per connection, for a listener (Engine::listen with ListenOptions)
/// or a dial (DialOptions::transport). Shared by every loop: create() must be
/// thread-safe.
class RINGNET_EXPORT TransportFactory {
 public:
  virtual ~TransportFactory() = default;
  /// A transport for one new connection; nullptr refuses it (the socket is closed).
  virtual std::unique_ptr<Transport> create(const TransportPeer& peer) = 0;
};

}  // namespace ringnet
