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

inline constexpr size_t kRpcHeaderSize = 20;
inline constexpr uint16_t kRpcMagic = 0x524E;  ///< "RN"
inline constexpr uint8_t kRpcVersion = 1;
inline constexpr uint16_t kRpcFlagIdempotent = 0x0001;
inline constexpr uint32_t kRpcDefaultMaxBody = 10u * 1024 * 1024;

/// Protocol error reasons (ProtocolError::reason). Inline arrays, so each has one address
/// program-wide: compare by pointer or by text.
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBadMagic[] =
    "rpc: bad magic (expected 0x524E \"RN\")";
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBadVersion[] =
    "rpc: unsupported version (expected 1)";
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBadType[] =
    "rpc: unknown frame type (expected 0..3)";
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBodyTooSmall[] =
    "rpc: body_length below min_body";
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorBodyTooLarge[] =
    "rpc: body_length over max_body";

enum class RpcType : uint8_t {
  kRequest = 0,
  kResponse = 1,
  kOneWay = 2,
  kError = 3,
};

/// "request", "response", "one-way", "error"; "unknown" for any other value.
RINGNET_PROTO_EXPORT const char* rpc_type_name(RpcType type);

struct RpcFrame {
  RpcType type = RpcType::kRequest;
  uint16_t flags = 0;
  uint16_t method = 0;
  uint64_t request_id = 0;
  std::string_view body;  ///< decode: a view into the input, valid while the input is

  bool idempotent() const { return (flags & kRpcFlagIdempotent) != 0; }
  bool operator==(const RpcFrame&) const = default;
};

/// The 20 header bytes of one frame, for clients that assemble frames themselves (for
/// example a header followed by a body written in pieces).
using RpcHeaderBytes = std::array<char, kRpcHeaderSize>;
RINGNET_PROTO_EXPORT RpcHeaderBytes encode_rpc_header(RpcType type, uint16_t flags,
                                                      uint16_t method, uint64_t request_id,
                                                      uint32_t body_length);

struct RpcFrameOptions {
  /// Bounds on body_length, checked from the header. min_body > max_body refuses every
  /// frame (as below min_body).
  uint32_t min_body = 0;
  uint32_t max_body = kRpcDefaultMaxBody;
};

class RINGNET_PROTO_EXPORT RpcFrameCodec {
 public:
  using Frame = RpcFrame;
  using Options = RpcFrameOptions;

  RpcFrameCodec() = default;
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

  const Options& options() const { return options_; }

 private:
  Status check_encodable(const RpcFrame& frame) const;

  Options options_;
};

}  // namespace ringnet::proto
