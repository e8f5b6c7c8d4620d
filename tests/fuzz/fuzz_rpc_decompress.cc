// SPDX-License-Identifier: MIT
// Fuzz target for rpc_decompress (rpc_compression.h). The first input byte is the frame's
// compression bits, the rest the body; decompressed with a 1 MiB limit. Aborts on any
// broken invariant:
//   - a success has bits 1 or 2 and out.size() == the declared length <= the limit;
//   - a refusal is kInvalidArgument or kResourceExhausted, with a message and `out` empty;
//     kResourceExhausted exactly when the bits are known, the length field is there and it
//     declares more than the limit;
//   - what decompresses re-compresses and decompresses to the same bytes, for both codecs;
//   - the body itself, compressed by each codec, decompresses back to itself (or is sent
//     raw, `out` untouched).
#include <ringnet/proto/rpc_compression.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using ringnet::proto::RpcCode;
using ringnet::proto::RpcCompression;
using ringnet::proto::RpcStatus;

constexpr size_t kMaxSize = 1024 * 1024;

void require(bool ok) {
  if (!ok) std::abort();
}

uint32_t declared_length(std::string_view body) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(body[i]);
  return v;
}

// `plain` through rpc_compress (threshold 0) and back with each codec.
void check_round_trip(std::string_view plain) {
  for (RpcCompression codec : {RpcCompression::kZstd, RpcCompression::kLz4}) {
    std::string packed = "untouched";
    const RpcCompression used = ringnet::proto::rpc_compress(
        plain, {.codec = codec, .threshold = 0}, packed);
    if (used == RpcCompression::kNone) {
      require(packed == "untouched");
      continue;
    }
    require(used == codec && packed.size() < plain.size());
    require(packed.size() >= 4 && declared_length(packed) == plain.size());
    std::string back;
    const RpcStatus s =
        ringnet::proto::rpc_decompress(static_cast<uint8_t>(codec), packed, plain.size(), back);
    require(s.is_ok() && back == plain);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t bits = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::string out = "stale";
  const RpcStatus s = ringnet::proto::rpc_decompress(bits, body, kMaxSize, out);
  const bool known = bits == 1 || bits == 2;
  const bool too_big = known && body.size() >= 4 && declared_length(body) > kMaxSize;
  if (s.is_ok()) {
    require(known && body.size() >= 4);
    require(out.size() == declared_length(body) && out.size() <= kMaxSize);
    check_round_trip(out);
  } else {
    require(s.code == RpcCode::kInvalidArgument || s.code == RpcCode::kResourceExhausted);
    require((s.code == RpcCode::kResourceExhausted) == too_big);
    require(!s.message.empty() && out.empty());
  }
  check_round_trip(body);
  return 0;
}
