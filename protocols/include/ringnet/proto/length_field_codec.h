// SPDX-License-Identifier: MIT
/// @file
/// LengthFieldCodec: frames announce their size in a length field, with the semantics of
/// Netty's LengthFieldBasedFrameDecoder.
///
///   wire:  [length_offset bytes][length field: length_size bytes][rest]
///           \____________________ frame_length bytes on the wire __________/
///
///   frame_length = field value + length_adjustment + length_offset + length_size
///
/// length_adjustment covers protocols whose field counts something other than "the bytes
/// after the field": -length_size when it counts the whole frame, +n when n more header
/// bytes follow the field. The decoded frame is the wire frame minus its first
/// bytes_to_strip bytes (strip length_offset + length_size to get only the body).
///
/// frame_length is checked against max_frame as soon as the length field has arrived, before
/// any of the body; then Decoded::need asks for the whole frame, so the adapter waits for it
/// without decoding again. Examples (Netty's documentation):
///   {.length_size = 2, .bytes_to_strip = 2}              00 0C "HELLO, WORLD" -> body
///   {.length_size = 2, .length_adjustment = -2}          00 0E "HELLO, WORLD" -> all 14
///   {.length_offset = 2, .length_size = 3}         CA FE 00 00 0C "HELLO, WORLD" -> all 17
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "ringnet/config.h"
#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Options of LengthFieldCodec (semantics of Netty's LengthFieldBasedFrameDecoder).
struct LengthFieldOptions {
  size_t length_offset = 0;        ///< bytes before the length field
  int length_size = 4;             ///< 1, 2, 3, 4 or 8
  bool big_endian = true;          ///< byte order of the length field
  int64_t length_adjustment = 0;   ///< added to the field value (see above)
  size_t bytes_to_strip = 0;       ///< dropped from the front of each decoded frame
  size_t max_frame = 10 * 1024 * 1024;  ///< whole wire frame, header included
};

/// Codec for frames that announce their size in a length field (see the file comment).
/// Threads: decode and encode are const and stateless, so one codec object may be shared by every
/// connection on every loop.
class RINGNET_PROTO_EXPORT LengthFieldCodec {
 public:
  using Frame = std::string_view;  ///< wire frame minus bytes_to_strip, a view into the input
  using Options = LengthFieldOptions;  ///< see LengthFieldOptions

  LengthFieldCodec() : LengthFieldCodec(Options{}) {}
  /// A codec with `options`; see validate() for invalid ones.
  explicit LengthFieldCodec(Options options)
      : options_(options), options_error_(check_options(options)) {}

  /// Error for options that can never decode a frame: length_size not in {1,2,3,4,8}, or a
  /// header (length_offset + length_size) that alone exceeds max_frame. A codec built from
  /// invalid options does not crash: decode and encode fail with the same reason.
  static Status validate(const Options& options);

  /// See codec.h. Errors: invalid options, length smaller than the header, length over
  /// max_frame, length overflowing 64 bits once adjusted, bytes_to_strip over the length.
  Decoded decode(std::string_view in, Frame& frame) const;

  /// Writes the length field (value = body.size() - length_adjustment, in the configured
  /// size and byte order) and then `body`. Needs length_offset == 0 (the codec does not know
  /// what the leading bytes would be). Errors (nothing written) when the value is negative
  /// or does not fit in the field, or the frame would exceed max_frame.
  template <ByteSink S>
  Status encode(std::string_view body, S& sink) const {
    char header[8];
    if (Status s = encode_header(body.size(), header); !s) return s;
    return write_parts(sink, std::string_view(header, static_cast<size_t>(options_.length_size)),
                       body);
  }

  /// The options this codec was built with.
  const Options& options() const { return options_; }

 private:
  // nullptr when the options are valid, else why not.
  static const char* check_options(const Options& options);
  // Fills header[0, length_size) for a body of body_size bytes.
  Status encode_header(size_t body_size, char* header) const;

  Options options_;
  const char* options_error_;
};

static_assert(Codec<LengthFieldCodec>);

}  // namespace ringnet::proto
