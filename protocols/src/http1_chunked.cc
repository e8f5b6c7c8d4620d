// SPDX-License-Identifier: MIT
// The chunked transfer coding of a request body (RFC 9112 section 7.1), walked from where
// an Http1ChunkWalk stands so that an upload arriving in pieces is walked once: each size
// line, chunk and trailer line is parsed when it is complete, and a partial line is
// searched for its LF only past what earlier calls searched. Only CRLF is taken here
// (leniency inside a body is what request smuggling feeds on).
#include <algorithm>
#include <cstdint>
#include <string>

#include "http1_syntax.h"

namespace ringnet::proto::http1_syntax {
namespace {

// The LF of the line at walk.pos within `budget` bytes, or npos; records how far a partial
// line was searched.
size_t find_line_end(std::string_view in, size_t budget, Http1ChunkWalk& w) {
  const std::string_view window = in.substr(w.pos, budget);
  const size_t nl = find_lf(window, w.scan > w.pos ? w.scan - w.pos : 0);
  if (nl == std::string_view::npos) w.scan = w.pos + window.size();
  return nl;
}

// "<hex>[ext]" without its CRLF: the chunk size, or an error.
Decoded parse_chunk_size(std::string_view line, uint64_t* size) {
  uint64_t n = 0;
  size_t i = 0;
  size_t significant = 0;
  for (; i < line.size(); ++i) {
    char c = line[i];
    uint64_t digit;
    if (c >= '0' && c <= '9') digit = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f') digit = static_cast<uint64_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') digit = static_cast<uint64_t>(c - 'A' + 10);
    else break;
    if (n != 0 || digit != 0) ++significant;
    if (significant > 16) return Decoded::fail("chunk size overflows", 400);
    n = (n << 4) | digit;
  }
  if (i == 0) return Decoded::fail("bad chunk size", 400);
  // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): skipped, bytes checked.
  while (i < line.size() && is_ows(line[i])) ++i;
  if (i < line.size()) {
    if (line[i] != ';') return Decoded::fail("bad chunk size", 400);
    for (; i < line.size(); ++i) {
      if (!is_value_char(line[i])) return Decoded::fail("bad character in chunk extension", 400);
    }
  }
  *size = n;
  return ok();
}

// The size line at walk.pos; on success walk.pos is the start of the chunk's data.
Decoded read_size_line(std::string_view in, const ChunkLimits& lim, Http1ChunkWalk& w) {
  const size_t budget = lim.max_framing - w.framing;
  const size_t nl = find_line_end(in, budget, w);
  if (nl == std::string_view::npos) {
    if (in.size() - w.pos > budget) return Decoded::fail("chunk framing over limit", 413);
    return Decoded::need_more();
  }
  if (nl == 0 || in[w.pos + nl - 1] != '\r') {
    return Decoded::fail("chunk size line not ended by CRLF", 400);
  }
  Decoded d = parse_chunk_size(in.substr(w.pos, nl - 1), &w.size);
  if (d.kind == Decoded::kError) return d;
  w.framing += nl + 1;
  w.pos += nl + 1;
  w.scan = w.pos;
  w.have_size = true;
  return ok();
}

// The data of the chunk at walk.pos and its CRLF. The first chunk's data stays in the
// input (a body of one chunk is a view); from the second on, the data goes to `body`.
Decoded take_data(std::string_view in, const ChunkLimits& lim, Http1ChunkWalk& w,
                  std::string& body) {
  const uint64_t size = w.size;
  const size_t avail = in.size() - w.pos;
  // The CRLF is checked byte by byte as it arrives.
  if ((avail > size && in[w.pos + size] != '\r') ||
      (avail > size + 1 && in[w.pos + size + 1] != '\n')) {
    return Decoded::fail("chunk data not followed by CRLF", 400);
  }
  if (avail < size + 2) return Decoded::need_more(0, w.pos + size + (avail > size ? 2 : 1));
  if (w.data_chunks == 0) {
    w.first_data = w.pos;
  } else {
    if (w.data_chunks == 1) body.assign(in.substr(w.first_data, w.data_size));
    body.append(in.substr(w.pos, size));
  }
  ++w.data_chunks;
  w.data_size += size;
  w.pos += size + 2;
  w.scan = w.pos;
  w.framing += 2;
  w.have_size = false;
  if (w.framing > lim.max_framing) return Decoded::fail("chunk framing over limit", 413);
  return ok();
}

// Trailer fields up to the empty line: checked and dropped.
Decoded read_trailers(std::string_view in, const ChunkLimits& lim, Http1ChunkWalk& w) {
  for (;;) {
    const size_t budget =
        std::min(lim.max_framing - w.framing, lim.max_trailer_bytes - w.trailer_bytes);
    const size_t nl = find_line_end(in, budget, w);
    if (nl == std::string_view::npos) {
      if (in.size() - w.pos > budget) return Decoded::fail("trailer section too large", 431);
      return Decoded::need_more();
    }
    if (nl == 0 || in[w.pos + nl - 1] != '\r') {
      return Decoded::fail("trailer line not ended by CRLF", 400);
    }
    const std::string_view line = in.substr(w.pos, nl - 1);
    w.pos += nl + 1;
    w.scan = w.pos;
    w.framing += nl + 1;
    w.trailer_bytes += nl + 1;
    if (nl == 1) return ok();  // the empty line
    if (++w.trailers > lim.max_trailers) return Decoded::fail("too many trailer fields", 431);
    HttpHeader ignored;
    Decoded d = parse_field_line(line, &ignored);
    if (d.kind == Decoded::kError) return d;
  }
}

}  // namespace

Decoded walk_chunks(std::string_view in, const ChunkLimits& lim, Http1ChunkWalk& w,
                    std::string& body) {
  while (!w.in_trailers) {
    if (!w.have_size) {
      Decoded d = read_size_line(in, lim, w);
      if (d.kind != Decoded::kFrame) return d;
      if (w.size == 0) {
        w.in_trailers = true;
        break;
      }
      if (w.size > lim.max_body - w.data_size) {
        return Decoded::fail("chunked body over the body limit", 413);
      }
    }
    Decoded d = take_data(in, lim, w, body);
    if (d.kind != Decoded::kFrame) return d;
  }
  Decoded d = read_trailers(in, lim, w);
  if (d.kind != Decoded::kFrame) return d;
  return Decoded::frame(w.pos);
}

}  // namespace ringnet::proto::http1_syntax
