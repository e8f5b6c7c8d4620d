// SPDX-License-Identifier: MIT
/// @file
/// The codec contract: bytes in, frames out; frames in, bytes out. A codec knows nothing of
/// loops or sockets, so it is unit-tested and fuzzed on plain strings.
///
///   Decoded decode(std::string_view in, Frame& frame) const;
///   Decoded decode(std::string_view in, Frame& frame, State& state) const;  // resumable
///
/// looks at the front of `in` (every unread inbound byte of one connection) and returns
///   - kFrame:    `frame` is filled and took the first `consumed` bytes of `in`. Its views
///                point into `in` (no copy) unless the protocol forces a copy (HTTP chunked
///                bodies), so they are valid only while `in` is;
///   - kNeedMore: no complete frame yet; call again with the same bytes plus more. `need`,
///                when not 0, is how many bytes `in` must hold before a call can answer
///                anything else (a length read from a header), so the caller may wait;
///   - kError:    the bytes can never become a valid frame (bad header, over a size limit).
///                Limits are checked from headers, before a body is waited for.
/// decode is const: one codec object serves every connection on every loop. Encoders append
/// to any ByteSink (Conn, or StringSink in tests).
///
/// Resumable codecs (ResumableCodec) also take a State: one connection's checkpoint, so a
/// frame that trickles in is not parsed again from its start on every arrival (Netty's
/// checkpoint, redis' multibulklen/bulklen). The caller keeps one State per connection and
/// passes it back with `in` starting at the same frame, more bytes appended; the bytes may
/// have moved in memory, so a State holds offsets from the front of `in`, never pointers.
/// resume_at() is how many bytes at the front of `in` the checkpoint has examined (0: none);
/// the next call looks only past them. kFrame and kError leave the State fresh again. A
/// fresh State is always valid: the result is the same, only the cost differs. The
/// two-argument decode is the three-argument one with a fresh State.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ringnet/config.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Why the input was rejected. `reason` is a static string for logs and tests; `status` is
/// the answer code where the protocol has one (HTTP status), else 0.
/// Threads: a plain value, used on the thread that holds it.
struct ProtocolError {
  const char* reason = "";  ///< static string saying why, for logs and tests
  int status = 0;  ///< protocol answer code (e.g. HTTP status), 0 when the protocol has none
};

/// Result of one decode call: a frame, a need for more bytes, or an error (see the file comment).
/// Threads: a plain value, used on the thread that called decode.
struct Decoded {
  /// What the decode call found.
  enum Kind : uint8_t { kFrame, kNeedMore, kError };
  Kind kind = kNeedMore;  ///< kFrame, kNeedMore or kError
  /// kNeedMore only: a codec-specific hint for its adapter (HTTP: the headers are complete
  /// and the client waits for "100 Continue"). 0 means none.
  uint8_t hint = 0;
  size_t consumed = 0;  ///< kFrame: bytes of `in` the frame took
  ProtocolError error;  ///< kError
  /// kNeedMore only: until `in` holds this many bytes, decode would say kNeedMore with the
  /// same hint again. 0: unknown (any new byte may matter).
  size_t need = 0;

  /// A kFrame result that took the first `consumed` bytes of `in`.
  static Decoded frame(size_t consumed) { return {kFrame, 0, consumed, {}, 0}; }
  /// A kNeedMore result with an adapter `hint` (0: none) and a byte count `need` (0: unknown).
  static Decoded need_more(uint8_t hint = 0, size_t need = 0) {
    return {kNeedMore, hint, 0, {}, need};
  }
  /// A kError result with a static `reason` and an optional protocol `status` (0: none).
  static Decoded fail(const char* reason, int status = 0) {
    return {kError, 0, 0, {reason, status}, 0};
  }
};

// A partial frame that has cost less than this to examine is simply decoded again from its
// start on its next arrival: cheaper than keeping (and allocating) a checkpoint for it.
// Codecs record a checkpoint from here on, and the adapter keeps one per connection. So a
// frame costs at most a few times its size plus kCheckpointMin per arrival. A build may
// lower it for the whole tree (scripts/fuzz does), so small inputs reach the checkpoints.
#ifndef RINGNET_CHECKPOINT_MIN
#define RINGNET_CHECKPOINT_MIN 512  ///< default of kCheckpointMin, in bytes
#endif
/// Bytes a partial frame may cost to examine before codecs keep a checkpoint for it (see above).
inline constexpr size_t kCheckpointMin = RINGNET_CHECKPOINT_MIN;

/// Where encoders append bytes. Conn satisfies it (bytes go to the outbound queue).
template <typename S>
concept ByteSink = requires(S& s, std::string_view bytes) {
  { s.write(bytes) } -> std::same_as<Status>;
};

/// A ByteSink over a std::string, for tests and for building replies off the loop.
/// Threads: not synchronised; one thread at a time, the one that owns `out`.
struct StringSink {
  std::string& out;  ///< string the bytes are appended to; must outlive the sink
  /// Appends `bytes` to `out`; always ok.
  Status write(std::string_view bytes) {
    out.append(bytes);
    return Status::ok();
  }
};

/// Appends several pieces (header, body, trailer) as one write where the sink has writev
/// (Conn does): one outbound-queue append, and a large body may go straight to the socket
/// instead of being copied behind its header. Otherwise one write per piece. Empty pieces
/// are skipped.
template <ByteSink S, typename... Parts>
Status write_parts(S& sink, const Parts&... pieces) {
  const std::string_view parts[] = {std::string_view(pieces)...};
  if constexpr (requires(std::span<const std::string_view> p) {
                  { sink.writev(p) } -> std::same_as<Status>;
                }) {
    return sink.writev(std::span<const std::string_view>(parts));
  } else {
    for (std::string_view part : parts) {
      if (part.empty()) continue;
      if (Status s = sink.write(part); !s) return s;
    }
    return Status::ok();
  }
}

template <typename C>
concept Codec = requires(const C& c, std::string_view in, typename C::Frame& frame) {
  { c.decode(in, frame) } -> std::same_as<Decoded>;
};

/// A codec with a per-connection checkpoint (see the file comment).
template <typename C>
concept ResumableCodec =
    Codec<C> && std::default_initializable<typename C::State> &&
    std::movable<typename C::State> &&
    requires(const C& c, std::string_view in, typename C::Frame& frame,
             typename C::State& state) {
      { c.decode(in, frame, state) } -> std::same_as<Decoded>;
      { std::as_const(state).resume_at() } -> std::same_as<size_t>;
    };

}  // namespace ringnet::proto
