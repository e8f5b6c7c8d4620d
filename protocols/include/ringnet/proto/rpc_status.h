// SPDX-License-Identifier: MIT
/// @file
/// RpcCode and RpcStatus: how an RPC call ended, on the server and on the client.
///
/// The codes and their numbers are gRPC's (a reader who knows one knows the other);
/// kUnknownMethod is gRPC's UNIMPLEMENTED. An error frame (RpcType::kError) carries one:
///
///   body = u16 code (big-endian) + message (UTF-8, no terminator)
///
/// A client also uses these codes for failures it finds itself (no answer in time is
/// kDeadlineExceeded, a dead connection kUnavailable...), with the errno in RpcStatus::error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ringnet/config.h"

namespace ringnet::proto {

/// Status code of an RPC call (gRPC's numbering).
enum class RpcCode : uint16_t {
  kOk = 0,                  ///< success
  kCancelled = 1,           ///< cancelled (by the caller, or by the server's drain limit)
  kUnknown = 2,             ///< an error with no better code
  kInvalidArgument = 3,     ///< the request is malformed (bad body, bad compression)
  kDeadlineExceeded = 4,    ///< the deadline passed before the answer
  kNotFound = 5,            ///< the thing asked for does not exist
  kAlreadyExists = 6,       ///< the thing to create exists
  kPermissionDenied = 7,    ///< the caller may not do this
  kResourceExhausted = 8,   ///< over a limit (concurrency, queue, size)
  kFailedPrecondition = 9,  ///< the system is not in a state to do this
  kAborted = 10,            ///< aborted (a conflict); retry at a higher level
  kOutOfRange = 11,         ///< past a valid range
  kUnknownMethod = 12,      ///< no such method (gRPC's UNIMPLEMENTED)
  kInternal = 13,           ///< a broken invariant, a handler that threw
  kUnavailable = 14,        ///< not serving now (draining, connection lost): retry elsewhere
  kDataLoss = 15,           ///< unrecoverable data loss
  kUnauthenticated = 16,    ///< no valid credentials
};
/// Number of RpcCode values (codes are 0 .. kRpcCodeCount - 1).
inline constexpr int kRpcCodeCount = 17;

/// "OK", "CANCELLED", ... "UNKNOWN_METHOD" ...; "INVALID_CODE" for other values.
RINGNET_PROTO_EXPORT const char* rpc_code_name(RpcCode code);

/// How a call ended: a code, a message and, for failures the client found itself, the errno.
/// Threads: a plain value.
struct RpcStatus {
  RpcCode code = RpcCode::kOk;  ///< kOk on success
  std::string message;          ///< why, for errors; empty for ok
  int error = 0;                ///< client side: the errno of a local failure, else 0

  /// A success.
  static RpcStatus ok() { return {}; }
  /// An error with `code` and `message`.
  static RpcStatus make(RpcCode code, std::string_view message) {
    return RpcStatus{code, std::string(message), 0};
  }
  /// True for kOk.
  bool is_ok() const { return code == RpcCode::kOk; }
  /// is_ok().
  explicit operator bool() const { return is_ok(); }
  /// "DEADLINE_EXCEEDED: <message>", or "OK".
  std::string to_string() const;
};

inline std::string RpcStatus::to_string() const {
  std::string s = rpc_code_name(code);
  if (!message.empty()) s.append(": ").append(message);
  return s;
}

/// The body of an error frame: the code (u16, big-endian), then the message.
RINGNET_PROTO_EXPORT std::string encode_rpc_error_body(RpcCode code, std::string_view message);
/// Reads an error frame's body. A body shorter than 2 bytes, or a code outside the known
/// set, decodes as kUnknown with the whole body as message (never a false kOk: code 0 in
/// an error frame is read as kUnknown too).
RINGNET_PROTO_EXPORT RpcStatus decode_rpc_error_body(std::string_view body);

}  // namespace ringnet::proto
