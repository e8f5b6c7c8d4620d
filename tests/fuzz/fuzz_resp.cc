// SPDX-License-Identifier: MIT
// libFuzzer target for RespCodec. The first input byte picks the options, the rest is the
// byte stream:
//   bit 0   0: the defaults; 1: tight limits (max_args 4, max_bulk 16, max_inline 32), so
//           the limit paths are reached by small inputs
// Commands are consumed until need-more or error. Checked for every frame: consumed within
// the input and > 0; arguments are views inside the consumed bytes, or unescaped inline
// words no longer than those bytes; the same frame comes back from exactly the consumed bytes; shorter prefixes
// of those bytes never fail; re-encoding the command as a multibulk and decoding it gives
// the same arguments. Errors carry a non-empty reason.
#include <ringnet/proto/resp.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "resume_check.h"

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::RespCodec;
using ringnet::proto::RespCommand;
using ringnet::proto::RespOptions;
using ringnet::proto::StringSink;

void check(bool ok) {
  if (!ok) std::abort();
}

bool same_args(const RespCommand& a, const RespCommand& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void check_frame(const RespCodec& codec, std::string_view in, const Decoded& d,
                 const RespCommand& cmd) {
  check(d.consumed > 0 && d.consumed <= in.size());
  std::string_view used = in.substr(0, d.consumed);
  for (std::string_view arg : cmd) {
    if (inside(arg, in)) {
      check(inside(arg, used));
    } else {
      check(arg.size() <= used.size());  // an unescaped inline word, never longer
    }
  }
  // The frame depends on the bytes it consumed and nothing after them.
  RespCommand again;
  Decoded d2 = codec.decode(used, again);
  check(d2.kind == Decoded::kFrame && d2.consumed == d.consumed && same_args(cmd, again));
  // A prefix of good bytes is never an error.
  for (size_t cut : {d.consumed - 1, d.consumed / 2, size_t{1}}) {
    if (cut >= d.consumed) continue;
    RespCommand part;
    check(codec.decode(used.substr(0, cut), part).kind != Decoded::kError);
  }
  if (cmd.empty()) return;
  // Re-encode as a client would and decode back, with default limits: max_bulk does not
  // apply to inline words, so a tight codec could refuse a long one re-encoded.
  std::string wire;
  StringSink sink{wire};
  check(RespCodec::encode(cmd, sink).is_ok());
  RespCommand round;
  Decoded d3 = RespCodec().decode(wire, round);
  check(d3.kind == Decoded::kFrame && d3.consumed == wire.size() && same_args(cmd, round));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  RespOptions options;
  if (data[0] & 1) options = RespOptions{.max_args = 4, .max_bulk = 16, .max_inline = 32};
  const RespCodec codec(options);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  RespCommand cmd;  // reused across frames, as FramedHandler does
  for (;;) {
    Decoded d = codec.decode(in, cmd);
    if (d.kind == Decoded::kNeedMore) {
      check(cmd.empty());
      break;
    }
    if (d.kind == Decoded::kError) {
      check(d.error.reason != nullptr && d.error.reason[0] != '\0');
      break;
    }
    check(d.kind == Decoded::kFrame);
    check(cmd.size() <= options.max_args);
    check_frame(codec, in, d, cmd);
    in.remove_prefix(d.consumed);
  }
  ringnet::fuzz::check_resume(codec, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
                              size, same_args);
  return 0;
}
