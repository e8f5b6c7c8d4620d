// SPDX-License-Identifier: MIT
/// @file
/// RESP2, server side: decodes client commands, encodes replies (the protocol of Redis).
///
/// A client sends a command in one of two forms; the first byte decides which:
///   multibulk  "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n"     (every client library)
///   inline     one line of words, "SET k v\r\n" ("\n" alone ends it too)  (telnet, PING_INLINE)
///
/// RespCodec::decode gives a RespCommand: the arguments as views into the input, held in
/// an inline array of kInlineArgs so the common command allocates nothing. Inline words
/// follow redis-cli's quoting (sdssplitargs): "double quotes" with `\\ \n \r \t \b \a`,
/// backslash-quote and `\xHH` escapes, 'single quotes' with ``\'`` only; a quote may open
/// inside a word (a"b c"
/// is one argument, `ab c`), and a closing quote must be followed by a space or the end of
/// the line. A quoted argument is unescaped into storage owned by the frame, so its view
/// points there rather than into the input: a RespCommand can be moved but not copied.
/// Word separators are space, `\t`, `\r`, `\v` and `\f`. Unlike redis, a NUL byte is an ordinary
/// byte of a word (redis cuts the line there).
///
/// Empty commands (`*0\r\n`, `*-1\r\n`, blank lines) are consumed and skipped, as redis
/// does: decode steps over them to the next command. Only when nothing but empty commands
/// precedes a partial command (or the end of the input) does it return a frame with
/// size() == 0, so those bytes are consumed rather than piling up. Handlers ignore such
/// frames; RespHandler does it for them (its on_command never sees an empty command).
///
/// Errors carry redis' own wording where redis has one ("invalid multibulk length",
/// "invalid bulk length", "expected '$', got 'x'", "unbalanced quotes in request", "too big
/// inline request"); write_error_reply answers "-ERR Protocol error: \<reason\>\\r\\n" as redis
/// does before it closes the connection. Limits are checked from the `*<n>` and `$<len>`
/// headers, before the arguments arrive.
///
/// A command that trickles in is not scanned again from its start on every arrival: with a
/// State (see codec.h) decode keeps, as redis does on its client (processMultibulkBuffer),
/// the arguments still expected, the length of the bulk being read and the arguments read
/// so far (as offsets), and resumes where it stopped; the command's views are built once,
/// when it is complete. While a bulk's bytes are awaited, Decoded::need says how many.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/proto/codec.h"
#include "ringnet/proto/framed_handler.h"

namespace ringnet::proto {

/// Limits of RespCodec, checked from the headers before the arguments arrive.
struct RespOptions {
  /// Arguments per command (multibulk or inline): redis refuses a multibulk length over
  /// 1024*1024 (processMultibulkBuffer up to 6.2; 7.x raised it to INT_MAX).
  size_t max_args = 1024 * 1024;
  size_t max_bulk = size_t{512} << 20;    ///< bytes per argument (redis proto-max-bulk-len)
  size_t max_inline = 64 * 1024;          ///< bytes of an inline line, without its "\r\n"
};

/// ASCII case-insensitive equality (command names, options such as "EX").
inline bool resp_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c; };
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

/// One client command: argv[0] is the command name. Views are valid while the decoded
/// input is (FramedHandler: until on_message returns) and while this object lives.
/// Threads: not synchronised; filled and read on the decoding connection's loop thread.
class RespCommand {
 public:
  /// Arguments stored inside the object before spilling to a vector.
  static constexpr size_t kInlineArgs = 8;

  RespCommand() = default;
  /// Views may point into unescaped_, which a move keeps in place (vector buffers move);
  /// a copy would leave them pointing into the source, so copying is not offered.
  RespCommand(const RespCommand&) = delete;
  RespCommand& operator=(const RespCommand&) = delete;
  /// Moves the arguments; views into quoted-argument storage stay valid.
  RespCommand(RespCommand&&) noexcept = default;
  /// Move assignment, as the move constructor.
  RespCommand& operator=(RespCommand&&) noexcept = default;

  /// Number of arguments, the command name included.
  size_t size() const { return size_; }
  /// True for an empty command (no arguments).
  bool empty() const { return size_ == 0; }
  /// Argument `i` (0: the command name); `i` < size().
  std::string_view operator[](size_t i) const { return args()[i]; }
  /// All arguments, contiguous.
  std::span<const std::string_view> args() const {
    return {size_ <= kInlineArgs ? inline_.data() : overflow_.data(), size_};
  }
  /// First argument, for range-for.
  const std::string_view* begin() const { return args().data(); }
  /// Past the last argument.
  const std::string_view* end() const { return args().data() + size_; }
  /// argv[0], or "" for an empty command.
  std::string_view name() const { return size_ != 0 ? inline_[0] : std::string_view(); }
  /// True when argv[0] equals `command` ignoring ASCII case: cmd.is("get"). False for an
  /// empty command.
  bool is(std::string_view command) const {
    return size_ != 0 && resp_iequals(inline_[0], command);
  }

  /// Decoder side; public so tests and other decoders can build commands. Capacity is
  /// kept, so a frame reused across decodes allocates only for its largest command.
  void clear() {
    size_ = 0;
    overflow_.clear();
    unescaped_.clear();
  }
  /// Appends `arg` (not copied: it must outlive the command).
  void push_back(std::string_view arg) {
    if (size_ < kInlineArgs) {
      inline_[size_++] = arg;
      return;
    }
    // Past the inline array every argument lives in overflow_, so args() stays one span.
    if (size_ == kInlineArgs) overflow_.assign(inline_.begin(), inline_.end());
    overflow_.push_back(arg);
    ++size_;
  }

 private:
  friend class RespCodec;
  std::array<std::string_view, kInlineArgs> inline_{};  // the first 8 args, always
  std::vector<std::string_view> overflow_;              // all args, once there are > 8
  size_t size_ = 0;
  std::vector<char> unescaped_;                         // quoted inline arguments
};

/// Codec for RESP2, server side: decodes client commands, encodes replies (see the file comment).
/// Threads: decode and encode are const (encode is static), so one codec object may be shared by
/// every connection on every loop; a State belongs to one connection and is used on that
/// connection's loop thread.
class RINGNET_PROTO_EXPORT RespCodec {
 public:
  using Frame = RespCommand;  ///< see RespCommand

  /// One connection's partial command (see codec.h and the file comment).
  /// Threads: belongs to one connection; used on that connection's loop thread only.
  class State {
   public:
    /// Bytes at the front of `in` already scanned (0: none).
    size_t resume_at() const { return pos_; }

   private:
    friend class RespCodec;
    struct Arg {
      size_t offset;
      size_t size;
    };
    void reset() {
      pos_ = 0;
      multibulklen_ = 0;
      bulklen_ = -1;
      args_.clear();
    }
    size_t pos_ = 0;            // where the scan resumes (0: fresh)
    int64_t multibulklen_ = 0;  // arguments the "*<n>" header announced
    int64_t bulklen_ = -1;      // the bulk at pos_, once its "$<len>" is read
    std::vector<Arg> args_;     // the arguments before pos_
  };

  RespCodec() = default;
  /// A codec with the limits in `options`.
  explicit RespCodec(RespOptions options) : options_(options) {}

  /// See the file comment. Never reads past `in`; throws nothing of its own (only
  /// std::bad_alloc, from the frame's storage, when memory runs out).
  Decoded decode(std::string_view in, RespCommand& cmd, State& state) const {
    return decode_from(in, cmd, &state);
  }
  /// decode() with a fresh State: scans `in` from its start.
  Decoded decode(std::string_view in, RespCommand& cmd) const {
    return decode_from(in, cmd, nullptr);  // nobody keeps a checkpoint
  }

  /// "-ERR Protocol error: <reason>\r\n", what redis sends before closing.
  template <ByteSink S>
  Status write_error_reply(const ProtocolError& error, S& sink) const;

  /// A command as a client sends it: an array of bulk strings.
  template <ByteSink S>
  static Status encode(std::span<const std::string_view> args, S& sink);
  template <ByteSink S>
  /// encode() of `cmd`'s arguments.
  static Status encode(const RespCommand& cmd, S& sink) {
    return encode(cmd.args(), sink);
  }

  /// The options this codec was built with.
  const RespOptions& options() const { return options_; }

  /// Reasons decode reports (static strings; tests compare against them). The reason for
  /// a wrong byte where '$' belongs names that byte: see expected_dollar_reason().
  static constexpr const char* kInvalidMultibulkLength = "invalid multibulk length";
  /// More arguments than max_args.
  static constexpr const char* kTooManyArgs = "invalid multibulk length (over max_args)";
  /// A "$<len>" that is not a valid length.
  static constexpr const char* kInvalidBulkLength = "invalid bulk length";
  /// A bulk over max_bulk.
  static constexpr const char* kBulkTooBig = "invalid bulk length (over max_bulk)";
  /// Bulk data not followed by CRLF.
  static constexpr const char* kBadBulkTerminator = "expected '\\r\\n' after bulk data";
  /// An inline quote left open or not followed by a space.
  static constexpr const char* kUnbalancedQuotes = "unbalanced quotes in request";
  /// An inline line over max_inline.
  static constexpr const char* kInlineTooBig = "too big inline request";
  /// An inline line with more than max_args words.
  static constexpr const char* kTooManyInlineArgs = "too many arguments in inline request";
  /// "expected '$', got 'x'" for the byte `got` (non-printable bytes as `\xHH`).
  static const char* expected_dollar_reason(unsigned char got);

 private:
  // What a command parser found. kDone: the command took `end` bytes (an empty command
  // leaves the frame empty); kNeedMore: `need` as in Decoded (0: unknown); kError: why.
  enum class Step : uint8_t { kDone, kNeedMore, kError };
  struct Scan {
    size_t end = 0;
    size_t need = 0;
    const char* reason = "";
    Step done(size_t bytes) {
      end = bytes;
      return Step::kDone;
    }
    Step fail(const char* why) {
      reason = why;
      return Step::kError;
    }
  };
  // `st` is null when no checkpoint is wanted. The command parsers see `in` from the
  // command's first byte, and `st` only for the command at the front of the input.
  Decoded decode_from(std::string_view in, RespCommand& cmd, State* st) const;
  Step decode_multibulk(std::string_view in, RespCommand& cmd, State* st, Scan& scan) const;
  Step decode_inline(std::string_view in, RespCommand& cmd, State* st, Scan& scan) const;
  static Step pause(std::string_view in, RespCommand& cmd, State* st, size_t pos,
                    int64_t count, int64_t bulklen);
  static void load_args(std::string_view in, RespCommand& cmd, const State& st);
  bool split_inline(std::string_view line, RespCommand& cmd, const char*& reason) const;
  bool unquote_word(std::string_view line, size_t start, size_t& pos, RespCommand& cmd) const;

  RespOptions options_;
};

// ---- reply encoders -------------------------------------------------------------------
/// Each writes one complete RESP2 value. The frequent small replies are formatted on the
/// stack and handed to the sink in a single write.
namespace resp {

namespace detail {
inline constexpr size_t kStackReply = 512;

/// '<prefix><n>\r\n' into buf; returns its length (at most 23).
inline size_t format_header(char* buf, char prefix, int64_t n) {
  buf[0] = prefix;
  char* end = std::to_chars(buf + 1, buf + 22, n).ptr;
  end[0] = '\r';
  end[1] = '\n';
  return static_cast<size_t>(end + 2 - buf);
}

/// A simple string or error line must not hold CR or LF: they would end the line early.
/// Like redis, replace them with spaces.
template <ByteSink S>
Status write_line(S& sink, char prefix, std::string_view text) {
  char buf[kStackReply];
  bool clean = text.find_first_of("\r\n") == std::string_view::npos;
  if (clean && text.size() + 3 <= sizeof(buf)) {
    buf[0] = prefix;
    std::memcpy(buf + 1, text.data(), text.size());
    buf[text.size() + 1] = '\r';
    buf[text.size() + 2] = '\n';
    return sink.write(std::string_view(buf, text.size() + 3));
  }
  std::string line;
  line.reserve(text.size() + 3);
  line.push_back(prefix);
  for (char c : text) line.push_back(c == '\r' || c == '\n' ? ' ' : c);
  line.append("\r\n");
  return sink.write(line);
}
}  // namespace detail

/// +OK
template <ByteSink S>
Status write_ok(S& sink) {
  return sink.write("+OK\r\n");
}
/// `+<text>`   (CR/LF in text become spaces)
template <ByteSink S>
Status write_simple_string(S& sink, std::string_view text) {
  return detail::write_line(sink, '+', text);
}
/// `-<message>`   message includes the error code: "ERR syntax error", "WRONGTYPE ..."
template <ByteSink S>
Status write_error(S& sink, std::string_view message) {
  return detail::write_line(sink, '-', message);
}
/// `:<n>`
template <ByteSink S>
Status write_integer(S& sink, int64_t n) {
  char buf[24];
  return sink.write(std::string_view(buf, detail::format_header(buf, ':', n)));
}
/// `$<len>\r\n<bytes>\r\n`
template <ByteSink S>
Status write_bulk(S& sink, std::string_view bytes) {
  char buf[detail::kStackReply];
  size_t head = detail::format_header(buf, '$', static_cast<int64_t>(bytes.size()));
  if (head + bytes.size() + 2 <= sizeof(buf)) {
    std::memcpy(buf + head, bytes.data(), bytes.size());
    std::memcpy(buf + head + bytes.size(), "\r\n", 2);
    return sink.write(std::string_view(buf, head + bytes.size() + 2));
  }
  return write_parts(sink, std::string_view(buf, head), bytes, "\r\n");
}
/// $-1 (a missing value)
template <ByteSink S>
Status write_null_bulk(S& sink) {
  return sink.write("$-1\r\n");
}
/// `*<n>`, followed by n values written by the caller.
template <ByteSink S>
Status write_array_header(S& sink, size_t n) {
  char buf[24];
  return sink.write(std::string_view(buf, detail::format_header(buf, '*', static_cast<int64_t>(n))));
}
/// *-1
template <ByteSink S>
Status write_null_array(S& sink) {
  return sink.write("*-1\r\n");
}

}  // namespace resp

template <ByteSink S>
Status RespCodec::write_error_reply(const ProtocolError& error, S& sink) const {
  std::string line = "ERR Protocol error: ";
  line += error.reason;
  return resp::write_error(sink, line);
}

template <ByteSink S>
Status RespCodec::encode(std::span<const std::string_view> args, S& sink) {
  if (Status s = resp::write_array_header(sink, args.size()); !s) return s;
  for (std::string_view arg : args) {
    if (Status s = resp::write_bulk(sink, arg); !s) return s;
  }
  return Status::ok();
}

/// FramedHandler<RespCodec> that hides the empty commands decode may return (see the file
/// comment): implement on_command instead of on_message.
/// Threads: FramedHandler's; on_command runs on the connection's loop thread.
class RINGNET_PROTO_EXPORT RespHandler : public FramedHandler<RespCodec> {
 public:
  using FramedHandler<RespCodec>::FramedHandler;

  /// A non-empty command; runs on the connection's loop, in arrival order.
  virtual Action on_command(Conn& conn, const RespCommand& cmd) = 0;

  /// Skips empty commands and passes the others to on_command.
  Action on_message(Conn& conn, const RespCommand& cmd) final {
    return cmd.empty() ? Action::kNone : on_command(conn, cmd);
  }
};

}  // namespace ringnet::proto
