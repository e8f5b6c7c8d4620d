// DelimiterCodec: frames end with a delimiter ("\n", "\r\n" or any non-empty byte string).
//
//   wire:  l i n e 1 \r \n l i n e 2 \r \n ...
//   frame: "line1" (strip_delimiter) or "line1\r\n" (keep it)
//
// A line may hold any bytes except the delimiter itself. At most max_frame bytes may come
// before the delimiter; once max_frame + delimiter size bytes are buffered with no
// delimiter among them, no wait can help and decode fails. The codec is stateless, so a
// partial line is searched again from its start on every arrival: the cost per arrival is
// bounded by max_frame.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ringnet/proto/codec.h"
#include "ringnet/status.h"

namespace ringnet::proto {

struct DelimiterOptions {
  std::string delimiter = "\n";  // must not be empty
  size_t max_frame = 64 * 1024;  // bytes allowed before the delimiter
  bool strip_delimiter = true;   // frames exclude the delimiter
};

class DelimiterCodec {
 public:
  using Frame = std::string_view;
  using Options = DelimiterOptions;

  DelimiterCodec() = default;
  explicit DelimiterCodec(Options options) : options_(std::move(options)) {}

  // Error when the options can never frame anything (empty delimiter). A codec built
  // from invalid options does not crash: decode fails with the same reason.
  static Status validate(const Options& options);

  // See codec.h. Fails with "delimiter codec: line longer than max_frame" or
  // "delimiter codec: empty delimiter".
  Decoded decode(std::string_view in, Frame& frame) const;

  // Writes `line` then the delimiter. Errors (nothing written) when the line contains the
  // delimiter or is longer than max_frame: the peer could not decode it as one line.
  template <ByteSink S>
  Status encode(std::string_view line, S& sink) const {
    if (Status s = check_encodable(line); !s) return s;
    return write_parts(sink, line, options_.delimiter);
  }

  const Options& options() const { return options_; }

 private:
  Status check_encodable(std::string_view line) const;

  Options options_;
};

static_assert(Codec<DelimiterCodec>);

}  // namespace ringnet::proto
