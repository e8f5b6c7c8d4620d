// SPDX-License-Identifier: MIT
// Reading and checking the job configuration (job_config.h). nlohmann::json throws; every
// throw is caught here, and the API answers with an error string instead.
#include "job_config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace jobs {
namespace {

using json = nlohmann::json;
using ringnet::proto::RpcCode;
using std::chrono::milliseconds;

constexpr int64_t kDayMs = 24 * 3600 * 1000;

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool valid_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// Reads the fields of one JSON object. The first problem is written to `error`, prefixed
// with `where` (the job), and every read after it fails too, so callers can chain reads.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string where, std::string* error)
      : obj_(obj), where_(std::move(where)), error_(error) {}

  bool fail(std::string_view key, const std::string& what) {
    if (ok_ && error_) *error_ = where_ + ": " + in_quotes(key) + ": " + what;
    ok_ = false;
    return false;
  }
  bool ok() const { return ok_; }
  bool has(std::string_view key) const { return obj_.contains(key); }

  // Any key not in `known` is an error: a misspelt optional field would be ignored.
  bool only(std::initializer_list<std::string_view> known) {
    for (const auto& item : obj_.items()) {
      if (std::find(known.begin(), known.end(), item.key()) == known.end()) {
        return fail(item.key(), "unknown field");
      }
    }
    return ok_;
  }

  // An optional string; `*out` keeps its default when absent.
  bool string(std::string_view key, std::string* out, bool required = false) {
    const auto it = obj_.find(key);
    if (!ok_) return false;
    if (it == obj_.end()) return required ? fail(key, "missing") : true;
    if (!it->is_string()) return fail(key, "expected a string");
    *out = it->get<std::string>();
    return true;
  }

  // An optional integer in [lo, hi].
  bool integer(std::string_view key, int64_t lo, int64_t hi, int64_t* out,
               bool required = false) {
    const auto it = obj_.find(key);
    if (!ok_) return false;
    if (it == obj_.end()) return required ? fail(key, "missing") : true;
    if (!it->is_number_integer()) return fail(key, "expected an integer");
    const bool too_big = it->is_number_unsigned() &&
                         it->get<uint64_t>() > static_cast<uint64_t>(hi);
    const int64_t v = too_big ? hi : it->get<int64_t>();
    if (too_big || v < lo || v > hi) {
      return fail(key, "out of range " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    *out = v;
    return true;
  }

  bool milliseconds_field(std::string_view key, int64_t lo, milliseconds* out) {
    int64_t v = out->count();
    if (!integer(key, lo, kDayMs, &v)) return false;
    *out = milliseconds{v};
    return true;
  }

  // An optional number in [lo, hi].
  bool number(std::string_view key, double lo, double hi, double* out) {
    const auto it = obj_.find(key);
    if (!ok_ || it == obj_.end()) return ok_;
    if (!it->is_number()) return fail(key, "expected a number");
    const double v = it->get<double>();
    if (!(v >= lo && v <= hi)) {  // NaN cannot come from JSON, but fails here too
      return fail(key, "out of range " + json(lo).dump() + ".." + json(hi).dump());
    }
    *out = v;
    return true;
  }

  // A reader of the object at `key`, whose errors are prefixed with this one's place and
  // go to the same string; nullopt when absent (an error if required) or not an object.
  std::optional<ObjectReader> nested(std::string_view key, bool required = false) {
    const auto it = obj_.find(key);
    if (!ok_) return std::nullopt;
    if (it == obj_.end()) {
      if (required) fail(key, "missing");
      return std::nullopt;
    }
    if (!it->is_object()) {
      fail(key, "expected an object");
      return std::nullopt;
    }
    return ObjectReader(*it, where_ + ": " + in_quotes(key), error_);
  }

  const json& value(std::string_view key) const { return obj_.at(key); }

 private:
  const json& obj_;
  std::string where_;
  std::string* error_;
  bool ok_ = true;
};

bool read_schedule(ObjectReader& r, JobSpec* job) {
  const bool every = r.has("every");
  const bool cron = r.has("cron");
  if (every && cron) return r.fail("every", "give one of \"every\" and \"cron\", not both");
  if (!every && !cron) return r.fail("every", "missing (give \"every\" or \"cron\")");
  std::string text;
  if (every) {
    if (!r.string("every", &text)) return false;
    const auto interval = parse_duration(text);
    if (!interval) {
      return r.fail("every", "bad duration " + in_quotes(text) +
                                 " (expected a whole number then ms, s, m or h)");
    }
    job->schedule = Schedule::every(*interval);
    return true;
  }
  if (!r.string("cron", &text)) return false;
  std::string why;
  auto expr = CronExpr::parse(text, &why);
  if (!expr) return r.fail("cron", why);
  // A satisfiable expression fires within 8 years of any time (Feb 29 across 2100), so
  // one look from a fixed time finds the ones that never fire.
  const std::chrono::sys_seconds y2000{std::chrono::sys_days{std::chrono::year{2000} / 1 / 1}};
  if (!expr->next_after(y2000)) return r.fail("cron", in_quotes(text) + " never fires");
  job->schedule = Schedule::cron(std::move(*expr));
  return true;
}

bool read_target(ObjectReader& job_reader, JobSpec* job) {
  auto t = job_reader.nested("target", /*required=*/true);
  if (!t) return false;
  int64_t method = 0;
  job->target.key = job->name;
  if (!t->only({"service", "method", "key"}) ||
      !t->string("service", &job->target.service, /*required=*/true) ||
      !t->integer("method", 0, std::numeric_limits<uint16_t>::max(), &method, true) ||
      !t->string("key", &job->target.key)) {
    return false;
  }
  if (job->target.service.empty()) return t->fail("service", "empty");
  if (job->target.key.empty()) return t->fail("key", "empty");
  job->target.method = static_cast<uint16_t>(method);
  return true;
}

bool read_retryable(ObjectReader& r, std::vector<RpcCode>* codes) {
  if (!r.has("retryable")) return true;
  const json& list = r.value("retryable");
  if (!list.is_array()) return r.fail("retryable", "expected an array of status code names");
  codes->clear();
  for (size_t i = 0; i < list.size(); ++i) {
    const auto code = list[i].is_string() ? parse_rpc_code(list[i].get<std::string>())
                                          : std::nullopt;
    if (!code || *code == RpcCode::kOk) {
      return r.fail("retryable", list[i].dump() + " is not an error code's name (e.g. " +
                                     "\"UNAVAILABLE\", \"DEADLINE_EXCEEDED\")");
    }
    codes->push_back(*code);
  }
  return true;
}

bool read_retry(ObjectReader& job_reader, RetryPolicy* retry) {
  auto r = job_reader.nested("retry");
  if (!r) return job_reader.ok();
  int64_t attempts = retry->max_attempts;
  if (!r->only({"max_attempts", "backoff_ms", "max_backoff_ms", "jitter", "retryable"}) ||
      !r->integer("max_attempts", 1, 1000, &attempts) ||
      !r->milliseconds_field("backoff_ms", 0, &retry->backoff) ||
      !r->milliseconds_field("max_backoff_ms", 0, &retry->max_backoff) ||
      !r->number("jitter", 0, 1, &retry->jitter) || !read_retryable(*r, &retry->retryable)) {
    return false;
  }
  retry->max_attempts = static_cast<int>(attempts);
  if (retry->max_backoff < retry->backoff) {
    return r->fail("max_backoff_ms", "below \"backoff_ms\"");
  }
  return true;
}

bool read_job(const json& j, size_t index, JobSpec* job, std::string* error) {
  const std::string at = "jobs[" + std::to_string(index) + "]";
  if (!j.is_object()) {
    if (error) *error = at + ": expected an object";
    return false;
  }
  // The name first, so that every later error can say which job it is in.
  ObjectReader named(j, at, error);
  if (!named.string("name", &job->name, /*required=*/true)) return false;
  if (!valid_name(job->name)) {
    return named.fail("name", in_quotes(job->name) + " is not made of [A-Za-z0-9_.-]");
  }
  ObjectReader r(j, "job " + in_quotes(job->name), error);
  if (!r.only({"name", "every", "cron", "target", "payload", "timeout_ms", "retry",
               "concurrency"}) ||
      !read_schedule(r, job) || !read_target(r, job) || !r.string("payload", &job->payload) ||
      !r.milliseconds_field("timeout_ms", 1, &job->timeout) || !read_retry(r, &job->retry)) {
    return false;
  }
  std::string concurrency = "skip";
  if (!r.string("concurrency", &concurrency)) return false;
  if (concurrency == "skip") {
    job->concurrency = Concurrency::kSkip;
  } else if (concurrency == "queue") {
    job->concurrency = Concurrency::kQueue;
  } else if (concurrency == "allow") {
    job->concurrency = Concurrency::kAllow;
  } else {
    return r.fail("concurrency", in_quotes(concurrency) + " is not \"skip\", \"queue\" or \"allow\"");
  }
  return true;
}

bool read_config(const json& root, JobConfig* config, std::string* error) {
  const auto set = [&](std::string what) {
    if (error) *error = std::move(what);
    return false;
  };
  if (!root.is_object()) return set("expected a JSON object with \"jobs\"");
  const auto jobs = root.find("jobs");
  if (jobs == root.end()) return set("missing \"jobs\"");
  if (!jobs->is_array()) return set("\"jobs\": expected an array");
  std::set<std::string> names;
  for (size_t i = 0; i < jobs->size(); ++i) {
    JobSpec job;
    if (!read_job((*jobs)[i], i, &job, error)) return false;
    if (!names.insert(job.name).second) {
      return set("job " + in_quotes(job.name) + ": \"name\": duplicate (jobs[" +
                 std::to_string(i) + "])");
    }
    config->jobs.push_back(std::move(job));
  }
  return true;
}

}  // namespace

std::optional<milliseconds> parse_duration(std::string_view text) {
  int64_t n = 0;
  const char* const end = text.data() + text.size();
  const auto [unit_begin, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc() || text.front() == '-' || n <= 0) return std::nullopt;
  const std::string_view unit(unit_begin, static_cast<size_t>(end - unit_begin));
  int64_t factor = 0;
  if (unit == "ms") factor = 1;
  else if (unit == "s") factor = 1000;
  else if (unit == "m") factor = 60 * 1000;
  else if (unit == "h") factor = 3600 * 1000;
  if (factor == 0 || n > std::numeric_limits<int64_t>::max() / factor) return std::nullopt;
  return milliseconds{n * factor};
}

std::optional<RpcCode> parse_rpc_code(std::string_view name) {
  const auto iequals = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::toupper(static_cast<unsigned char>(x)) ==
                    std::toupper(static_cast<unsigned char>(y));
           });
  };
  if (iequals(name, "UNIMPLEMENTED")) return RpcCode::kUnknownMethod;
  for (int c = 0; c < ringnet::proto::kRpcCodeCount; ++c) {
    const auto code = static_cast<RpcCode>(c);
    if (iequals(name, ringnet::proto::rpc_code_name(code))) return code;
  }
  return std::nullopt;
}

milliseconds RetryPolicy::delay(int attempt, double random01) const {
  // Doubling stops at the cap, so a large attempt number neither loops long nor overflows.
  const int64_t cap = max_backoff.count();
  int64_t d = std::min(backoff.count(), cap);
  for (int i = 1; i < attempt && d > 0 && d < cap; ++i) d = d > cap / 2 ? cap : d * 2;
  const double r = random01 >= 0 ? std::min(random01, 1.0) : 0.0;  // NaN too
  const double j = jitter >= 0 ? std::min(jitter, 1.0) : 0.0;
  return milliseconds{std::llround(static_cast<double>(d) * (1 - j + 2 * j * r))};
}

bool RetryPolicy::retryable_code(RpcCode code) const {
  return std::find(retryable.begin(), retryable.end(), code) != retryable.end();
}

std::optional<JobConfig> parse_job_config(std::string_view text, std::string* error) {
  try {
    const json root = json::parse(text.begin(), text.end(), /*cb=*/nullptr,
                                  /*allow_exceptions=*/true, /*ignore_comments=*/true);
    JobConfig config;
    if (!read_config(root, &config, error)) return std::nullopt;
    return config;
  } catch (const json::exception& e) {
    // parse_error says where ("line 3, column 7"); the typed reads above do not throw.
    if (error) *error = std::string("not valid JSON: ") + e.what();
    return std::nullopt;
  }
}

std::optional<JobConfig> load_job_config(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (error) *error = "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string why;
  auto config = parse_job_config(text.str(), &why);
  if (!config && error) *error = path + ": " + why;
  return config;
}

std::string run_id(std::string_view job, TimeMs scheduled) {
  return std::string(job) + "@" + std::to_string(scheduled.time_since_epoch().count());
}

}  // namespace jobs
