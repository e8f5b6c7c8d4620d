// SPDX-License-Identifier: MIT
/// @file
/// Body compression for the RPC frame: none, zstd (libzstd) or lz4 (liblz4), named per
/// frame by flags bits 2-3 (rpc_frame.h). A compressed body is
///
///   u32 uncompressed length (big-endian) + the codec's output (a zstd frame, an lz4 block)
///
/// The length comes first so a receiver refuses a body that would inflate past its limit
/// before decompressing a byte (a compression bomb), and decompresses into a buffer of
/// exactly that size; a payload that does not inflate to exactly that length is refused.
///
/// Threads: free functions without shared state; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/proto/rpc_frame.h"
#include "ringnet/proto/rpc_status.h"

namespace ringnet::proto {

/// The body's compression, the value of the frame's flags bits 2-3.
enum class RpcCompression : uint8_t {
  kNone = 0,  ///< the body is sent as is
  kZstd = 1,  ///< zstd (libzstd)
  kLz4 = 2,   ///< lz4 block format (liblz4)
};

/// "none", "zstd", "lz4"; "unknown" otherwise.
RINGNET_PROTO_EXPORT const char* rpc_compression_name(RpcCompression c);

/// How a sender compresses.
struct RpcCompressionOptions {
  RpcCompression codec = RpcCompression::kNone;  ///< kNone: never compress
  size_t threshold = 1024;  ///< bodies shorter than this are sent raw (flags bits 0)
  int zstd_level = 1;       ///< zstd's compression level (1 is its fastest)
};

/// The frame's flags with bits 2-3 set to `c` (the others kept; a value of `c` wider than
/// two bits is cut to them).
inline uint16_t rpc_flags_with_compression(uint16_t flags, RpcCompression c) {
  // In unsigned arithmetic throughout: ~ of a promoted uint16_t is a negative int.
  const unsigned kept = unsigned{flags} & ~unsigned{kRpcFlagCompressionMask};
  const unsigned bits =
      (static_cast<unsigned>(c) << kRpcFlagCompressionShift) & kRpcFlagCompressionMask;
  return static_cast<uint16_t>(kept | bits);
}

/// Compresses `body` with options.codec into `out` (replacing its contents) when the body
/// is at least options.threshold bytes and the result is smaller than the body; returns
/// the codec used: kNone when the body is to be sent raw (out then untouched), which is
/// also the answer for codec kNone or a value that names no codec, and for a body over
/// the u32 length field (or lz4's LZ4_MAX_INPUT_SIZE).
RINGNET_PROTO_EXPORT RpcCompression rpc_compress(std::string_view body,
                                                 const RpcCompressionOptions& options,
                                                 std::string& out);

/// Decompresses a body sent with `bits` (the frame's compression bits, 0..3) into `out`
/// (replacing its contents). Refuses, with kResourceExhausted, a body whose declared
/// length is over `max_size` (max_size itself is allowed), before allocating or decoding
/// anything; with kInvalidArgument an unknown codec (3), a body shorter than its length
/// field, or a payload that does not inflate to exactly the declared length (an empty
/// payload included: it is no codec's output; a zstd payload must be one frame). bits 0
/// is not a call for this function (the body is not compressed): refused as
/// kInvalidArgument. The bits are judged first, then the length field, then the payload.
/// After a refusal `out` is empty and the status has a short message saying why.
RINGNET_PROTO_EXPORT RpcStatus rpc_decompress(uint8_t bits, std::string_view body,
                                              size_t max_size, std::string& out);

}  // namespace ringnet::proto
