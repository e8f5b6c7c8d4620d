// SPDX-License-Identifier: MIT
/// @file
/// FixedLengthCodec: every frame is exactly frame_length bytes; no header, no delimiter.
///
///   wire:  [frame_length bytes][frame_length bytes]...
///
/// A partial frame asks for the rest (Decoded::need), so the adapter waits without
/// decoding again. frame_length 0 is invalid (it would frame nothing forever): validate() reports it and
/// decode fails with the same reason rather than looping on empty frames.
#pragma once

#include <cstddef>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Options of FixedLengthCodec.
struct FixedLengthOptions {
  size_t frame_length = 0;  ///< must be > 0
};

/// Codec for frames of exactly frame_length bytes (see the file comment).
/// Threads: decode and encode are const and stateless, so one codec object may be shared by every
/// connection on every loop.
class RINGNET_PROTO_EXPORT FixedLengthCodec {
 public:
  using Frame = std::string_view;  ///< frame_length bytes, a view into the input
  using Options = FixedLengthOptions;  ///< see FixedLengthOptions

  FixedLengthCodec() = default;
  /// A codec with `options`; see validate() for invalid ones.
  explicit FixedLengthCodec(Options options) : options_(options) {}

  /// Error ("fixed-length codec: frame_length is 0") when frame_length is 0, else ok.
  static Status validate(const Options& options);

  /// See codec.h. Fails only with "fixed-length codec: frame_length is 0".
  Decoded decode(std::string_view in, Frame& frame) const;

  /// Writes `frame` unchanged; an error (nothing written) unless it is frame_length bytes.
  template <ByteSink S>
  Status encode(std::string_view frame, S& sink) const {
    if (Status s = check_encodable(frame); !s) return s;
    return sink.write(frame);
  }

  /// The options this codec was built with.
  const Options& options() const { return options_; }

 private:
  Status check_encodable(std::string_view frame) const;

  Options options_;
};

static_assert(Codec<FixedLengthCodec>);

}  // namespace ringnet::proto
