// SPDX-License-Identifier: MIT
// DelimiterCodec: see delimiter_codec.h.
#include "ringnet/proto/delimiter_codec.h"

#include <algorithm>

namespace ringnet::proto {

namespace {

constexpr const char* kEmptyDelimiter = "delimiter codec: empty delimiter";
constexpr const char* kLineTooLong = "delimiter codec: line longer than max_frame";

// a + b, or SIZE_MAX when that overflows (max_frame may be "unlimited").
size_t saturating_add(size_t a, size_t b) {
  size_t sum;
  return __builtin_add_overflow(a, b, &sum) ? SIZE_MAX : sum;
}

}  // namespace

Status DelimiterCodec::validate(const Options& options) {
  if (options.delimiter.empty()) return Status::invalid(kEmptyDelimiter);
  return Status::ok();
}

Decoded DelimiterCodec::decode(std::string_view in, Frame& frame, State& state) const {
  const std::string_view delim = options_.delimiter;
  if (delim.empty()) return Decoded::fail(kEmptyDelimiter);

  // The longest acceptable frame is max_frame line bytes plus the delimiter, so only that
  // window is searched: a delimiter further on belongs to an over-long line anyway.
  const size_t window = saturating_add(options_.max_frame, delim.size());
  const std::string_view scan = in.substr(0, window);
  const size_t from = std::min(state.searched_, scan.size());
  // find(char) is memchr; the string form scans for the first byte the same way.
  const size_t pos = delim.size() == 1 ? scan.find(delim[0], from) : scan.find(delim, from);
  if (pos == std::string_view::npos) {
    // With `window` bytes and no delimiter, the line already has max_frame + 1 bytes.
    // One byte fewer could still be max_frame bytes plus a delimiter cut short.
    if (in.size() >= window) {
      state.searched_ = 0;
      return Decoded::fail(kLineTooLong);
    }
    // A delimiter may yet start in its last size - 1 bytes, cut short.
    state.searched_ = scan.size() - std::min(scan.size(), delim.size() - 1);
    return Decoded::need_more();
  }
  state.searched_ = 0;
  const size_t consumed = pos + delim.size();
  frame = in.substr(0, options_.strip_delimiter ? pos : consumed);
  return Decoded::frame(consumed);
}

Status DelimiterCodec::check_encodable(std::string_view line) const {
  const std::string_view delim = options_.delimiter;
  if (delim.empty()) return Status::invalid(kEmptyDelimiter);
  if (line.size() > options_.max_frame) return Status::invalid(kLineTooLong);
  if (line.find(delim) != std::string_view::npos) {
    return Status::invalid("delimiter codec: line contains the delimiter");
  }
  // The delimiter written after the line could also be found earlier, straddling the end
  // of the line: with "abab", "xab" + "abab" decodes as "x". That happens when the line
  // ends with the delimiter's first k bytes and the delimiter's last dlen-k bytes equal its
  // first dlen-k (a border). Such lines cannot round-trip either.
  for (size_t k = 1; k < delim.size() && k <= line.size(); ++k) {
    if (line.substr(line.size() - k) == delim.substr(0, k) &&
        delim.substr(k) == delim.substr(0, delim.size() - k)) {
      return Status::invalid("delimiter codec: line contains the delimiter");
    }
  }
  return Status::ok();
}

}  // namespace ringnet::proto
