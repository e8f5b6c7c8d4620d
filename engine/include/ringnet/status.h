// SPDX-License-Identifier: MIT
/// @file
/// Status: the error type of every fallible ringnet call. No exceptions cross the hot path;
/// callers must look at what they get back ([[nodiscard]]).
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "ringnet/config.h"

namespace ringnet {

/// The result of a fallible call: ok, or an error code and message.
/// Threads: a plain value; no shared state.
class [[nodiscard]] RINGNET_EXPORT Status {
 public:
  Status() = default;  ///< ok
  /// A success.
  static Status ok() { return Status(); }
  /// An error from a syscall: `err` is the errno value, `what` names the failed step.
  static Status from_errno(int err, std::string_view what);
  /// An error that is not a syscall failure (bad argument, bad state).
  static Status invalid(std::string_view what) { return Status(-1, std::string(what)); }

  /// True for success.
  bool is_ok() const { return code_ == 0; }
  /// is_ok().
  explicit operator bool() const { return is_ok(); }
  /// errno value for syscall failures, -1 for other errors, 0 for ok.
  int code() const { return code_; }
  /// What failed; empty for ok.
  const std::string& message() const { return message_; }
  /// Explicitly drop a status the caller has decided not to act on.
  void ignore() const {}

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}
  int code_ = 0;
  std::string message_;
};

}  // namespace ringnet
