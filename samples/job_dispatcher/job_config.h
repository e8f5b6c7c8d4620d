// SPDX-License-Identifier: MIT
// The job dispatcher's configuration: the jobs, read and checked from JSON.
//
//   { "jobs": [ {
//       "name": "report",                  required, unique, [A-Za-z0-9_.-]+
//       "every": "500ms" | "1s" | "5m" | "1h",    exactly one of "every" and "cron"
//       "cron": "*/5 * * * *",             UTC (cron.h)
//       "target": { "service": "worker", "method": 1, "key": "..." },  key: the job's name
//       "payload": "...",                  sent to the worker; default empty
//       "timeout_ms": 1000,                per attempt
//       "retry": { "max_attempts": 5, "backoff_ms": 100, "max_backoff_ms": 5000,
//                  "jitter": 0.2,
//                  "retryable": ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"] },
//       "concurrency": "skip" | "queue" | "allow"    default "skip"
//   } ] }
//
// Everything but name, target.service, target.method and one of every/cron is optional,
// with the defaults above. Unknown fields inside a job are errors (a misspelt "timout_ms"
// must not silently become the default); other top-level sections are left to their
// readers. Comments (// and /* */) are allowed.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringnet/proto/rpc_status.h"
#include "schedule.h"

namespace jobs {

/// How failed attempts of one run are retried. Threads: a plain value.
struct RetryPolicy {
  int max_attempts = 5;  ///< attempts per run, the first included (1 = no retries)
  std::chrono::milliseconds backoff{100};       ///< the delay after the first failure
  std::chrono::milliseconds max_backoff{5000};  ///< the cap of the doubling delay
  double jitter = 0.2;  ///< 0..1: the delay is scaled by a random factor in [1-j, 1+j]
  /// Codes worth another attempt; any other failure ends the run.
  std::vector<ringnet::proto::RpcCode> retryable = {
      ringnet::proto::RpcCode::kUnavailable, ringnet::proto::RpcCode::kDeadlineExceeded,
      ringnet::proto::RpcCode::kResourceExhausted};

  /// The wait after failed attempt number `attempt` (1-based) before the next:
  /// min(max_backoff, backoff * 2^(attempt-1)) * (1 - jitter + 2 * jitter * random01),
  /// `random01` in [0, 1] (clamped), e.g. from the caller's generator.
  std::chrono::milliseconds delay(int attempt, double random01) const;
  /// Whether a failure with `code` may be retried.
  bool retryable_code(ringnet::proto::RpcCode code) const;
};

/// What a run does when the previous run of its job is still going.
enum class Concurrency {
  kSkip,   ///< the new run is dropped
  kQueue,  ///< it starts when the previous one ends
  kAllow,  ///< it starts at once, alongside
};

/// Where a run is sent.
struct JobTarget {
  std::string service;  ///< the worker service's name
  uint16_t method = 0;  ///< the RPC method number
  std::string key;      ///< routing key (which worker); the job's name unless given
};

/// One configured job. Threads: a plain value.
struct JobSpec {
  std::string name;
  Schedule schedule;
  JobTarget target;
  std::string payload;
  std::chrono::milliseconds timeout{1000};  ///< per attempt
  RetryPolicy retry;
  Concurrency concurrency = Concurrency::kSkip;
};

/// All the jobs, in the order of the file.
struct JobConfig {
  std::vector<JobSpec> jobs;
};

/// Parses and checks a configuration. On failure returns nullopt and, when `error` is not
/// null, sets it to the first problem found, naming the job and the field, e.g.
/// `job "report": "every": bad duration "5x" (expected a whole number then ms, s, m or h)`.
std::optional<JobConfig> parse_job_config(std::string_view json, std::string* error);
/// parse_job_config on the file at `path`; a file that cannot be read is an error too.
std::optional<JobConfig> load_job_config(const std::string& path, std::string* error);

/// A duration as the config writes it: a whole number > 0 then ms, s, m or h ("500ms",
/// "5m"); nullopt otherwise.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
/// The code whose rpc_code_name is `name` (any case; "UNIMPLEMENTED", gRPC's name, is
/// kUnknownMethod); nullopt for other names.
std::optional<ringnet::proto::RpcCode> parse_rpc_code(std::string_view name);

/// The id of the run of `job` scheduled at `scheduled`: "report@1733580000000" (Unix
/// milliseconds). The same on every replica and for every attempt of that run, so a
/// worker can drop duplicates by it.
std::string run_id(std::string_view job, TimeMs scheduled);

}  // namespace jobs
