// SPDX-License-Identifier: MIT
/// @file
/// DelimiterCodec: frames end with a delimiter ("\n", "\r\n" or any non-empty byte string).
///
///   wire:  `l i n e 1 \r \n l i n e 2 \r \n ...`
///   frame: "line1" (strip_delimiter) or "line1\r\n" (keep it)
///
/// A line may hold any bytes except the delimiter itself. At most max_frame bytes may come
/// before the delimiter; once max_frame + delimiter size bytes are buffered with no
/// delimiter among them, no wait can help and decode fails. With a State (see codec.h) a
/// partial line is searched only past what earlier calls searched.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ringnet/config.h"
#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

/// Options of DelimiterCodec.
struct DelimiterOptions {
  std::string delimiter = "\n";  ///< must not be empty
  size_t max_frame = 64 * 1024;  ///< bytes allowed before the delimiter
  bool strip_delimiter = true;   ///< frames exclude the delimiter
};

/// Codec for frames that end with a delimiter (see the file comment).
/// Threads: decode and encode are const, so one codec object may be shared by every connection on
/// every loop; a State belongs to one connection and is used on that connection's loop thread.
class RINGNET_PROTO_EXPORT DelimiterCodec {
 public:
  using Frame = std::string_view;  ///< one line, a view into the decoded input
  using Options = DelimiterOptions;  ///< see DelimiterOptions

  /// How far a partial line has been searched: no delimiter starts before `searched`.
  class State {
   public:
    /// Bytes at the front of `in` already searched (0: none).
    size_t resume_at() const { return searched_; }

   private:
    friend class DelimiterCodec;
    size_t searched_ = 0;
  };

  DelimiterCodec() = default;
  /// A codec with `options`; see validate() for invalid ones.
  explicit DelimiterCodec(Options options) : options_(std::move(options)) {}

  /// Error when the options can never frame anything (empty delimiter). A codec built
  /// from invalid options does not crash: decode fails with the same reason.
  static Status validate(const Options& options);

  /// See codec.h. Fails with "delimiter codec: line longer than max_frame" or
  /// "delimiter codec: empty delimiter".
  Decoded decode(std::string_view in, Frame& frame, State& state) const;
  /// decode() with a fresh State: searches `in` from its start.
  Decoded decode(std::string_view in, Frame& frame) const {
    State fresh;
    return decode(in, frame, fresh);
  }

  /// Writes `line` then the delimiter. Errors (nothing written) when the line contains the
  /// delimiter or is longer than max_frame: the peer could not decode it as one line.
  template <ByteSink S>
  Status encode(std::string_view line, S& sink) const {
    if (Status s = check_encodable(line); !s) return s;
    return write_parts(sink, line, options_.delimiter);
  }

  /// The options this codec was built with.
  const Options& options() const { return options_; }

 private:
  Status check_encodable(std::string_view line) const;

  Options options_;
};

static_assert(ResumableCodec<DelimiterCodec>);

}  // namespace ringnet::proto
