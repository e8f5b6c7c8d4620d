// SPDX-License-Identifier: MIT
// RPC body compression (rpc_compression.h): round trips of zstd and lz4 over sizes around
// the threshold up to 1 MiB, compressible and random; the wire format read back with
// libzstd and liblz4 themselves; compression bombs refused from the declared length before
// any big allocation; lying lengths, truncated and garbage payloads, unknown bits.
#include <gtest/gtest.h>
#include <lz4.h>
#include <ringnet/proto/rpc_compression.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "test_support.h"

// Global operator new, replaced to record the largest single request while a test asks:
// a refused bomb must not allocate its declared size. std::string allocates through it.
namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<size_t> g_largest_allocation{0};
}  // namespace

// Out of line, so that g++ does not see free() meet operator new's pointer at a call site
// (-Wmismatched-new-delete).
[[gnu::noinline]] void* operator new(size_t n) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
    while (n > seen && !g_largest_allocation.compare_exchange_weak(seen, n)) {
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace ringnet::proto {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kThreshold = RpcCompressionOptions{}.threshold;

// Text that compresses well but not trivially: numbered lines with varying fields.
std::string compressible(size_t size) {
  std::string out;
  out.reserve(size + 64);
  for (uint64_t i = 0; out.size() < size; ++i) {
    out += "id=" + std::to_string(i * 7919 % 100000) + " user=u" + std::to_string(i % 97) +
           " status=" + (i % 3 == 0 ? "active" : "idle") + "\n";
  }
  out.resize(size);
  return out;
}

std::string big_endian_u32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

uint32_t declared_length(std::string_view body) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(body[i]);
  return v;
}

// `body` with its length field replaced by `declared`.
std::string relabel(std::string_view body, uint32_t declared) {
  return big_endian_u32(declared) + std::string(body.substr(4));
}

uint8_t bits_of(RpcCompression c) { return static_cast<uint8_t>(c); }

// Compresses `body` (which must pay off) with `codec`, threshold 0.
std::string compress_or_fail(RpcCompression codec, std::string_view body) {
  std::string out;
  const RpcCompression used = rpc_compress(body, {.codec = codec, .threshold = 0}, out);
  EXPECT_EQ(used, codec) << body.size() << " bytes were not compressed";
  return out;
}

// The codec's raw output for an empty input (what a sender would write for a 0-byte body).
std::string codec_output_of_empty(RpcCompression codec) {
  std::string out(64, '\0');
  if (codec == RpcCompression::kZstd) {
    const size_t n = ZSTD_compress(out.data(), out.size(), "", 0, 1);
    EXPECT_FALSE(ZSTD_isError(n));
    out.resize(ZSTD_isError(n) ? 0 : n);
  } else {
    const int n = LZ4_compress_default("", out.data(), 0, static_cast<int>(out.size()));
    EXPECT_GT(n, 0);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  return out;
}

// The refusal code of `body`, checking what every refusal promises: a message, `out` empty.
testing::AssertionResult refused_with(RpcCode want, uint8_t bits, std::string_view body,
                                      size_t max_size = 10 * kMiB) {
  std::string out = "stale contents";
  const RpcStatus s = rpc_decompress(bits, body, max_size, out);
  if (s.code != want) {
    return testing::AssertionFailure() << "got " << s.to_string() << ", want "
                                       << rpc_code_name(want) << " (body of " << body.size()
                                       << " bytes, bits " << int{bits} << ")";
  }
  if (s.message.empty()) return testing::AssertionFailure() << "refusal without a message";
  if (!out.empty()) return testing::AssertionFailure() << "out kept " << out.size() << " bytes";
  return testing::AssertionSuccess() << s.message;
}

// ---- names and flags ----------------------------------------------------------------------

TEST(RpcCompressionNames, EachCodecAndUnknown) {
  EXPECT_STREQ(rpc_compression_name(RpcCompression::kNone), "none");
  EXPECT_STREQ(rpc_compression_name(RpcCompression::kZstd), "zstd");
  EXPECT_STREQ(rpc_compression_name(RpcCompression::kLz4), "lz4");
  EXPECT_STREQ(rpc_compression_name(static_cast<RpcCompression>(3)), "unknown");
}

// The codec goes to flags bits 2-3 and nowhere else; RpcFrame reads it back.
TEST(RpcCompressionFlags, BitsTwoAndThreeOnly) {
  EXPECT_EQ(rpc_flags_with_compression(0x0000, RpcCompression::kZstd), 0x0004);
  EXPECT_EQ(rpc_flags_with_compression(0x0000, RpcCompression::kLz4), 0x0008);
  EXPECT_EQ(rpc_flags_with_compression(0xFFFF, RpcCompression::kNone), 0xFFF3);
  EXPECT_EQ(rpc_flags_with_compression(0x800B, RpcCompression::kZstd), 0x8007);
  RpcFrame f;
  f.flags = rpc_flags_with_compression(kRpcFlagIdempotent | kRpcFlagBudget, RpcCompression::kLz4);
  EXPECT_EQ(f.compression_bits(), bits_of(RpcCompression::kLz4));
  EXPECT_TRUE(f.idempotent());
  EXPECT_TRUE(f.has_budget());
}

// ---- round trips, per codec -----------------------------------------------------------------

class RpcCompressionCodec : public testing::TestWithParam<RpcCompression> {
 protected:
  RpcCompression codec() const { return GetParam(); }
  uint8_t bits() const { return bits_of(GetParam()); }
};

std::string codec_param_name(const testing::TestParamInfo<RpcCompression>& info) {
  return rpc_compression_name(info.param);
}

const std::vector<size_t>& round_trip_sizes() {
  static const std::vector<size_t> sizes{0, 1, kThreshold - 1, kThreshold, 64 * kKiB, kMiB};
  return sizes;
}

// Compressible bodies from the threshold up are compressed, start with their length and
// decompress to themselves; shorter ones are sent raw with `out` untouched.
TEST_P(RpcCompressionCodec, CompressibleRoundTrip) {
  for (size_t size : round_trip_sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string body = compressible(size);
    std::string out = "untouched";
    const RpcCompression used = rpc_compress(body, {.codec = codec()}, out);
    if (size < kThreshold) {
      EXPECT_EQ(used, RpcCompression::kNone);
      EXPECT_EQ(out, "untouched");
      continue;
    }
    ASSERT_EQ(used, codec());
    ASSERT_GE(out.size(), 4u);
    EXPECT_LT(out.size(), body.size());
    EXPECT_EQ(declared_length(out), size);

    std::string back = "stale";
    const RpcStatus s = rpc_decompress(bits(), out, size, back);  // max_size == size: fits
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_TRUE(test::same_bytes(body, back));
  }
}

// Random bytes do not shrink: sent raw at every size, `out` untouched.
TEST_P(RpcCompressionCodec, RandomDataIsSentRaw) {
  for (size_t size : round_trip_sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string body = test::make_payload(size, size + 1);
    std::string out = "untouched";
    EXPECT_EQ(rpc_compress(body, {.codec = codec(), .threshold = 0}, out), RpcCompression::kNone);
    EXPECT_EQ(out, "untouched");
  }
}

// The threshold is inclusive, and 0 lets any body that shrinks be compressed.
TEST_P(RpcCompressionCodec, ThresholdIsInclusive) {
  const std::string body = compressible(300);
  std::string out;
  EXPECT_EQ(rpc_compress(body, {.codec = codec(), .threshold = 301}, out), RpcCompression::kNone);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(rpc_compress(body, {.codec = codec(), .threshold = 300}, out), codec());
  EXPECT_FALSE(out.empty());
  const std::string small(64, 'a');
  EXPECT_EQ(rpc_compress(small, {.codec = codec(), .threshold = 0}, out), codec());
  std::string back;
  ASSERT_TRUE(rpc_decompress(bits(), out, 64, back).is_ok());
  EXPECT_EQ(back, small);
}

// The payload after the length is the codec's own format, readable by libzstd / liblz4.
TEST_P(RpcCompressionCodec, PayloadIsTheCodecsFormat) {
  const std::string body = compressible(64 * kKiB);
  const std::string wire = compress_or_fail(codec(), body);
  ASSERT_GT(wire.size(), 4u);
  const std::string_view payload = std::string_view(wire).substr(4);
  std::string plain(body.size(), '\0');
  if (codec() == RpcCompression::kZstd) {
    EXPECT_EQ(payload.substr(0, 4), "\x28\xB5\x2F\xFD");  // a zstd frame's magic
    const size_t n = ZSTD_decompress(plain.data(), plain.size(), payload.data(), payload.size());
    ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
    EXPECT_EQ(n, body.size());
  } else {
    const int n = LZ4_decompress_safe(payload.data(), plain.data(),
                                      static_cast<int>(payload.size()),
                                      static_cast<int>(plain.size()));
    EXPECT_EQ(n, static_cast<int>(body.size()));
  }
  EXPECT_TRUE(test::same_bytes(body, plain));
}

// Decompressing replaces what `out` held.
TEST_P(RpcCompressionCodec, DecompressReplacesOut) {
  const std::string body = compressible(4 * kKiB);
  const std::string wire = compress_or_fail(codec(), body);
  std::string out(10 * kKiB, 'x');
  ASSERT_TRUE(rpc_decompress(bits(), wire, kMiB, out).is_ok());
  EXPECT_TRUE(test::same_bytes(body, out));
}

// kNone never compresses, however compressible the body.
TEST(RpcCompressionOptionsTest, NoneNeverCompresses) {
  std::string out = "untouched";
  EXPECT_EQ(rpc_compress(compressible(kMiB), {.codec = RpcCompression::kNone, .threshold = 0},
                         out),
            RpcCompression::kNone);
  EXPECT_EQ(rpc_compress(std::string(kMiB, '\0'), {.codec = static_cast<RpcCompression>(3),
                                                   .threshold = 0},
                         out),
            RpcCompression::kNone);
  EXPECT_EQ(out, "untouched");
}

// zstd_level reaches zstd: its strongest level beats a fast negative one on text.
TEST(RpcCompressionOptionsTest, ZstdLevelIsUsed) {
  const std::string body = compressible(256 * kKiB);
  std::string fast;
  std::string strong;
  ASSERT_EQ(rpc_compress(body, {.codec = RpcCompression::kZstd, .zstd_level = -5}, fast),
            RpcCompression::kZstd);
  ASSERT_EQ(rpc_compress(body, {.codec = RpcCompression::kZstd, .zstd_level = 19}, strong),
            RpcCompression::kZstd);
  EXPECT_LT(strong.size(), fast.size());
  std::string back;
  ASSERT_TRUE(rpc_decompress(1, strong, body.size(), back).is_ok());
  EXPECT_EQ(back, body);
}

// ---- compression bombs ------------------------------------------------------------------------

constexpr size_t kBombSize = 100 * kMiB;

// 100 MiB of zeros, compressed once per codec; the declared length is honest.
const std::string& bomb(RpcCompression codec) {
  static const std::string zstd_bomb = compress_or_fail(RpcCompression::kZstd,
                                                        std::string(kBombSize, '\0'));
  static const std::string lz4_bomb = compress_or_fail(RpcCompression::kLz4,
                                                       std::string(kBombSize, '\0'));
  return codec == RpcCompression::kZstd ? zstd_bomb : lz4_bomb;
}

// Refused from its length field alone: kResourceExhausted, and no allocation anywhere near
// the declared size (the largest one during the call is recorded by operator new above).
TEST_P(RpcCompressionCodec, BombRefusedBeforeAllocating) {
  const std::string& wire = bomb(codec());
  ASSERT_EQ(declared_length(wire), kBombSize);
  EXPECT_LT(wire.size(), kMiB);  // it is a bomb: small on the wire

  std::string out;
  g_largest_allocation = 0;
  g_track_allocations = true;
  const RpcStatus s = rpc_decompress(bits(), wire, 10 * kMiB, out);
  g_track_allocations = false;
  EXPECT_EQ(s.code, RpcCode::kResourceExhausted) << s.to_string();
  EXPECT_FALSE(s.message.empty());
  EXPECT_TRUE(out.empty());
  EXPECT_LT(g_largest_allocation.load(), 64 * kKiB);
}

// The same bomb inflates to its 100 MiB of zeros when the limit allows: the refusal above
// is the limit's doing, not a broken payload.
TEST_P(RpcCompressionCodec, BombInflatesUnderAHigherLimit) {
  std::string out;
  const RpcStatus s = rpc_decompress(bits(), bomb(codec()), kBombSize, out);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  ASSERT_EQ(out.size(), kBombSize);
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](char c) { return c == '\0'; }));
}

// max_size is inclusive: a body of exactly max_size passes, one byte over is refused.
TEST_P(RpcCompressionCodec, MaxSizeIsInclusive) {
  const std::string body = compressible(8 * kKiB);
  const std::string wire = compress_or_fail(codec(), body);
  std::string out;
  EXPECT_TRUE(rpc_decompress(bits(), wire, body.size(), out).is_ok());
  EXPECT_TRUE(refused_with(RpcCode::kResourceExhausted, bits(), wire, body.size() - 1));
  EXPECT_TRUE(refused_with(RpcCode::kResourceExhausted, bits(), relabel(wire, 0xFFFFFFFF)));
}

// ---- malformed bodies --------------------------------------------------------------------------

// A declared length that is not the payload's real size, smaller or larger, is refused.
TEST_P(RpcCompressionCodec, LyingDeclaredLengthRefused) {
  const std::string body = compressible(16 * kKiB);
  const std::string wire = compress_or_fail(codec(), body);
  const auto real = static_cast<uint32_t>(body.size());
  for (uint32_t lie : {real - 1, real / 2, 0u, real + 1, real * 2}) {
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(), relabel(wire, lie)))
        << "declared " << lie << " for " << real;
  }
  std::string out;
  EXPECT_TRUE(rpc_decompress(bits(), relabel(wire, real), kMiB, out).is_ok());  // the control
}

// Bodies cut short: below the length field, just the length, and payloads missing bytes.
TEST_P(RpcCompressionCodec, TruncatedBodiesRefused) {
  const std::string wire = compress_or_fail(codec(), compressible(16 * kKiB));
  for (size_t keep = 0; keep < 4; ++keep) {
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(), wire.substr(0, keep)))
        << keep << " bytes";
  }
  for (size_t keep : {size_t{4}, size_t{5}, size_t{12}, wire.size() / 2, wire.size() - 2,
                      wire.size() - 1}) {
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(), wire.substr(0, keep)))
        << keep << " of " << wire.size() << " bytes";
  }
}

// Random payloads behind a plausible length, a valid payload with a byte after it, and the
// other codec's payload are refused.
TEST_P(RpcCompressionCodec, GarbagePayloadsRefused) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    const std::string payload = test::make_payload(1 + seed * 13, seed);
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(),
                             big_endian_u32(static_cast<uint32_t>(seed * 100)) + payload))
        << "seed " << seed;
  }
  const std::string body = compressible(4 * kKiB);
  EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(),
                           compress_or_fail(codec(), body) + '\0'));
  const RpcCompression other =
      codec() == RpcCompression::kZstd ? RpcCompression::kLz4 : RpcCompression::kZstd;
  EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(), compress_or_fail(other, body)));
}

// Declared length 0: an empty payload is no codec output and is refused; the codec's real
// encoding of nothing inflates to an empty body.
TEST_P(RpcCompressionCodec, DeclaredZero) {
  EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits(), big_endian_u32(0)));
  const std::string empty_payload = codec_output_of_empty(codec());
  ASSERT_FALSE(empty_payload.empty());
  std::string out = "stale";
  const RpcStatus s = rpc_decompress(bits(), big_endian_u32(0) + empty_payload, kMiB, out);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_TRUE(out.empty());
}

// A zstd payload is one frame: more frames that together inflate to the declared length
// are refused, though libzstd alone accepts them. The first frame may even carry the
// whole declared length (an empty frame after it).
TEST(RpcCompressionZstd, MoreThanOneFrameRefused) {
  const std::string first = compressible(4 * kKiB);
  const std::string second = compressible(2 * kKiB);
  const std::string first_frame = compress_or_fail(RpcCompression::kZstd, first).substr(4);
  const std::string two = first_frame +
                          compress_or_fail(RpcCompression::kZstd, second).substr(4);
  const std::string with_empty = first_frame + codec_output_of_empty(RpcCompression::kZstd);
  for (const auto& [payload, total] : {std::pair{two, first.size() + second.size()},
                                       std::pair{with_empty, first.size()}}) {
    std::string plain(total, '\0');
    EXPECT_EQ(ZSTD_decompress(plain.data(), plain.size(), payload.data(), payload.size()),
              total);
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits_of(RpcCompression::kZstd),
                             big_endian_u32(static_cast<uint32_t>(total)) + payload))
        << total;
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, RpcCompressionCodec,
                         testing::Values(RpcCompression::kZstd, RpcCompression::kLz4),
                         codec_param_name);

// ---- the compression bits -----------------------------------------------------------------------

// 0 (not compressed) and 3 (reserved) are refused whatever the body; so is any value past
// the two bits.
TEST(RpcCompressionBits, NoneAndReservedRefused) {
  const std::string zstd_wire = compress_or_fail(RpcCompression::kZstd, compressible(4 * kKiB));
  for (uint8_t bits : {0, 3, 4, 255}) {
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits, zstd_wire)) << int{bits};
    EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, bits, "")) << int{bits};
  }
  // The bits are judged before the length: a bomb with bits 3 is malformed, not too big.
  EXPECT_TRUE(refused_with(RpcCode::kInvalidArgument, 3, bomb(RpcCompression::kZstd)));
}

}  // namespace
}  // namespace ringnet::proto
