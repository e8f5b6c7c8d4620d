// The codec contract: bytes in, frames out; frames in, bytes out. A codec knows nothing of
// loops or sockets, so it is unit-tested and fuzzed on plain strings.
//
//   Decoded decode(std::string_view in, Frame& frame) const;
//
// looks at the front of `in` (every unread inbound byte of one connection) and returns
//   - kFrame:    `frame` is filled and took the first `consumed` bytes of `in`. Its views
//                point into `in` (no copy) unless the protocol forces a copy (HTTP chunked
//                bodies), so they are valid only while `in` is;
//   - kNeedMore: no complete frame yet; call again with the same bytes plus more;
//   - kError:    the bytes can never become a valid frame (bad header, over a size limit).
//                Limits are checked from headers, before a body is waited for.
// decode is const and keeps no state between calls: one codec object serves every
// connection on every loop. Encoders append to any ByteSink (Conn, or StringSink in tests).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ringnet/status.h"

namespace ringnet::proto {

// Why the input was rejected. `reason` is a static string for logs and tests; `status` is
// the answer code where the protocol has one (HTTP status), else 0.
struct ProtocolError {
  const char* reason = "";
  int status = 0;
};

struct Decoded {
  enum Kind : uint8_t { kFrame, kNeedMore, kError };
  Kind kind = kNeedMore;
  // kNeedMore only: a codec-specific hint for its adapter (HTTP: the headers are complete
  // and the client waits for "100 Continue"). 0 means none.
  uint8_t hint = 0;
  size_t consumed = 0;  // kFrame: bytes of `in` the frame took
  ProtocolError error;  // kError

  static Decoded frame(size_t consumed) { return {kFrame, 0, consumed, {}}; }
  static Decoded need_more(uint8_t hint = 0) { return {kNeedMore, hint, 0, {}}; }
  static Decoded fail(const char* reason, int status = 0) {
    return {kError, 0, 0, {reason, status}};
  }
};

// Where encoders append bytes. Conn satisfies it (bytes go to the outbound queue).
template <typename S>
concept ByteSink = requires(S& s, std::string_view bytes) {
  { s.write(bytes) } -> std::same_as<Status>;
};

// A ByteSink over a std::string, for tests and for building replies off the loop.
struct StringSink {
  std::string& out;
  Status write(std::string_view bytes) {
    out.append(bytes);
    return Status::ok();
  }
};

// Appends several pieces (header, body, trailer) as one write where the sink has writev
// (Conn does): one outbound-queue append, and a large body may go straight to the socket
// instead of being copied behind its header. Otherwise one write per piece. Empty pieces
// are skipped.
template <ByteSink S, typename... Parts>
Status write_parts(S& sink, const Parts&... pieces) {
  const std::string_view parts[] = {std::string_view(pieces)...};
  if constexpr (requires(std::span<const std::string_view> p) {
                  { sink.writev(p) } -> std::same_as<Status>;
                }) {
    return sink.writev(std::span<const std::string_view>(parts));
  } else {
    for (std::string_view part : parts) {
      if (part.empty()) continue;
      if (Status s = sink.write(part); !s) return s;
    }
    return Status::ok();
  }
}

template <typename C>
concept Codec = requires(const C& c, std::string_view in, typename C::Frame& frame) {
  { c.decode(in, frame) } -> std::same_as<Decoded>;
};

}  // namespace ringnet::proto
