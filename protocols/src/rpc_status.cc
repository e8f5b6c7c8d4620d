// SPDX-License-Identifier: MIT
// RpcCode names and the error frame's body: see rpc_status.h.
#include "ringnet/proto/rpc_status.h"

namespace ringnet::proto {

const char* rpc_code_name(RpcCode code) {
  switch (code) {
    case RpcCode::kOk: return "OK";
    case RpcCode::kCancelled: return "CANCELLED";
    case RpcCode::kUnknown: return "UNKNOWN";
    case RpcCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case RpcCode::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case RpcCode::kNotFound: return "NOT_FOUND";
    case RpcCode::kAlreadyExists: return "ALREADY_EXISTS";
    case RpcCode::kPermissionDenied: return "PERMISSION_DENIED";
    case RpcCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case RpcCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case RpcCode::kAborted: return "ABORTED";
    case RpcCode::kOutOfRange: return "OUT_OF_RANGE";
    case RpcCode::kUnknownMethod: return "UNKNOWN_METHOD";
    case RpcCode::kInternal: return "INTERNAL";
    case RpcCode::kUnavailable: return "UNAVAILABLE";
    case RpcCode::kDataLoss: return "DATA_LOSS";
    case RpcCode::kUnauthenticated: return "UNAUTHENTICATED";
  }
  return "INVALID_CODE";
}

std::string encode_rpc_error_body(RpcCode code, std::string_view message) {
  const auto c = static_cast<uint16_t>(code);
  std::string body;
  body.reserve(2 + message.size());
  body.push_back(static_cast<char>(c >> 8));
  body.push_back(static_cast<char>(c & 0xFF));
  body.append(message);
  return body;
}

RpcStatus decode_rpc_error_body(std::string_view body) {
  if (body.size() < 2) return RpcStatus::make(RpcCode::kUnknown, body);
  const auto* b = reinterpret_cast<const unsigned char*>(body.data());
  const int c = (int{b[0]} << 8) | int{b[1]};
  if (c == 0 || c >= kRpcCodeCount) return RpcStatus::make(RpcCode::kUnknown, body);
  return RpcStatus::make(static_cast<RpcCode>(c), body.substr(2));
}

}  // namespace ringnet::proto
