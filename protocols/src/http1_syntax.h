// SPDX-License-Identifier: MIT
// HTTP/1.1 syntax shared by the head parser (http1.cc) and the chunked body decoder
// (http1_chunked.cc): byte classes, lines, field lines. Internal to libringnet_proto.
#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "ringnet/proto/codec.h"
#include "ringnet/proto/http1.h"

namespace ringnet::proto::http1_syntax {

using detail::Http1ChunkWalk;

constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
inline constexpr std::array<bool, 256> kTchar = make_tchar_table();

inline bool is_tchar(char c) { return kTchar[static_cast<unsigned char>(c)]; }
// field-value bytes: VCHAR, SP, HT and obs-text; no other control byte, no DEL.
inline bool is_value_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}
inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Internal "no error" result of the parsing steps.
inline Decoded ok() { return Decoded::frame(0); }

// A bad byte in the head: name a bare CR as such, it is the classic smuggling vector.
inline Decoded bad_byte(char c, const char* reason) {
  return Decoded::fail(c == '\r' ? "bare CR in request head" : reason, 400);
}

// The first LF in in[from, end), or npos.
inline size_t find_lf(std::string_view in, size_t from) {
  if (from >= in.size()) return std::string_view::npos;
  const void* lf = std::memchr(in.data() + from, '\n', in.size() - from);
  return lf == nullptr ? std::string_view::npos
                       : static_cast<size_t>(static_cast<const char*>(lf) - in.data());
}

// name ":" OWS value OWS. Used for header and trailer fields (defined in http1.cc: out of
// line, which measured faster than inlined into the head loop).
Decoded parse_field_line(std::string_view line, HttpHeader* field);

// The chunked body decoder (http1_chunked.cc).
struct ChunkLimits {
  uint64_t max_body = 0;
  size_t max_framing = 0;        // size lines, extensions, CRLFs, trailers
  size_t max_trailer_bytes = 0;  // what max_header_bytes leaves after the head
  size_t max_trailers = 0;       // what max_headers leaves after the header fields
};

// Walks the chunked body from where `walk` stands: kFrame once the trailer section ended
// (walk.pos is then the request's end), kNeedMore (with Decoded::need where known), or
// kError. The data of a body of several chunks is appended to `body` as it is walked.
Decoded walk_chunks(std::string_view in, const ChunkLimits& lim, Http1ChunkWalk& walk,
                    std::string& body);

}  // namespace ringnet::proto::http1_syntax
