// SPDX-License-Identifier: MIT
// RPC body compression: see rpc_compression.h for the format and the refusals.
#include "ringnet/proto/rpc_compression.h"

#include <lz4.h>
#include <zstd.h>

#include <climits>
#include <memory>

namespace ringnet::proto {
namespace {

constexpr size_t kLengthSize = 4;  // the u32 uncompressed length before the codec output

void write_u32(char* out, uint32_t v) {
  for (size_t i = kLengthSize; i-- > 0;) {
    out[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

uint32_t read_u32(std::string_view in) {
  uint32_t v = 0;
  for (size_t i = 0; i < kLengthSize; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

// One context per thread, made on first use: zstd's contexts hold hundreds of KiB of
// tables, too much to allocate per call, and a context may not be shared between threads.
struct ZstdContexts {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> c{nullptr, ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d{nullptr, ZSTD_freeDCtx};
};

ZstdContexts& zstd_contexts() {
  thread_local ZstdContexts contexts;
  return contexts;
}

ZSTD_CCtx* zstd_cctx() {
  auto& c = zstd_contexts().c;
  if (!c) c.reset(ZSTD_createCCtx());
  return c.get();  // nullptr when out of memory
}

ZSTD_DCtx* zstd_dctx() {
  auto& d = zstd_contexts().d;
  if (!d) d.reset(ZSTD_createDCtx());
  return d.get();
}

// The codec's output for `body` at `dst` (capacity `cap`): its size, or 0 when it failed.
size_t zstd_compress(std::string_view body, int level, char* dst, size_t cap) {
  ZSTD_CCtx* cctx = zstd_cctx();
  if (cctx == nullptr) return 0;
  const size_t n = ZSTD_compressCCtx(cctx, dst, cap, body.data(), body.size(), level);
  return ZSTD_isError(n) ? 0 : n;
}

size_t lz4_compress(std::string_view body, char* dst, size_t cap) {
  const int n = LZ4_compress_default(body.data(), dst, static_cast<int>(body.size()),
                                     static_cast<int>(cap));
  return n > 0 ? static_cast<size_t>(n) : 0;
}

RpcStatus invalid(std::string_view message) {
  return RpcStatus::make(RpcCode::kInvalidArgument, message);
}

// Inflates `payload` into `out`, already sized to the declared length.
RpcStatus zstd_inflate(std::string_view payload, std::string& out) {
  // Exactly one frame, and its header (our sender always writes the content size) agrees
  // with the declared length: a lie is refused before any block is decoded.
  if (ZSTD_findFrameCompressedSize(payload.data(), payload.size()) != payload.size()) {
    return invalid("zstd: payload is not exactly one zstd frame");
  }
  const unsigned long long content = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != out.size()) {
    return invalid("zstd: frame content size differs from the declared length");
  }
  ZSTD_DCtx* dctx = zstd_dctx();
  if (dctx == nullptr) return RpcStatus::make(RpcCode::kResourceExhausted, "zstd: out of memory");
  // A buffer of exactly the declared size: zstd cannot write past it, whatever the frame says.
  const size_t n = ZSTD_decompressDCtx(dctx, out.data(), out.size(), payload.data(),
                                       payload.size());
  if (ZSTD_isError(n) || n != out.size()) {
    return invalid("zstd: payload does not inflate to the declared length");
  }
  return RpcStatus::ok();
}

RpcStatus lz4_inflate(std::string_view payload, std::string& out) {
  // lz4 counts in int; larger sizes cannot come from LZ4_compress_default anyway.
  if (payload.size() > INT_MAX || out.size() > LZ4_MAX_INPUT_SIZE) {
    return invalid("lz4: payload does not inflate to the declared length");
  }
  // dstCapacity = the declared length: the block cannot write more, and must fill it.
  const int n = LZ4_decompress_safe(payload.data(), out.data(), static_cast<int>(payload.size()),
                                    static_cast<int>(out.size()));
  if (n < 0 || static_cast<size_t>(n) != out.size()) {
    return invalid("lz4: payload does not inflate to the declared length");
  }
  return RpcStatus::ok();
}

}  // namespace

const char* rpc_compression_name(RpcCompression c) {
  switch (c) {
    case RpcCompression::kNone: return "none";
    case RpcCompression::kZstd: return "zstd";
    case RpcCompression::kLz4: return "lz4";
  }
  return "unknown";
}

RpcCompression rpc_compress(std::string_view body, const RpcCompressionOptions& options,
                            std::string& out) {
  const RpcCompression codec = options.codec;
  if (codec != RpcCompression::kZstd && codec != RpcCompression::kLz4) return RpcCompression::kNone;
  if (body.size() < options.threshold || body.size() > UINT32_MAX) return RpcCompression::kNone;
  if (codec == RpcCompression::kLz4 && body.size() > LZ4_MAX_INPUT_SIZE) {
    return RpcCompression::kNone;
  }
  // Compressed into a buffer of our own, so that `out` stays untouched when it does not pay.
  const size_t bound = codec == RpcCompression::kZstd
                           ? ZSTD_compressBound(body.size())
                           : static_cast<size_t>(LZ4_compressBound(static_cast<int>(body.size())));
  std::string buf(kLengthSize + bound, '\0');
  char* dst = buf.data() + kLengthSize;
  const size_t n = codec == RpcCompression::kZstd
                       ? zstd_compress(body, options.zstd_level, dst, bound)
                       : lz4_compress(body, dst, bound);
  if (n == 0 || kLengthSize + n >= body.size()) return RpcCompression::kNone;
  write_u32(buf.data(), static_cast<uint32_t>(body.size()));
  buf.resize(kLengthSize + n);
  out.swap(buf);
  return codec;
}

RpcStatus rpc_decompress(uint8_t bits, std::string_view body, size_t max_size,
                         std::string& out) {
  out.clear();
  if (bits == static_cast<uint8_t>(RpcCompression::kNone)) {
    return invalid("compression bits 0: the body is not compressed");
  }
  if (bits != static_cast<uint8_t>(RpcCompression::kZstd) &&
      bits != static_cast<uint8_t>(RpcCompression::kLz4)) {
    return invalid("unknown compression (bits " + std::to_string(bits) + ")");
  }
  if (body.size() < kLengthSize) {
    return invalid("compressed body shorter than its 4-byte length");
  }
  // Checked before anything is allocated or decoded: a small body may claim gigabytes.
  const uint32_t declared = read_u32(body);
  if (declared > max_size) {
    return RpcStatus::make(RpcCode::kResourceExhausted,
                           "declared uncompressed length " + std::to_string(declared) +
                               " over the limit of " + std::to_string(max_size));
  }
  const std::string_view payload = body.substr(kLengthSize);
  if (payload.empty()) return invalid("compressed body has no payload after its length");
  out.resize(declared);
  RpcStatus s = bits == static_cast<uint8_t>(RpcCompression::kZstd) ? zstd_inflate(payload, out)
                                                                     : lz4_inflate(payload, out);
  if (!s) out.clear();
  return s;
}

}  // namespace ringnet::proto
