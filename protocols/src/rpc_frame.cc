// SPDX-License-Identifier: MIT
// RpcFrameCodec: see rpc_frame.h for the wire format.
#include "ringnet/proto/rpc_frame.h"

#include <cstring>

namespace ringnet::proto {
namespace {

// Header field offsets (all big-endian).
constexpr size_t kMagicAt = 0;
constexpr size_t kVersionAt = 2;
constexpr size_t kTypeAt = 3;
constexpr size_t kFlagsAt = 4;
constexpr size_t kMethodAt = 6;
constexpr size_t kRequestIdAt = 8;
constexpr size_t kBodyLengthAt = 16;
static_assert(kBodyLengthAt + 4 == kRpcHeaderSize);

constexpr uint8_t kMaxType = static_cast<uint8_t>(RpcType::kError);

uint8_t byte_at(std::string_view in, size_t at) { return static_cast<uint8_t>(in[at]); }

// Reads `n` bytes at `at` as a big-endian unsigned integer; the caller checked the bounds.
uint64_t read_be(std::string_view in, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | byte_at(in, at + i);
  return v;
}

void write_be(char* out, uint64_t v, size_t n) {
  for (size_t i = n; i-- > 0;) {
    out[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

}  // namespace

const char* rpc_type_name(RpcType type) {
  switch (type) {
    case RpcType::kRequest: return "request";
    case RpcType::kResponse: return "response";
    case RpcType::kOneWay: return "one-way";
    case RpcType::kError: return "error";
  }
  return "unknown";
}

RpcHeaderBytes encode_rpc_header(RpcType type, uint16_t flags, uint16_t method,
                                 uint64_t request_id, uint32_t body_length) {
  RpcHeaderBytes h{};
  write_be(h.data() + kMagicAt, kRpcMagic, 2);
  h[kVersionAt] = static_cast<char>(kRpcVersion);
  h[kTypeAt] = static_cast<char>(type);
  write_be(h.data() + kFlagsAt, flags, 2);
  write_be(h.data() + kMethodAt, method, 2);
  write_be(h.data() + kRequestIdAt, request_id, 8);
  write_be(h.data() + kBodyLengthAt, body_length, 4);
  return h;
}

size_t encode_rpc_head(const RpcFrame& frame, char* out) {
  const bool budget = frame.has_budget();
  const size_t extra = budget ? kRpcBudgetSize : 0;
  RpcHeaderBytes h = encode_rpc_header(frame.type, frame.flags, frame.method,
                                       frame.request_id,
                                       static_cast<uint32_t>(frame.body.size() + extra));
  std::memcpy(out, h.data(), h.size());
  if (budget) write_be(out + kRpcHeaderSize, frame.budget_ms, kRpcBudgetSize);
  return kRpcHeaderSize + extra;
}

Decoded RpcFrameCodec::decode(std::string_view in, RpcFrame& frame) const {
  // The fixed fields are checked as soon as their bytes arrive, so input that is not this
  // protocol at all (a text client) is refused without waiting for a whole header.
  const size_t have = in.size();
  if (have > kMagicAt && byte_at(in, kMagicAt) != (kRpcMagic >> 8)) {
    return Decoded::fail(kRpcErrorBadMagic);
  }
  if (have > kMagicAt + 1 && byte_at(in, kMagicAt + 1) != (kRpcMagic & 0xFF)) {
    return Decoded::fail(kRpcErrorBadMagic);
  }
  if (have > kVersionAt && byte_at(in, kVersionAt) != kRpcVersion) {
    return Decoded::fail(kRpcErrorBadVersion);
  }
  if (have > kTypeAt && byte_at(in, kTypeAt) > kMaxType) {
    return Decoded::fail(kRpcErrorBadType);
  }
  // Once the checked bytes are in, nothing can change before the whole header is.
  if (have < kRpcHeaderSize) return Decoded::need_more(0, have > kTypeAt ? kRpcHeaderSize : 0);

  // Limits come from the header alone: an oversized frame fails before its body is read, and
  // so does a budget flag with no room for the budget (the peer may never send those bytes).
  const auto body_length = static_cast<uint32_t>(read_be(in, kBodyLengthAt, 4));
  if (body_length < options_.min_body) return Decoded::fail(kRpcErrorBodyTooSmall);
  if (body_length > options_.max_body) return Decoded::fail(kRpcErrorBodyTooLarge);
  const auto flags = static_cast<uint16_t>(read_be(in, kFlagsAt, 2));
  const bool has_budget = (flags & kRpcFlagBudget) != 0;
  if (has_budget && body_length < kRpcBudgetSize) return Decoded::fail(kRpcErrorShortBudget);

  // 64-bit arithmetic: header + a 4 GiB body must not wrap a 32-bit size_t.
  const uint64_t total = uint64_t{kRpcHeaderSize} + body_length;
  if (have < total) return Decoded::need_more(0, static_cast<size_t>(total));

  size_t body_at = kRpcHeaderSize;
  uint32_t budget_ms = 0;
  if (has_budget) {
    budget_ms = static_cast<uint32_t>(read_be(in, kRpcHeaderSize, kRpcBudgetSize));
    body_at += kRpcBudgetSize;
  }
  frame.type = static_cast<RpcType>(byte_at(in, kTypeAt));
  frame.flags = flags;
  frame.method = static_cast<uint16_t>(read_be(in, kMethodAt, 2));
  frame.request_id = read_be(in, kRequestIdAt, 8);
  frame.budget_ms = budget_ms;
  frame.body = in.substr(body_at, static_cast<size_t>(total) - body_at);
  return Decoded::frame(static_cast<size_t>(total));
}

Status RpcFrameCodec::check_encodable(const RpcFrame& frame) const {
  if (static_cast<uint8_t>(frame.type) > kMaxType) {
    return Status::invalid("rpc encode: unknown frame type");
  }
  const uint64_t length =
      uint64_t{frame.body.size()} + (frame.has_budget() ? kRpcBudgetSize : 0);
  if (length > options_.max_body) {
    return Status::invalid("rpc encode: body over max_body");
  }
  if (length < options_.min_body) {
    return Status::invalid("rpc encode: body below min_body");
  }
  return Status::ok();
}

}  // namespace ringnet::proto
