// SPDX-License-Identifier: MIT
// Fuzz target for RpcFrameCodec::decode. Consumes frames from the input until it needs
// more or fails, under two codecs (default limits, and tight ones so the limit paths are
// reached), and aborts on any broken invariant:
//   - a frame consumes header + body_length bytes, no more than are left, and its body is
//     a view into the input right after the header (and after the 4-byte budget field
//     when flags bit 1 is set, whose value is then budget_ms; 0 without the flag);
//   - re-encoding a frame gives back exactly the bytes it was decoded from, and decoding
//     those gives the same frame (the format has one encoding per frame);
//   - every prefix of a decoded frame needs more (checked for short frames);
//   - an error carries a non-empty reason and consumes nothing.
#include <ringnet/proto/rpc_frame.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "resume_check.h"

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::RpcFrame;
using ringnet::proto::RpcFrameCodec;
using ringnet::proto::RpcFrameOptions;

void require(bool ok) {
  if (!ok) std::abort();
}

void check_frame(const RpcFrameCodec& codec, std::string_view in, const Decoded& d,
                 const RpcFrame& frame) {
  using ringnet::proto::kRpcHeaderSize;
  // body_length counts the budget field; decode takes it out of the body.
  const size_t budget = frame.has_budget() ? ringnet::proto::kRpcBudgetSize : 0;
  const size_t body_length = budget + frame.body.size();
  require(d.consumed <= in.size());
  require(d.consumed == kRpcHeaderSize + body_length);
  require(frame.body.data() == in.data() + kRpcHeaderSize + budget);
  require(body_length >= codec.options().min_body);
  require(body_length <= codec.options().max_body);
  uint32_t budget_ms = 0;
  for (size_t i = 0; i < budget; ++i) {
    budget_ms = (budget_ms << 8) | static_cast<uint8_t>(in[kRpcHeaderSize + i]);
  }
  require(frame.budget_ms == budget_ms);

  std::string again;
  ringnet::proto::StringSink sink{again};
  require(codec.encode(frame, sink).is_ok());
  require(again == in.substr(0, d.consumed));

  RpcFrame twice;
  Decoded d2 = codec.decode(again, twice);
  require(d2.kind == Decoded::kFrame && d2.consumed == again.size() && twice == frame);

  if (d.consumed <= 64) {
    for (size_t cut = 0; cut < d.consumed; ++cut) {
      RpcFrame partial;
      require(codec.decode(in.substr(0, cut), partial).kind == Decoded::kNeedMore);
    }
  }
}

void consume_all(const RpcFrameCodec& codec, std::string_view in) {
  for (;;) {
    RpcFrame frame;
    Decoded d = codec.decode(in, frame);
    if (d.kind == Decoded::kNeedMore) {
      require(d.consumed == 0 && d.hint == 0);
      return;
    }
    if (d.kind == Decoded::kError) {
      require(d.consumed == 0 && d.error.reason != nullptr && d.error.reason[0] != '\0');
      return;
    }
    require(d.kind == Decoded::kFrame && d.consumed > 0);
    check_frame(codec, in, d, frame);
    in.remove_prefix(d.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  static const RpcFrameCodec default_codec;
  static const RpcFrameCodec tight_codec(RpcFrameOptions{.min_body = 1, .max_body = 64});
  consume_all(default_codec, in);
  consume_all(tight_codec, in);
  for (const RpcFrameCodec* codec : {&default_codec, &tight_codec}) {
    ringnet::fuzz::check_resume(*codec, in, size,
                                [](const RpcFrame& a, const RpcFrame& b) { return a == b; });
  }
  return 0;
}
