// SPDX-License-Identifier: MIT
/// @file
/// RpcFrameCodec: the binary RPC frame. Many calls share one connection; a response finds
/// its request by request_id, so calls may complete in any order (multiplexing).
///
/// Wire format: a 20-byte header, every integer big-endian, then body_length body bytes.
///
///    0       2     3     4        6        8                16           20
///   +-------+-----+-----+--------+--------+----------------+------------+-------...
///   | magic | ver | type| flags  | method |   request_id   | body_length| body
///   | "RN"  |  1  |     |        |        |                |            |
///   +-------+-----+-----+--------+--------+----------------+------------+-------...
///     u16     u8    u8    u16      u16         u64              u32
///
///   type:   0 request, 1 response, 2 one-way (no reply), 3 error (body says why)
///   flags:  bit 0 = idempotent (safe to retry); the other bits are reserved and passed
///           through untouched by decode and encode
///   method: application-defined
///
/// Validation happens before any body byte is waited for: magic, version and type are
/// checked as soon as their bytes are present (so a stray text client is refused at once
/// instead of waiting for 20 bytes), body_length against [min_body, max_body] as soon as
/// the header is complete; then Decoded::need asks for the whole frame, so the adapter waits
/// for it without decoding again. Each failure has its own reason string (kRpcError* below).
/// Protocol errors get no answer on the wire: the header could not be trusted, so there is
/// no request_id to answer to; the adapter closes the connection.
///
/// Thread-safety: the codec is immutable after construction; decode/encode are const and
/// may run on every loop at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

inline constexpr size_t kRpcHeaderSize = 20;  ///< bytes in a frame header
inline constexpr uint16_t kRpcMagic = 0x524E;  ///< "RN"
inline constexpr uint8_t kRpcVersion = 1;  ///< the only version decode accepts
inline constexpr uint16_t kRpcFlagIdempotent = 0x0001;  ///< flags bit 0: the call is safe to retry
/// Default RpcFrameOptions::max_body, in bytes (10 MiB).
inline constexpr uint32_t kRpcDefaultMaxBody = 10u * 1024 * 1024;

/// Protocol error reasons (ProtocolError::reason). Inline arrays, so each has one address
/// program-wide: compare by pointer or by text.
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBadMagic[] =
    "rpc: bad magic (expected 0x524E \"RN\")";
/// The version byte is not kRpcVersion.
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBadVersion[] =
    "rpc: unsupported version (expected 1)";
/// The type byte is not a RpcType (0..3).
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBadType[] =
    "rpc: unknown frame type (expected 0..3)";
/// body_length is below RpcFrameOptions::min_body.
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBodyTooSmall[] =
    "rpc: body_length below min_body";
/// body_length is over RpcFrameOptions::max_body.
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBodyTooLarge[] =
    "rpc: body_length over max_body";

/// The frame's type byte.
enum class RpcType : uint8_t {
  kRequest = 0,  ///< a call that expects a response
  kResponse = 1,  ///< the answer to the request with the same request_id
  kOneWay = 2,  ///< a call that expects no reply
  kError = 3,  ///< a failed call; the body says why
};

/// "request", "response", "one-way", "error"; "unknown" for any other value.
RINGNET_PROTO_EXPORT const char* rpc_type_name(RpcType type);

/// One decoded (or to-be-encoded) RPC frame: the header fields and the body.
/// Threads: a plain value; its body view is valid only while the decoded input is.
struct RpcFrame {
  RpcType type = RpcType::kRequest;  ///< frame type
  uint16_t flags = 0;  ///< flag bits (bit 0: idempotent); reserved bits pass through
  uint16_t method = 0;  ///< application-defined method number
  uint64_t request_id = 0;  ///< matches a response to its request
  std::string_view body;  ///< decode: a view into the input, valid while the input is

  /// True when the idempotent flag (kRpcFlagIdempotent) is set.
  bool idempotent() const { return (flags & kRpcFlagIdempotent) != 0; }
  /// Field-wise equality (the body compared by content).
  bool operator==(const RpcFrame&) const = default;
};

/// The 20 header bytes of one frame, for clients that assemble frames themselves (for
/// example a header followed by a body written in pieces).
using RpcHeaderBytes = std::array<char, kRpcHeaderSize>;
/// The header of a frame with these fields (magic and kRpcVersion filled in), big-endian.
RINGNET_PROTO_EXPORT RpcHeaderBytes encode_rpc_header(RpcType type, uint16_t flags,
                                                      uint16_t method, uint64_t request_id,
                                                      uint32_t body_length);

/// Options of RpcFrameCodec.
struct RpcFrameOptions {
  /// Bounds on body_length, checked from the header. min_body > max_body refuses every
  /// frame (as below min_body).
  uint32_t min_body = 0;
  uint32_t max_body = kRpcDefaultMaxBody;  ///< largest body_length accepted, in bytes
};

/// Codec for the binary RPC frame (see the file comment).
/// Threads: immutable after construction; decode and encode are const and may run on every loop at
/// once.
class RINGNET_PROTO_EXPORT RpcFrameCodec {
 public:
  using Frame = RpcFrame;  ///< see RpcFrame
  using Options = RpcFrameOptions;  ///< see RpcFrameOptions

  RpcFrameCodec() = default;
  /// A codec with the body bounds in `options`.
  explicit RpcFrameCodec(Options options) : options_(options) {}

  /// See codec.h. Never allocates; frame.body is a view into `in`.
  Decoded decode(std::string_view in, RpcFrame& frame) const;

  /// Writes the header (from a stack buffer), then the body. Refuses, writing nothing, a
  /// frame this codec's decode would reject: an unknown type or a body outside
  /// [min_body, max_body].
  template <ByteSink S>
  Status encode(const RpcFrame& frame, S& sink) const {
    if (Status s = check_encodable(frame); !s) return s;
    RpcHeaderBytes header =
        encode_rpc_header(frame.type, frame.flags, frame.method, frame.request_id,
                          static_cast<uint32_t>(frame.body.size()));
    return write_parts(sink, std::string_view(header.data(), header.size()), frame.body);
  }

  /// The options this codec was built with.
  const Options& options() const { return options_; }

 private:
  Status check_encodable(const RpcFrame& frame) const;

  Options options_;
};

}  // namespace ringnet::proto
