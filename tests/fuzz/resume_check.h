// SPDX-License-Identifier: MIT
// Shared by the fuzz targets: decoding a stream in pieces the way FramedHandler does
// (read_frames: one State carried across arrivals, the bytes moved between them) must give,
// at every call, exactly what a fresh decode of the same bytes gives; and Decoded::need
// must keep its promise (fewer bytes than it says: need-more again, same hint).
// scripts/fuzz builds with a low RINGNET_CHECKPOINT_MIN so small inputs keep checkpoints.
#pragma once

#include <ringnet/proto/frame_reader.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace ringnet::fuzz {

inline void require(bool ok) {
  if (!ok) std::abort();
}

inline bool same_decoded(const proto::Decoded& a, const proto::Decoded& b) {
  return a.kind == b.kind && a.consumed == b.consumed && a.hint == b.hint && a.need == b.need &&
         a.error.status == b.error.status && std::strcmp(a.error.reason, b.error.reason) == 0;
}

// Feeds `in` in pieces of 1..48 bytes (sizes drawn from `seed`); same_frame(a, b) compares
// two frames of the codec.
template <proto::Codec C, typename Same>
void check_resume(const C& codec, std::string_view in, uint64_t seed, Same&& same_frame) {
  using proto::Decoded;
  proto::DecodeState<C> state;
  std::string buf;  // the unread bytes
  size_t need = 0;
  uint8_t hint = 0;
  for (size_t at = 0; at < in.size();) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    const size_t n = std::min<size_t>(1 + (seed >> 33) % 48, in.size() - at);
    std::string moved = buf;  // a new block: offsets survive, pointers would not
    moved.append(in.substr(at, n));
    at += n;
    std::fill(buf.begin(), buf.end(), '\xAA');
    buf.swap(moved);
    for (;;) {
      typename C::Frame resumed{}, fresh{};
      const Decoded a = proto::decode_resuming(codec, buf, resumed, state);
      const Decoded b = codec.decode(buf, fresh);
      require(same_decoded(a, b));
      if (buf.size() < need) require(a.kind == Decoded::kNeedMore && a.hint == hint);
      if (a.kind == Decoded::kError) return;
      if (a.kind == Decoded::kNeedMore) {
        require(state.resume_at() <= buf.size());
        require(a.need == 0 || a.need > buf.size());
        need = a.need;
        hint = a.hint;
        break;
      }
      require(same_frame(resumed, fresh));
      require(state.resume_at() == 0);
      need = 0;
      buf.erase(0, a.consumed);
      if (buf.empty()) break;
    }
  }
}

}  // namespace ringnet::fuzz
