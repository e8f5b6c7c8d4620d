// SPDX-License-Identifier: MIT
// The job dispatcher's configuration (samples/job_dispatcher/job_config.h): a full config
// is read field by field, omitted fields take their defaults, each mistake is refused with
// the job and field named; RetryPolicy's delay doubles, stops at its cap and stays within
// its jitter; run ids are the same for the same run.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "job_config.h"

namespace jobs {
namespace {

using namespace std::chrono;
using ringnet::proto::RpcCode;

JobConfig must_parse(const std::string& json) {
  std::string error;
  auto config = parse_job_config(json, &error);
  EXPECT_TRUE(config.has_value()) << error;
  return config ? *config : JobConfig{};
}

// The error for `json`, which must be refused.
std::string refusal(const std::string& json) {
  std::string error;
  EXPECT_FALSE(parse_job_config(json, &error).has_value()) << "accepted: " << json;
  EXPECT_FALSE(error.empty()) << json;
  return error;
}

// A config of one job: `fields` spliced after the required ones (name "j", every 1s).
std::string one_job(const std::string& fields) {
  return R"({"jobs": [{"name": "j", "target": {"service": "w", "method": 1})" + fields + "}]}";
}

TEST(JobConfig, EveryFieldIsRead) {
  const JobConfig config = must_parse(R"({
    // Comments are allowed.
    "jobs": [
      { "name": "report.daily-1", "cron": "*/5 * * * *",
        "target": { "service": "worker", "method": 7, "key": "tenant-42" },
        "payload": "hello", "timeout_ms": 2500,
        "retry": { "max_attempts": 3, "backoff_ms": 50, "max_backoff_ms": 400,
                   "jitter": 0.5, "retryable": ["unavailable", "INTERNAL", "UNIMPLEMENTED"] },
        "concurrency": "queue" },
      { "name": "tick", "every": "500ms", "target": { "service": "w2", "method": 65535 },
        "concurrency": "allow" }
    ] })");
  ASSERT_EQ(config.jobs.size(), 2u);
  const JobSpec& a = config.jobs[0];
  EXPECT_EQ(a.name, "report.daily-1");
  EXPECT_EQ(a.schedule.describe(), "cron */5 * * * *");
  EXPECT_EQ(a.target.service, "worker");
  EXPECT_EQ(a.target.method, 7);
  EXPECT_EQ(a.target.key, "tenant-42");
  EXPECT_EQ(a.payload, "hello");
  EXPECT_EQ(a.timeout, milliseconds{2500});
  EXPECT_EQ(a.retry.max_attempts, 3);
  EXPECT_EQ(a.retry.backoff, milliseconds{50});
  EXPECT_EQ(a.retry.max_backoff, milliseconds{400});
  EXPECT_DOUBLE_EQ(a.retry.jitter, 0.5);
  EXPECT_EQ(a.retry.retryable, (std::vector<RpcCode>{RpcCode::kUnavailable, RpcCode::kInternal,
                                                     RpcCode::kUnknownMethod}));
  EXPECT_EQ(a.concurrency, Concurrency::kQueue);
  const JobSpec& b = config.jobs[1];
  EXPECT_EQ(b.schedule.describe(), "every 500ms");
  EXPECT_EQ(b.target.method, 65535);
  EXPECT_EQ(b.concurrency, Concurrency::kAllow);
}

TEST(JobConfig, OmittedFieldsTakeTheirDefaults) {
  const JobConfig config = must_parse(one_job(R"(, "every": "1s")"));
  ASSERT_EQ(config.jobs.size(), 1u);
  const JobSpec& j = config.jobs[0];
  EXPECT_EQ(j.target.key, "j");  // the job's name
  EXPECT_EQ(j.payload, "");
  EXPECT_EQ(j.timeout, milliseconds{1000});
  EXPECT_EQ(j.retry.max_attempts, 5);
  EXPECT_EQ(j.retry.backoff, milliseconds{100});
  EXPECT_EQ(j.retry.max_backoff, milliseconds{5000});
  EXPECT_DOUBLE_EQ(j.retry.jitter, 0.2);
  EXPECT_EQ(j.retry.retryable, (std::vector<RpcCode>{RpcCode::kUnavailable,
                                                     RpcCode::kDeadlineExceeded,
                                                     RpcCode::kResourceExhausted}));
  EXPECT_EQ(j.concurrency, Concurrency::kSkip);
  // A retry object with some fields keeps the defaults of the others.
  const JobSpec k = must_parse(one_job(R"(, "every": "1s", "retry": {"jitter": 0})")).jobs[0];
  EXPECT_DOUBLE_EQ(k.retry.jitter, 0);
  EXPECT_EQ(k.retry.max_attempts, 5);
  // No jobs is a valid (idle) config; other top-level sections are someone else's.
  EXPECT_TRUE(must_parse(R"({"jobs": [], "cluster": {"replicas": 3}})").jobs.empty());
}

TEST(JobConfig, DurationsOfEveryUnit) {
  EXPECT_EQ(parse_duration("500ms"), milliseconds{500});
  EXPECT_EQ(parse_duration("1s"), milliseconds{1000});
  EXPECT_EQ(parse_duration("5m"), milliseconds{300'000});
  EXPECT_EQ(parse_duration("1h"), milliseconds{3'600'000});
  for (const char* bad : {"", "0s", "-1s", "1", "s", "1.5s", "1 s", "1S", "1d", "1sec",
                          "99999999999999999999ms", "9999999999999999h"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(JobConfig, StatusCodeNamesAreRpcCodeNamesInAnyCase) {
  for (int c = 0; c < ringnet::proto::kRpcCodeCount; ++c) {
    const auto code = static_cast<RpcCode>(c);
    EXPECT_EQ(parse_rpc_code(ringnet::proto::rpc_code_name(code)), code);
  }
  EXPECT_EQ(parse_rpc_code("deadline_exceeded"), RpcCode::kDeadlineExceeded);
  EXPECT_EQ(parse_rpc_code("Unimplemented"), RpcCode::kUnknownMethod);
  EXPECT_FALSE(parse_rpc_code("NOT_A_CODE").has_value());
  EXPECT_FALSE(parse_rpc_code("INVALID_CODE").has_value());
}

// Each mistake, and words its error must contain (the job and the field).
struct Mistake {
  const char* what;
  std::string json;
  std::vector<const char*> words;
};

TEST(JobConfig, MistakesAreRefusedNamingTheJobAndField) {
  const std::string target = R"("target": {"service": "w", "method": 1})";
  const Mistake mistakes[] = {
      {"not JSON", "{\"jobs\": [", {"not valid JSON"}},
      {"not an object", "[1, 2]", {"object"}},
      {"no jobs", "{}", {"\"jobs\""}},
      {"jobs not an array", R"({"jobs": {}})", {"\"jobs\"", "array"}},
      {"job not an object", R"({"jobs": [42]})", {"jobs[0]", "object"}},
      {"missing name", R"({"jobs": [{"every": "1s", )" + target + "}]}",
       {"jobs[0]", "\"name\"", "missing"}},
      {"name not a string", R"({"jobs": [{"name": 5, "every": "1s", )" + target + "}]}",
       {"jobs[0]", "\"name\""}},
      {"bad name", R"({"jobs": [{"name": "a b", "every": "1s", )" + target + "}]}",
       {"jobs[0]", "\"name\"", "a b"}},
      {"duplicate name",
       R"({"jobs": [{"name": "j", "every": "1s", )" + target + R"(},
                    {"name": "j", "every": "2s", )" + target + "}]}",
       {"job \"j\"", "duplicate", "jobs[1]"}},
      {"every and cron", one_job(R"(, "every": "1s", "cron": "* * * * *")"),
       {"job \"j\"", "not both"}},
      {"neither every nor cron", one_job(""), {"job \"j\"", "\"every\"", "\"cron\""}},
      {"bad duration", one_job(R"(, "every": "5x")"), {"job \"j\"", "\"every\"", "5x"}},
      {"zero duration", one_job(R"(, "every": "0ms")"), {"job \"j\"", "\"every\""}},
      {"every not a string", one_job(R"(, "every": 1000)"), {"job \"j\"", "\"every\""}},
      {"bad cron", one_job(R"(, "cron": "61 * * * *")"), {"job \"j\"", "\"cron\"", "minute"}},
      {"cron never fires", one_job(R"(, "cron": "0 0 30 2 *")"),
       {"job \"j\"", "\"cron\"", "never fires"}},
      {"unknown concurrency", one_job(R"(, "every": "1s", "concurrency": "sometimes")"),
       {"job \"j\"", "\"concurrency\"", "sometimes"}},
      {"unknown status code",
       one_job(R"(, "every": "1s", "retry": {"retryable": ["UNAVAILABLE", "FLAKY"]})"),
       {"job \"j\"", "\"retry\"", "\"retryable\"", "FLAKY"}},
      {"OK is not retryable", one_job(R"(, "every": "1s", "retry": {"retryable": ["OK"]})"),
       {"job \"j\"", "\"retryable\"", "OK"}},
      {"retryable not an array", one_job(R"(, "every": "1s", "retry": {"retryable": "OK"})"),
       {"job \"j\"", "\"retryable\""}},
      {"zero attempts", one_job(R"(, "every": "1s", "retry": {"max_attempts": 0})"),
       {"job \"j\"", "\"retry\"", "\"max_attempts\""}},
      {"jitter above 1", one_job(R"(, "every": "1s", "retry": {"jitter": 1.5})"),
       {"job \"j\"", "\"jitter\""}},
      {"cap below backoff",
       one_job(R"(, "every": "1s", "retry": {"backoff_ms": 500, "max_backoff_ms": 100})"),
       {"job \"j\"", "\"max_backoff_ms\""}},
      {"unknown retry field", one_job(R"(, "every": "1s", "retry": {"attempts": 3})"),
       {"job \"j\"", "\"retry\"", "\"attempts\"", "unknown"}},
      {"misspelt field", one_job(R"(, "every": "1s", "timout_ms": 5)"),
       {"job \"j\"", "\"timout_ms\"", "unknown"}},
      {"zero timeout", one_job(R"(, "every": "1s", "timeout_ms": 0)"),
       {"job \"j\"", "\"timeout_ms\""}},
      {"fractional timeout", one_job(R"(, "every": "1s", "timeout_ms": 1.5)"),
       {"job \"j\"", "\"timeout_ms\"", "integer"}},
      {"payload not a string", one_job(R"(, "every": "1s", "payload": {})"),
       {"job \"j\"", "\"payload\""}},
      {"missing target", R"({"jobs": [{"name": "j", "every": "1s"}]})",
       {"job \"j\"", "\"target\"", "missing"}},
      {"missing service", R"({"jobs": [{"name": "j", "every": "1s", "target": {"method": 1}}]})",
       {"job \"j\"", "\"target\"", "\"service\"", "missing"}},
      {"missing method",
       R"({"jobs": [{"name": "j", "every": "1s", "target": {"service": "w"}}]})",
       {"job \"j\"", "\"target\"", "\"method\""}},
      {"method out of range",
       R"({"jobs": [{"name": "j", "every": "1s", "target": {"service": "w", "method": 65536}}]})",
       {"job \"j\"", "\"method\"", "range"}},
      {"huge method",
       R"({"jobs": [{"name": "j", "every": "1s", "target": {"service": "w",
           "method": 18446744073709551615}}]})",
       {"job \"j\"", "\"method\"", "range"}},
      {"empty key",
       R"({"jobs": [{"name": "j", "every": "1s", "target": {"service": "w", "method": 1,
           "key": ""}}]})",
       {"job \"j\"", "\"key\"", "empty"}},
  };
  for (const Mistake& m : mistakes) {
    SCOPED_TRACE(m.what);
    const std::string error = refusal(m.json);
    for (const char* word : m.words) {
      EXPECT_NE(error.find(word), std::string::npos) << "\"" << word << "\" not in: " << error;
    }
  }
}

TEST(JobConfig, LoadReadsAFileAndNamesItInErrors) {
  const std::string path = testing::TempDir() + "test_job_config.json";
  {
    std::ofstream out(path);
    out << one_job(R"(, "every": "1m")");
  }
  std::string error;
  const auto config = load_job_config(path, &error);
  ASSERT_TRUE(config.has_value()) << error;
  EXPECT_EQ(config->jobs.at(0).schedule.describe(), "every 60000ms");
  {
    std::ofstream out(path);
    out << "{";
  }
  EXPECT_FALSE(load_job_config(path, &error).has_value());
  EXPECT_NE(error.find(path), std::string::npos) << error;
  std::remove(path.c_str());
  EXPECT_FALSE(load_job_config(path, &error).has_value());
  EXPECT_NE(error.find("cannot read"), std::string::npos) << error;
}

TEST(RetryPolicy, DelayDoublesUpToTheCap) {
  RetryPolicy p;
  p.backoff = milliseconds{100};
  p.max_backoff = milliseconds{1000};
  p.jitter = 0;
  const int64_t expected[] = {100, 200, 400, 800, 1000, 1000};
  for (int attempt = 1; attempt <= 6; ++attempt) {
    EXPECT_EQ(p.delay(attempt, 0.5).count(), expected[attempt - 1]) << attempt;
  }
  EXPECT_EQ(p.delay(1'000'000, 0.5), milliseconds{1000});  // no overflow
  EXPECT_EQ(p.delay(0, 0.5), milliseconds{100});           // before the first: as the first
  p.backoff = milliseconds{0};
  EXPECT_EQ(p.delay(10, 0.5), milliseconds{0});
}

TEST(RetryPolicy, JitterStaysWithinItsBounds) {
  RetryPolicy p;  // 100 ms doubling, 20 % jitter
  EXPECT_EQ(p.delay(1, 0.0), milliseconds{80});
  EXPECT_EQ(p.delay(1, 0.5), milliseconds{100});
  EXPECT_EQ(p.delay(1, 1.0), milliseconds{120});
  EXPECT_EQ(p.delay(3, 0.0), milliseconds{320});
  EXPECT_EQ(p.delay(3, 1.0), milliseconds{480});
  EXPECT_EQ(p.delay(10, 1.0), milliseconds{6000});  // the capped 5000 ms, +20 %
  EXPECT_EQ(p.delay(1, -3.0), milliseconds{80});    // random01 is clamped
  EXPECT_EQ(p.delay(1, 7.0), milliseconds{120});
  for (int i = 0; i <= 100; ++i) {
    const auto d = p.delay(2, i / 100.0);
    EXPECT_GE(d, milliseconds{160});
    EXPECT_LE(d, milliseconds{240});
  }
}

TEST(RetryPolicy, RetryableCodes) {
  const RetryPolicy p;
  EXPECT_TRUE(p.retryable_code(RpcCode::kUnavailable));
  EXPECT_TRUE(p.retryable_code(RpcCode::kDeadlineExceeded));
  EXPECT_TRUE(p.retryable_code(RpcCode::kResourceExhausted));
  EXPECT_FALSE(p.retryable_code(RpcCode::kInvalidArgument));
  EXPECT_FALSE(p.retryable_code(RpcCode::kOk));
}

TEST(RunId, SameRunSameIdOnEveryReplicaAndRetry) {
  const TimeMs t{milliseconds{1'733'580'000'000}};
  EXPECT_EQ(run_id("report", t), "report@1733580000000");
  EXPECT_EQ(run_id("report", t), run_id(std::string("report"), TimeMs{t}));
  EXPECT_NE(run_id("report", t), run_id("report", t + milliseconds{1}));
  EXPECT_NE(run_id("report", t), run_id("other", t));
  // Schedules give the same run on every replica: the interval's next time is a multiple.
  const Schedule s = Schedule::every(seconds{5});
  EXPECT_EQ(run_id("tick", s.next_after(t + milliseconds{1234})), "tick@1733580005000");
  EXPECT_EQ(run_id("tick", s.next_after(t + milliseconds{4321})), "tick@1733580005000");
}

}  // namespace
}  // namespace jobs
