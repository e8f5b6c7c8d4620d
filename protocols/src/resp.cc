// SPDX-License-Identifier: MIT
// RESP2 command decoder; see resp.h for the accepted forms and the limits.
#include "ringnet/proto/resp.h"

#include <cstdint>
#include <limits>

namespace ringnet::proto {
namespace {

enum class Number : uint8_t { kOk, kNeedMore, kBad };

// Parses "<integer>\r\n" starting at in[pos] the way redis' string2ll reads a length:
// an optional '-', then digits without a leading zero ("0" itself is fine, "-0" is not),
// no '+', no spaces, within int64. On kOk `pos` is moved past the "\n". Every byte is
// judged as soon as it is seen, so a bad header fails without waiting for its "\r\n".
Number parse_length_line(std::string_view in, size_t& pos, int64_t& value) {
  size_t p = pos;
  bool negative = p < in.size() && in[p] == '-';
  if (negative) ++p;
  const size_t first_digit = p;
  uint64_t v = 0;
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (; p < in.size() && in[p] >= '0' && in[p] <= '9'; ++p) {
    if (p > first_digit && in[first_digit] == '0') return Number::kBad;
    uint64_t digit = static_cast<uint64_t>(in[p] - '0');
    if (v > (kMax - digit) / 10) return Number::kBad;
    v = v * 10 + digit;
  }
  if (p == in.size()) return Number::kNeedMore;
  if (p == first_digit || (negative && v == 0)) return Number::kBad;
  if (in[p] != '\r') return Number::kBad;
  if (p + 1 == in.size()) return Number::kNeedMore;
  if (in[p + 1] != '\n') return Number::kBad;
  value = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  pos = p + 2;
  return Number::kOk;
}

// Separators between inline words. '\n' never occurs inside a line.
bool is_separator(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One "expected '$', got '<byte>'" per byte value, built at compile time, so the error
// names the offending byte (as redis does) and is still a static string.
struct DollarReasons {
  char text[256][32];
};

constexpr DollarReasons make_dollar_reasons() {
  DollarReasons r{};
  constexpr std::string_view kPrefix = "expected '$', got '";
  constexpr char kHex[] = "0123456789abcdef";
  for (int b = 0; b < 256; ++b) {
    char* t = r.text[b];
    size_t n = 0;
    for (char c : kPrefix) t[n++] = c;
    if (b >= 0x20 && b < 0x7f && b != '\\') {
      t[n++] = static_cast<char>(b);
    } else {
      t[n++] = '\\';
      t[n++] = 'x';
      t[n++] = kHex[b >> 4];
      t[n++] = kHex[b & 15];
    }
    t[n++] = '\'';
    t[n] = '\0';
  }
  return r;
}

constexpr DollarReasons kDollarReasons = make_dollar_reasons();

}  // namespace

const char* RespCodec::expected_dollar_reason(unsigned char got) {
  return kDollarReasons.text[got];
}

Decoded RespCodec::decode_from(std::string_view in, RespCommand& cmd, State* st) const {
  // Step over empty commands to the next real one; see resp.h for when an empty frame
  // comes back anyway. A checkpoint is only ever kept for a command at the front of `in`.
  size_t pos = 0;
  while (pos < in.size()) {
    cmd.clear();
    const std::string_view rest = in.substr(pos);
    State* front = pos == 0 ? st : nullptr;
    Scan scan;
    const Step step = rest[0] == '*' ? decode_multibulk(rest, cmd, front, scan)
                                     : decode_inline(rest, cmd, front, scan);
    if (step == Step::kError) {
      cmd.clear();
      if (st != nullptr) st->reset();
      return Decoded::fail(scan.reason);
    }
    if (step == Step::kNeedMore) {
      cmd.clear();
      // Or the empty commands before it.
      return pos == 0 ? Decoded::need_more(0, scan.need) : Decoded::frame(pos);
    }
    pos += scan.end;
    if (!cmd.empty()) return Decoded::frame(pos);
  }
  cmd.clear();
  return pos == 0 ? Decoded::need_more() : Decoded::frame(pos);
}

// Like redis' processMultibulkBuffer: the "*<n>" header once, then per argument its
// "$<len>" header and its bytes. A resumed command (st->pos_ != 0) starts where the last
// call stopped and collects offsets into st->args_; a fresh one collects views into `cmd`
// and touches `st` only to checkpoint.
RespCodec::Step RespCodec::decode_multibulk(std::string_view in, RespCommand& cmd, State* st,
                                            Scan& scan) const {
  State* resumed = st != nullptr && st->pos_ != 0 ? st : nullptr;
  size_t p = 1;  // past '*'
  int64_t count = 0;
  int64_t bulklen = -1;  // the bulk at p, once its "$<len>" is read
  if (resumed != nullptr) {
    p = resumed->pos_;
    count = resumed->multibulklen_;
    bulklen = resumed->bulklen_;
  } else {
    switch (parse_length_line(in, p, count)) {
      case Number::kNeedMore: return Step::kNeedMore;
      case Number::kBad: return scan.fail(kInvalidMultibulkLength);
      case Number::kOk: break;
    }
    if (count > 0 && static_cast<uint64_t>(count) > options_.max_args) {
      return scan.fail(kTooManyArgs);
    }
    if (count <= 0) return scan.done(p);  // an empty command, as in redis
  }
  for (size_t done = resumed != nullptr ? resumed->args_.size() : 0;
       done < static_cast<size_t>(count); ++done) {
    if (bulklen < 0) {  // "$<len>\r\n" first
      if (p == in.size()) return pause(in, cmd, st, p, count, -1);
      if (in[p] != '$') return scan.fail(expected_dollar_reason(static_cast<unsigned char>(in[p])));
      size_t q = p + 1;
      int64_t len = 0;
      switch (parse_length_line(in, q, len)) {
        case Number::kNeedMore: return pause(in, cmd, st, p, count, -1);
        case Number::kBad: return scan.fail(kInvalidBulkLength);
        case Number::kOk: break;
      }
      if (len < 0) return scan.fail(kInvalidBulkLength);
      if (static_cast<uint64_t>(len) > options_.max_bulk) return scan.fail(kBulkTooBig);
      bulklen = len;
      p = q;
    }
    // The terminator is checked byte by byte as it arrives, like the headers.
    const auto n = static_cast<size_t>(bulklen);
    const size_t avail = in.size() - p;
    if ((avail > n && in[p + n] != '\r') || (avail > n + 1 && in[p + n + 1] != '\n')) {
      return scan.fail(kBadBulkTerminator);
    }
    if (avail < n + 2) {
      scan.need = p + n + (avail > n ? 2 : 1);
      return pause(in, cmd, st, p, count, bulklen);
    }
    if (resumed != nullptr) {
      resumed->args_.push_back({p, n});
    } else {
      cmd.push_back(in.substr(p, n));
    }
    p += n + 2;
    bulklen = -1;
  }
  if (resumed != nullptr) {
    load_args(in, cmd, *resumed);
    resumed->reset();
  }
  return scan.done(p);
}

// A partial multibulk command stops at `pos`, `count` arguments announced, with the bulk
// at `pos` of `bulklen` bytes (-1 before its header). Checkpoint it there when there is a
// state and it is kept already or worth it (kCheckpointMin), turning this call's views
// into offsets; otherwise the next call starts over (cheap: fewer than kCheckpointMin
// bytes).
RespCodec::Step RespCodec::pause(std::string_view in, RespCommand& cmd, State* st,
                                 size_t pos, int64_t count, int64_t bulklen) {
  if (st != nullptr && (st->pos_ != 0 || pos >= kCheckpointMin)) {
    if (st->pos_ == 0) {
      st->args_.reserve(cmd.size());
      for (std::string_view arg : cmd) {
        st->args_.push_back({static_cast<size_t>(arg.data() - in.data()), arg.size()});
      }
    }
    st->pos_ = pos;
    st->multibulklen_ = count;
    st->bulklen_ = bulklen;
  }
  return Step::kNeedMore;
}

// The complete command's views, from the offsets a resumed decode collected: built once.
void RespCodec::load_args(std::string_view in, RespCommand& cmd, const State& st) {
  cmd.clear();
  if (st.args_.size() > RespCommand::kInlineArgs) cmd.overflow_.reserve(st.args_.size());
  for (const State::Arg& arg : st.args_) cmd.push_back(in.substr(arg.offset, arg.size));
}

RespCodec::Step RespCodec::decode_inline(std::string_view in, RespCommand& cmd, State* st,
                                         Scan& scan) const {
  // A line may hold max_inline bytes plus "\r\n"; no '\n' within that many bytes means
  // the line is too long whatever comes next.
  const size_t window = options_.max_inline > SIZE_MAX - 2 ? SIZE_MAX : options_.max_inline + 2;
  const std::string_view line = in.substr(0, window);
  // A kept line was searched up to st->pos_ already.
  const size_t from = st != nullptr ? st->pos_ : 0;
  const size_t newline = line.find('\n', from);
  if (newline == std::string_view::npos) {
    if (in.size() >= window) return scan.fail(kInlineTooBig);
    if (st != nullptr && (from != 0 || line.size() >= kCheckpointMin)) st->pos_ = line.size();
    return Step::kNeedMore;
  }
  if (from != 0) st->reset();
  size_t len = newline;
  if (len != 0 && in[len - 1] == '\r') --len;
  if (len > options_.max_inline) return scan.fail(kInlineTooBig);
  if (!split_inline(in.substr(0, len), cmd, scan.reason)) return Step::kError;
  return scan.done(newline + 1);
}

bool RespCodec::split_inline(std::string_view line, RespCommand& cmd,
                             const char*& reason) const {
  size_t p = 0;
  for (;;) {
    while (p < line.size() && is_separator(line[p])) ++p;
    if (p == line.size()) return true;
    if (cmd.size() >= options_.max_args) {
      reason = kTooManyInlineArgs;
      return false;
    }
    // Fast path: a word without quotes is a view into the input.
    const size_t start = p;
    while (p < line.size() && !is_separator(line[p]) && line[p] != '"' && line[p] != '\'') ++p;
    if (p == line.size() || is_separator(line[p])) {
      cmd.push_back(line.substr(start, p - start));
      continue;
    }
    if (!unquote_word(line, start, p, cmd)) {
      reason = kUnbalancedQuotes;
      return false;
    }
  }
}

// The word at line[start] holds a quote: write it unescaped into cmd.unescaped_. The
// storage is reserved at the line's length before the first byte goes in: unescaping
// never lengthens a word, so it never reallocates under views taken earlier.
bool RespCodec::unquote_word(std::string_view line, size_t start, size_t& pos,
                             RespCommand& cmd) const {
  std::vector<char>& out = cmd.unescaped_;
  out.reserve(line.size());
  const size_t begin = out.size();
  enum class Quote : uint8_t { kNone, kDouble, kSingle };
  Quote quote = Quote::kNone;
  size_t p = start;
  for (;;) {
    if (quote == Quote::kNone) {
      if (p == line.size() || is_separator(line[p])) break;
      char c = line[p++];
      if (c == '"') quote = Quote::kDouble;
      else if (c == '\'') quote = Quote::kSingle;
      else out.push_back(c);
      continue;
    }
    if (p == line.size()) return false;  // no closing quote
    char c = line[p++];
    const char closing = quote == Quote::kDouble ? '"' : '\'';
    if (c == closing) {
      // A closing quote must end the word (redis: "a"b is an error, not `ab`).
      if (p < line.size() && !is_separator(line[p])) return false;
      quote = Quote::kNone;
      continue;
    }
    if (c != '\\' || p == line.size()) {
      out.push_back(c);
      continue;
    }
    if (quote == Quote::kSingle) {  // only \' is an escape inside single quotes
      if (line[p] == '\'') {
        out.push_back('\'');
        ++p;
      } else {
        out.push_back('\\');
      }
      continue;
    }
    char e = line[p++];
    int hi = e == 'x' && p + 1 < line.size() ? hex_value(line[p]) : -1;
    int lo = hi >= 0 ? hex_value(line[p + 1]) : -1;
    if (lo >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      p += 2;
      continue;
    }
    switch (e) {
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'b': out.push_back('\b'); break;
      case 'a': out.push_back('\a'); break;
      default: out.push_back(e); break;  // \" \\ and any other escaped byte: itself
    }
  }
  cmd.push_back(std::string_view(out.data() + begin, out.size() - begin));
  pos = p;
  return true;
}

}  // namespace ringnet::proto
