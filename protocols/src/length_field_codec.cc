// SPDX-License-Identifier: MIT
// LengthFieldCodec: see length_field_codec.h.
#include "ringnet/proto/length_field_codec.h"

namespace ringnet::proto {

namespace {

constexpr const char* kBadLengthSize = "length-field codec: length_size must be 1, 2, 3, 4 or 8";
constexpr const char* kHeaderOverMax =
    "length-field codec: length_offset + length_size exceeds max_frame";
constexpr const char* kTooSmall = "length-field codec: frame length smaller than its header";
constexpr const char* kOverflow = "length-field codec: adjusted frame length overflows";
constexpr const char* kTooLong = "length-field codec: frame longer than max_frame";
constexpr const char* kStripTooLong = "length-field codec: bytes_to_strip exceeds frame length";

uint64_t read_length_field(const char* p, int size, bool big_endian) {
  uint64_t v = 0;
  for (int i = 0; i < size; ++i) {
    const auto byte = static_cast<unsigned char>(p[big_endian ? i : size - 1 - i]);
    v = (v << 8) | byte;
  }
  return v;
}

void write_length_field(uint64_t v, int size, bool big_endian, char* out) {
  for (int i = 0; i < size; ++i) {
    const auto byte = static_cast<char>(static_cast<unsigned char>(v >> (8 * i)));
    out[big_endian ? size - 1 - i : i] = byte;
  }
}

// |x| for any int64_t, INT64_MIN included.
uint64_t magnitude(int64_t x) {
  return x < 0 ? uint64_t{0} - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
}

}  // namespace

const char* LengthFieldCodec::check_options(const Options& o) {
  switch (o.length_size) {
    case 1: case 2: case 3: case 4: case 8: break;
    default: return kBadLengthSize;
  }
  // No frame could be accepted, so say so once at setup instead of on every connection.
  if (o.length_offset > o.max_frame || o.max_frame - o.length_offset < size_t(o.length_size)) {
    return kHeaderOverMax;
  }
  return nullptr;
}

Status LengthFieldCodec::validate(const Options& options) {
  if (const char* why = check_options(options)) return Status::invalid(why);
  return Status::ok();
}

Decoded LengthFieldCodec::decode(std::string_view in, Frame& frame) const {
  if (options_error_ != nullptr) return Decoded::fail(options_error_);
  // Cannot overflow: check_options bounds it by max_frame.
  const size_t header_end = options_.length_offset + size_t(options_.length_size);
  if (in.size() < header_end) return Decoded::need_more(0, header_end);

  const uint64_t value = read_length_field(in.data() + options_.length_offset,
                                           options_.length_size, options_.big_endian);
  // frame_length = value + adjustment + header_end, computed exactly in 64 bits: below
  // zero means the field claims less than nothing after the header.
  uint64_t body;  // value + adjustment
  const int64_t adj = options_.length_adjustment;
  if (adj >= 0) {
    if (__builtin_add_overflow(value, static_cast<uint64_t>(adj), &body)) {
      return Decoded::fail(kOverflow);
    }
  } else {
    if (value < magnitude(adj)) return Decoded::fail(kTooSmall);
    body = value - magnitude(adj);
  }
  uint64_t frame_length;
  if (__builtin_add_overflow(body, uint64_t{header_end}, &frame_length)) {
    return Decoded::fail(kOverflow);
  }
  // All of this is known from the header: fail now rather than buffer a body to reject.
  if (frame_length > options_.max_frame) return Decoded::fail(kTooLong);
  if (options_.bytes_to_strip > frame_length) return Decoded::fail(kStripTooLong);
  if (in.size() < frame_length) return Decoded::need_more(0, static_cast<size_t>(frame_length));

  frame = in.substr(options_.bytes_to_strip, frame_length - options_.bytes_to_strip);
  return Decoded::frame(frame_length);
}

Status LengthFieldCodec::encode_header(size_t body_size, char* header) const {
  if (options_error_ != nullptr) return Status::invalid(options_error_);
  if (options_.length_offset != 0) {
    return Status::invalid("length-field codec: encode needs length_offset 0");
  }
  const size_t header_size = size_t(options_.length_size);
  if (body_size > options_.max_frame - header_size) return Status::invalid(kTooLong);
  // value = body_size - adjustment; it must be representable and not negative.
  const int64_t adj = options_.length_adjustment;
  uint64_t value;
  if (adj <= 0) {
    if (__builtin_add_overflow(uint64_t{body_size}, magnitude(adj), &value)) {
      return Status::invalid("length-field codec: length does not fit the field");
    }
  } else {
    if (body_size < magnitude(adj)) {
      return Status::invalid("length-field codec: body shorter than length_adjustment");
    }
    value = body_size - magnitude(adj);
  }
  if (header_size < 8 && value >> (8 * header_size) != 0) {
    return Status::invalid("length-field codec: length does not fit the field");
  }
  write_length_field(value, options_.length_size, options_.big_endian, header);
  return Status::ok();
}

}  // namespace ringnet::proto
