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
///   flags:  bit 0 = idempotent (safe to retry)
///           bit 1 = budget: a u32 (big-endian) follows the header, the caller's remaining
///                   time in milliseconds; it counts in body_length, and decode takes it
///                   out of the body into RpcFrame::budget_ms
///           bits 2-3 = body compression (RpcCompression, rpc_compression.h): 0 none,
///                   1 zstd, 2 lz4, 3 reserved; a compressed body starts with its u32
///                   uncompressed length. The codec passes these bits through; the RPC
///                   server and client compress and decompress.
///           the other bits are reserved and passed through untouched
///   method: application-defined (RpcServer: the method's numeric id)
///
/// Frames without the budget flag are the original version-1 frames, accepted as before.
/// An error frame's body is a u16 (big-endian) status code (RpcCode, rpc_status.h) and a
/// message (encode_rpc_error_body / decode_rpc_error_body).
///
/// Validation happens before any body byte is waited for: magic, version and type are
/// checked as soon as their bytes are present (so a stray text client is refused at once
/// instead of waiting for 20 bytes), body_length against [min_body, max_body] (and against
/// the 4 bytes of the budget field when its flag is set) as soon as the header is
/// complete; then Decoded::need asks for the whole frame, so the adapter waits
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
/// flags bit 1: a 4-byte remaining budget (RpcFrame::budget_ms) follows the header.
inline constexpr uint16_t kRpcFlagBudget = 0x0002;
inline constexpr size_t kRpcBudgetSize = 4;  ///< bytes of the budget field
/// flags bits 2-3: the body's compression (see RpcCompression); 0 = none.
inline constexpr uint16_t kRpcFlagCompressionMask = 0x000C;
inline constexpr int kRpcFlagCompressionShift = 2;  ///< where the compression bits start
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

/// The budget flag is set but body_length is below the 4 bytes of the budget field.
RINGNET_PROTO_EXPORT inline constexpr char kRpcErrorShortBudget[] =
    "rpc: budget flag set but body_length below 4";

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
  std::string_view body;  ///< decode: a view into the input (after the budget field),
                          ///< valid while the input is
  /// The caller's remaining time in milliseconds; meaningful only with kRpcFlagBudget.
  uint32_t budget_ms = 0;

  /// True when the idempotent flag (kRpcFlagIdempotent) is set.
  bool idempotent() const { return (flags & kRpcFlagIdempotent) != 0; }
  /// True when the frame carries the caller's budget (kRpcFlagBudget).
  bool has_budget() const { return (flags & kRpcFlagBudget) != 0; }
  /// Sets the budget and its flag.
  void set_budget(uint32_t ms) {
    flags = static_cast<uint16_t>(flags | kRpcFlagBudget);
    budget_ms = ms;
  }
  /// The compression bits (0 none, 1 zstd, 2 lz4, 3 reserved).
  uint8_t compression_bits() const {
    return static_cast<uint8_t>((flags & kRpcFlagCompressionMask) >> kRpcFlagCompressionShift);
  }
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

/// Writes the header of `frame` (and its budget field when the flag is set) at `out`,
/// which holds kRpcHeaderSize + kRpcBudgetSize bytes; returns the bytes written. The body
/// length is frame.body's (plus the budget field's). No checks: see RpcFrameCodec::encode.
RINGNET_PROTO_EXPORT size_t encode_rpc_head(const RpcFrame& frame, char* out);

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

  /// Writes the header (from a stack buffer; with the budget field when the flag is set),
  /// then the body. Refuses, writing nothing, a frame this codec's decode would reject: an
  /// unknown type or a body_length outside [min_body, max_body].
  template <ByteSink S>
  Status encode(const RpcFrame& frame, S& sink) const {
    if (Status s = check_encodable(frame); !s) return s;
    std::array<char, kRpcHeaderSize + kRpcBudgetSize> head;
    const size_t head_size = encode_rpc_head(frame, head.data());
    return write_parts(sink, std::string_view(head.data(), head_size), frame.body);
  }

  /// The options this codec was built with.
  const Options& options() const { return options_; }

 private:
  Status check_encodable(const RpcFrame& frame) const;

  Options options_;
};

}  // namespace ringnet::proto
