// SPDX-License-Identifier: MIT
/// @file
/// read_frames: the decode loop behind FramedHandler::on_traffic, apart from the engine so
/// that tests and benchmarks drive the very same code over a plain buffer.
///
/// Each arrival decodes every complete frame at the front of the unread bytes, in order.
/// What a partial frame costs is kept linear in its size whatever the arrival pattern:
///   - a resumable codec's State (see codec.h) carries its checkpoint from one arrival to
///     the next, so bytes already examined are not examined again;
///   - Decoded::need says how many bytes must be buffered before decoding can progress (a
///     length read from a header); arrivals below it do not call decode at all.
/// Both live in a DecodeCheckpoint in the connection's protocol_state() slot, created only
/// once a partial frame is worth it (kCheckpointMin: examined that far, or that many bytes
/// still to come) and dropped when no partial frame needs it, so a connection whose frames
/// arrive whole never allocates one, and an idle connection holds none.
///
/// The input is a Conn, or anything with the same peek() / discard(n) / protocol_state() /
/// set_protocol_state() (a test buffer). Its bytes may move between calls, never within one.
/// The read_frames caller owns the protocol_state slot of its connections.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ringnet/config.h"
#include "ringnet/conn.h"
#include "ringnet/handler.h"
#include "ringnet/proto/codec.h"

namespace ringnet::proto {

/// The State of a codec that has none: nothing is ever examined twice by it, or it is cheap.
/// Threads: stateless; any thread.
struct NoDecodeState {
  /// Always 0: every decode call starts at the front of `in`.
  size_t resume_at() const { return 0; }
};

namespace detail {
template <typename C>
struct DecodeStateOf {
  using type = NoDecodeState;
};
template <ResumableCodec C>
struct DecodeStateOf<C> {
  using type = typename C::State;
};
}  // namespace detail

template <typename C>
/// The checkpoint type of codec `C`: `C::State` for a ResumableCodec, else NoDecodeState.
using DecodeState = typename detail::DecodeStateOf<C>::type;

/// decode with the checkpoint when the codec takes one.
template <Codec C>
Decoded decode_resuming(const C& codec, std::string_view in, typename C::Frame& frame,
                        DecodeState<C>& state) {
  if constexpr (ResumableCodec<C>) {
    return codec.decode(in, frame, state);
  } else {
    (void)state;
    return codec.decode(in, frame);
  }
}

/// What a connection keeps between arrivals while a partial frame is worth it.
/// Threads: lives in one connection's protocol_state slot; that connection's loop thread only.
template <Codec C>
struct DecodeCheckpoint final : ConnState {
  /// A checkpoint holding codec state `s` and the byte count `n` to wait for.
  DecodeCheckpoint(DecodeState<C>&& s, size_t n) : state(std::move(s)), need(n) {}
  DecodeState<C> state;  ///< the codec's checkpoint for the partial frame
  size_t need = 0;  ///< buffered bytes below which decode is not called (Decoded::need)
};

/// Work done by read_frames calls, for counters and tests. `examined` charges each decode
/// call with the bytes past its checkpoint (in.size() - resume_at()): an upper bound of what
/// it looked at, and for a codec that starts over on every arrival, exactly that.
/// Threads: a plain value, used by the thread that runs read_frames.
struct DecodeWork {
  uint64_t frames = 0;  ///< frames decoded
  uint64_t calls = 0;  ///< calls to decode
  uint64_t examined = 0;  ///< bytes charged to those calls, as described above
};

template <typename I>
concept FrameInput = requires(I& input, size_t n, std::unique_ptr<ConnState> state) {
  { input.peek() } -> std::convertible_to<std::string_view>;
  input.discard(n);
  { input.protocol_state() } -> std::convertible_to<ConnState*>;
  input.set_protocol_state(std::move(state));
};

/// Decodes the frames at the front of `input`: on_frame(frame) for each (it returns an
/// Action; anything but kNone stops), on_need_more(hint) for a partial frame with a hint,
/// on_error(error) for a protocol error (it must drop the input it no longer wants). The
/// frames' views are valid until the callback returns. Adds to `work`.
template <Codec C, FrameInput In, typename OnFrame, typename OnNeedMore, typename OnError>
Action read_frames(const C& codec, In& input, DecodeWork& work, OnFrame&& on_frame,
                   OnNeedMore&& on_need_more, OnError&& on_error) {
  using Checkpoint = DecodeCheckpoint<C>;
  // Only read_frames ever sets this slot for the connection (see the file comment).
  auto* kept = static_cast<Checkpoint*>(input.protocol_state());
  if (kept != nullptr && std::string_view(input.peek()).size() < kept->need) {
    return Action::kNone;  // the frame cannot progress yet: not worth a call
  }
  std::optional<DecodeState<C>> scratch;
  DecodeState<C>& state = kept != nullptr ? kept->state : scratch.emplace();
  typename C::Frame frame{};
  Action action = Action::kNone;
  bool waiting = false;
  size_t buffered = 0;
  size_t need = 0;
  while (action == Action::kNone) {
    const std::string_view in = input.peek();
    if (in.empty()) break;
    ++work.calls;
    work.examined += in.size() - state.resume_at();
    // Constructed in place: copying a Decoded the callee just wrote stalls the CPU.
    const Decoded d = decode_resuming(codec, in, frame, state);
    if (d.kind == Decoded::kNeedMore) {
      waiting = true;
      buffered = in.size();
      need = d.need;
      if (d.hint != 0) action = on_need_more(d.hint);
      break;
    }
    if (d.kind == Decoded::kError) {
      action = on_error(d.error);
      break;
    }
    ++work.frames;
    action = on_frame(frame);
    input.discard(d.consumed);
  }
  // Keep a checkpoint while a partial frame is worth one; otherwise hold nothing.
  const bool far = need > buffered && need - buffered >= kCheckpointMin;
  const bool keep = waiting && (state.resume_at() >= kCheckpointMin || far);
  if (keep && kept == nullptr) {
    input.set_protocol_state(std::make_unique<Checkpoint>(std::move(*scratch), need));
  } else if (keep) {
    kept->need = need;
  } else if (kept != nullptr) {
    input.set_protocol_state(nullptr);
  }
  return action;
}

/// A FrameInput over an owned buffer, standing in for a connection in tests, fuzz targets
/// and benchmarks: arrive() appends bytes as one arrival, relocate() moves the unread bytes
/// to a new block and scribbles over the old one, as the engine's inbound buffer may move
/// them between arrivals (a decoder that kept a pointer reads garbage).
/// Threads: not synchronised; one thread at a time.
class StringInput {
 public:
  /// The unread bytes, valid until the next arrive(), discard() or relocate().
  std::string_view peek() const { return std::string_view(buf_).substr(start_); }
  /// Drops up to `n` unread bytes from the front (default: all); returns how many.
  size_t discard(size_t n = std::string_view::npos) {
    n = std::min(n, buf_.size() - start_);
    start_ += n;
    return n;
  }
  /// The protocol_state slot, as Conn::protocol_state(); nullptr when empty.
  ConnState* protocol_state() const { return state_.get(); }
  /// Replaces the protocol_state slot (nullptr empties it).
  void set_protocol_state(std::unique_ptr<ConnState> state) { state_ = std::move(state); }

  /// Appends `bytes` as one arrival, first compacting when half the buffer is consumed.
  void arrive(std::string_view bytes) {
    if (start_ != 0 && start_ >= buf_.size() / 2) relocate();  // drop consumed bytes
    buf_.append(bytes);
  }
  /// Moves the unread bytes to a new block and fills the old one with 0xAA.
  void relocate() {
    std::string moved(peek());
    std::fill(buf_.begin(), buf_.end(), '\xAA');
    buf_.swap(moved);
    start_ = 0;
  }

 private:
  std::string buf_;
  size_t start_ = 0;
  std::unique_ptr<ConnState> state_;
};
static_assert(FrameInput<StringInput>);

}  // namespace ringnet::proto
