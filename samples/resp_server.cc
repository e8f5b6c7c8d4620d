// SPDX-License-Identifier: MIT
// resp_server: an in-memory key-value server that speaks RESP2, enough of redis for
// redis-cli, redis-benchmark and `redis-cli --pipe` to work against it.
//
//   resp_server --port 6379 [--loops N] [--backend auto|epoll|io_uring] [...]  (--help)
//   redis-cli -p 6379 SET greeting hello EX 60
//
// Commands: PING ECHO SET (EX PX NX XX GET KEEPTTL) GET DEL EXISTS INCR DECR INCRBY DECRBY
// MGET MSET EXPIRE PEXPIRE (NX XX GT LT) TTL PTTL DBSIZE FLUSHALL FLUSHDB SELECT(0)
// COMMAND (COUNT DOCS INFO LIST) CONFIG GET CLIENT (SETNAME GETNAME SETINFO) INFO HELLO
// QUIT. Replies and error texts follow redis 7. HELLO 3 is refused (-NOPROTO) so clients
// stay on RESP2. Commands run synchronously on the connection's loop against one shared,
// sharded store (resp_keyspace.h says why); expired keys are swept from on_tick.
#include <ringnet/proto/resp.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "resp_keyspace.h"
#include "sample_main.h"

namespace {

using ringnet::Action;
using ringnet::Conn;
using ringnet::Status;
using ringnet::proto::RespCommand;
using ringnet::proto::resp_iequals;
namespace resp = ringnet::proto::resp;
using sample::Keyspace;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr size_t kSweepBudget = 32;  // entries examined per shard per tick

// A signed 64-bit decimal as redis reads one (string2ll): optional '-', no leading
// zeros, no '+' or spaces, no overflow.
bool parse_int64(std::string_view s, int64_t* out) {
  bool negative = !s.empty() && s[0] == '-';
  std::string_view digits = s.substr(negative ? 1 : 0);
  if (digits.empty() || digits.size() > 19 || (digits[0] == '0' && s.size() > 1)) return false;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');  // 19 digits cannot wrap a uint64
  }
  const uint64_t limit = negative ? uint64_t{1} << 63 : static_cast<uint64_t>(kMax);
  if (v > limit) return false;
  *out = negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return true;
}

std::string_view format_int64(int64_t v, char (&buf)[24]) {
  return {buf, static_cast<size_t>(std::to_chars(buf, buf + sizeof(buf), v).ptr - buf)};
}

Status error(Conn& c, std::string_view message) { return resp::write_error(c, message); }
Status not_an_integer(Conn& c) { return error(c, "ERR value is not an integer or out of range"); }
Status syntax_error(Conn& c) { return error(c, "ERR syntax error"); }
Status wrong_arity(Conn& c, std::string_view name) {
  return error(c, "ERR wrong number of arguments for '" + std::string(name) + "' command");
}
Status unknown_subcommand(Conn& c, const RespCommand& cmd) {
  std::string name(cmd[0]);
  for (char& ch : name) ch = (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 32) : ch;
  return error(c, "ERR unknown subcommand '" + std::string(cmd[1].substr(0, 128)) + "'. Try " +
                      name + " HELP.");
}
// Redis' text, args quoted and cut near 128 bytes.
Status unknown_command(Conn& c, const RespCommand& cmd) {
  std::string args;
  for (size_t i = 1; i < cmd.size() && args.size() < 128; ++i) {
    args += '\'';
    args += cmd[i].substr(0, 128 - args.size() + 1);
    args += "' ";
  }
  return error(c, "ERR unknown command '" + std::string(cmd[0].substr(0, 128)) +
                      "', with args beginning with: " + args);
}

// now + amount * unit_ms, or false when that overflows (redis: "invalid expire time").
bool deadline_after(int64_t amount, int64_t unit_ms, int64_t now, int64_t* at) {
  if (amount > kMax / unit_ms || amount < kMin / unit_ms) return false;
  int64_t ms = amount * unit_ms;
  if (ms > 0 && now > kMax - ms) return false;
  *at = now + ms;
  return true;
}

class RespServer final : public ringnet::proto::RespHandler {
 public:
  Action on_command(Conn& c, const RespCommand& cmd) override {
    const Command* command = find(cmd[0]);
    if (command == nullptr) return done(unknown_command(c, cmd));
    int arity = command->arity;
    if ((arity > 0 && cmd.size() != static_cast<size_t>(arity)) ||
        (arity < 0 && cmd.size() < static_cast<size_t>(-arity))) {
      return done(wrong_arity(c, command->name));
    }
    if (command->run == &RespServer::quit) {
      quit(c, cmd).ignore();  // closing either way; the +OK is flushed first
      return Action::kClose;
    }
    return done((this->*command->run)(c, cmd));
  }

  ringnet::TickResult on_tick() override {
    keyspace_.sweep_expired(kSweepBudget);
    return {std::chrono::milliseconds(100), Action::kNone};
  }

 private:
  using Run = Status (RespServer::*)(Conn&, const RespCommand&);
  struct Command {
    std::string_view name;  // lower case, as in redis' arity errors
    int arity;              // redis style: n = exactly n args, -n = at least n
    Run run;
  };

  static Action done(const Status& s) { return s ? Action::kNone : Action::kClose; }

  static const Command* find(std::string_view name);

  // ---- connection and server commands -------------------------------------------------

  Status ping(Conn& c, const RespCommand& cmd) {
    if (cmd.size() > 2) return wrong_arity(c, "ping");
    return cmd.size() == 2 ? resp::write_bulk(c, cmd[1]) : c.write("+PONG\r\n");
  }
  Status echo(Conn& c, const RespCommand& cmd) { return resp::write_bulk(c, cmd[1]); }
  Status quit(Conn& c, const RespCommand&) { return resp::write_ok(c); }

  Status select(Conn& c, const RespCommand& cmd) {
    int64_t db = 0;
    if (!parse_int64(cmd[1], &db)) return not_an_integer(c);
    return db == 0 ? resp::write_ok(c) : error(c, "ERR DB index is out of range");
  }

  Status dbsize(Conn& c, const RespCommand&) {
    return resp::write_integer(c, static_cast<int64_t>(keyspace_.size()));
  }

  Status flush(Conn& c, const RespCommand& cmd) {
    if (cmd.size() > 2 || (cmd.size() == 2 && !resp_iequals(cmd[1], "ASYNC") &&
                           !resp_iequals(cmd[1], "SYNC"))) {
      return syntax_error(c);
    }
    keyspace_.clear();
    return resp::write_ok(c);
  }

  Status command(Conn& c, const RespCommand& cmd) {
    if (cmd.size() == 1) return resp::write_array_header(c, 0);
    if (resp_iequals(cmd[1], "COUNT")) {
      return resp::write_integer(c, static_cast<int64_t>(std::size(kCommands)));
    }
    // An empty answer is enough for redis-cli's hints (DOCS) and for client libraries.
    if (resp_iequals(cmd[1], "DOCS") || resp_iequals(cmd[1], "INFO") ||
        resp_iequals(cmd[1], "LIST")) {
      return resp::write_array_header(c, 0);
    }
    return unknown_subcommand(c, cmd);
  }

  // CONFIG GET name...: the few settings clients ask about (redis-benchmark reads "save"
  // and "appendonly" at start), as name/value pairs. Names match exactly (ignoring case),
  // not as glob patterns; unknown names are left out, as redis does.
  Status config(Conn& c, const RespCommand& cmd) {
    if (!resp_iequals(cmd[1], "GET")) return unknown_subcommand(c, cmd);
    if (cmd.size() < 3) return wrong_arity(c, "config|get");
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kSettings = {
        {{"save", ""}, {"appendonly", "no"}, {"databases", "1"}}};
    std::string reply;
    size_t found = 0;
    for (size_t i = 2; i < cmd.size(); ++i) {
      for (const auto& [name, value] : kSettings) {
        if (!resp_iequals(cmd[i], name)) continue;
        ringnet::proto::StringSink sink{reply};
        resp::write_bulk(sink, name).ignore();  // a StringSink cannot fail
        resp::write_bulk(sink, value).ignore();
        ++found;
      }
    }
    if (Status s = resp::write_array_header(c, found * 2); !s) return s;
    return c.write(reply);
  }

  Status client(Conn& c, const RespCommand& cmd) {
    if (resp_iequals(cmd[1], "SETNAME")) {
      return cmd.size() == 3 ? resp::write_ok(c) : wrong_arity(c, "client|setname");
    }
    if (resp_iequals(cmd[1], "GETNAME")) {
      return cmd.size() == 2 ? resp::write_null_bulk(c) : wrong_arity(c, "client|getname");
    }
    if (resp_iequals(cmd[1], "SETINFO")) {
      return cmd.size() == 4 ? resp::write_ok(c) : wrong_arity(c, "client|setinfo");
    }
    return unknown_subcommand(c, cmd);
  }

  Status info(Conn& c, const RespCommand&) {
    std::string text =
        "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
        "server_name:ringnet resp_server\r\n\r\n# Keyspace\r\n";
    size_t keys = keyspace_.size();
    if (keys != 0) {
      text += "db0:keys=" + std::to_string(keys) +
              ",expires=" + std::to_string(keyspace_.volatile_size()) + ",avg_ttl=0\r\n";
    }
    return resp::write_bulk(c, text);
  }

  // RESP2 only: HELLO [2] answers as redis does; HELLO 3 gets -NOPROTO, which makes
  // clients fall back to RESP2. AUTH/SETNAME options are accepted and ignored.
  Status hello(Conn& c, const RespCommand& cmd) {
    if (cmd.size() >= 2) {
      int64_t version = 0;
      if (!parse_int64(cmd[1], &version)) {
        return error(c, "ERR Protocol version is not an integer or out of range");
      }
      if (version != 2) return error(c, "NOPROTO unsupported protocol version");
    }
    char id[24];
    std::string_view fields[] = {"server", "redis", "version", "7.0.0", "proto", "2",
                                 "id", format_int64(c.id().pack(), id), "mode", "standalone",
                                 "role", "master", "modules"};
    if (Status s = resp::write_array_header(c, std::size(fields) + 1); !s) return s;
    for (std::string_view f : fields) {
      if (Status s = resp::write_bulk(c, f); !s) return s;
    }
    return resp::write_array_header(c, 0);
  }

  // ---- strings ------------------------------------------------------------------------

  Status get(Conn& c, const RespCommand& cmd) {
    return keyspace_.with_shard(cmd[1], [&](Keyspace::Shard& s) {
      Keyspace::Entry* e = s.find(cmd[1]);
      return e ? resp::write_bulk(c, e->value) : resp::write_null_bulk(c);
    });
  }

  // SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]
  Status set(Conn& c, const RespCommand& cmd) {
    bool nx = false, xx = false, get_old = false, keep_ttl = false, has_ttl = false;
    int64_t ttl_amount = 0, ttl_unit = 0;
    for (size_t i = 3; i < cmd.size(); ++i) {
      std::string_view opt = cmd[i];
      if (resp_iequals(opt, "NX") && !xx) {
        nx = true;
      } else if (resp_iequals(opt, "XX") && !nx) {
        xx = true;
      } else if (resp_iequals(opt, "GET")) {
        get_old = true;
      } else if (resp_iequals(opt, "KEEPTTL") && !has_ttl) {
        keep_ttl = true;
      } else if ((resp_iequals(opt, "EX") || resp_iequals(opt, "PX")) && !has_ttl &&
                 !keep_ttl && i + 1 < cmd.size()) {
        has_ttl = true;
        ttl_unit = resp_iequals(opt, "EX") ? 1000 : 1;
        if (!parse_int64(cmd[++i], &ttl_amount)) return not_an_integer(c);
      } else {
        return syntax_error(c);
      }
    }
    int64_t deadline = Keyspace::kNoExpiry;
    if (has_ttl && (ttl_amount <= 0 ||
                    !deadline_after(ttl_amount, ttl_unit, sample::monotonic_ms(), &deadline))) {
      return error(c, "ERR invalid expire time in 'set' command");
    }
    return keyspace_.with_shard(cmd[1], [&](Keyspace::Shard& s) {
      Keyspace::Entry* e = s.find(cmd[1]);
      if (get_old) {
        Status st = e ? resp::write_bulk(c, e->value) : resp::write_null_bulk(c);
        if (!st) return st;
      }
      if ((nx && e) || (xx && !e)) return get_old ? Status::ok() : resp::write_null_bulk(c);
      bool created = false;
      Keyspace::Entry& entry = e ? *e : s.find_or_create(cmd[1], &created);
      entry.value.assign(cmd[2]);
      if (!keep_ttl) s.set_expiry(entry, deadline);
      return get_old ? Status::ok() : resp::write_ok(c);
    });
  }

  Status incr(Conn& c, const RespCommand& cmd) { return incr_by(c, cmd[1], 1); }
  Status decr(Conn& c, const RespCommand& cmd) { return incr_by(c, cmd[1], -1); }
  Status incrby(Conn& c, const RespCommand& cmd) {
    int64_t by = 0;
    if (!parse_int64(cmd[2], &by)) return not_an_integer(c);
    return incr_by(c, cmd[1], by);
  }
  Status decrby(Conn& c, const RespCommand& cmd) {
    int64_t by = 0;
    if (!parse_int64(cmd[2], &by)) return not_an_integer(c);
    if (by == kMin) return error(c, "ERR decrement would overflow");
    return incr_by(c, cmd[1], -by);
  }
  // The value must read as an int64 (a missing key is 0); its deadline is kept.
  Status incr_by(Conn& c, std::string_view key, int64_t by) {
    return keyspace_.with_shard(key, [&](Keyspace::Shard& s) {
      Keyspace::Entry* e = s.find(key);
      int64_t current = 0;
      if (e && !parse_int64(e->value, &current)) return not_an_integer(c);
      if ((by > 0 && current > kMax - by) || (by < 0 && current < kMin - by)) {
        return error(c, "ERR increment or decrement would overflow");
      }
      bool created = false;
      Keyspace::Entry& entry = e ? *e : s.find_or_create(key, &created);
      char buf[24];
      entry.value.assign(format_int64(current + by, buf));
      return resp::write_integer(c, current + by);
    });
  }

  Status mget(Conn& c, const RespCommand& cmd) {
    if (Status s = resp::write_array_header(c, cmd.size() - 1); !s) return s;
    for (size_t i = 1; i < cmd.size(); ++i) {
      if (Status s = get_one(c, cmd[i]); !s) return s;
    }
    return Status::ok();
  }
  Status get_one(Conn& c, std::string_view key) {
    return keyspace_.with_shard(key, [&](Keyspace::Shard& s) {
      Keyspace::Entry* e = s.find(key);
      return e ? resp::write_bulk(c, e->value) : resp::write_null_bulk(c);
    });
  }

  Status mset(Conn& c, const RespCommand& cmd) {
    if (cmd.size() % 2 == 0) return wrong_arity(c, "mset");
    for (size_t i = 1; i < cmd.size(); i += 2) {
      keyspace_.with_shard(cmd[i], [&](Keyspace::Shard& s) {
        bool created = false;
        Keyspace::Entry& e = s.find_or_create(cmd[i], &created);
        e.value.assign(cmd[i + 1]);
        s.set_expiry(e, Keyspace::kNoExpiry);
      });
    }
    return resp::write_ok(c);
  }

  Status del(Conn& c, const RespCommand& cmd) {
    int64_t removed = 0;
    for (size_t i = 1; i < cmd.size(); ++i) {
      removed += keyspace_.with_shard(cmd[i], [&](Keyspace::Shard& s) { return s.erase(cmd[i]); });
    }
    return resp::write_integer(c, removed);
  }

  Status exists(Conn& c, const RespCommand& cmd) {
    int64_t found = 0;
    for (size_t i = 1; i < cmd.size(); ++i) {
      found += keyspace_.with_shard(cmd[i],
                                    [&](Keyspace::Shard& s) { return s.find(cmd[i]) != nullptr; });
    }
    return resp::write_integer(c, found);
  }

  // ---- expiry -------------------------------------------------------------------------

  Status expire(Conn& c, const RespCommand& cmd) { return expire_in(c, cmd, 1000, "expire"); }
  Status pexpire(Conn& c, const RespCommand& cmd) { return expire_in(c, cmd, 1, "pexpire"); }

  // EXPIRE/PEXPIRE key amount [NX|XX|GT|LT]: 1 when the deadline was set (or the key
  // deleted, for a deadline already past), 0 when the key is missing or a condition failed.
  Status expire_in(Conn& c, const RespCommand& cmd, int64_t unit_ms, std::string_view name) {
    int64_t amount = 0;
    if (!parse_int64(cmd[2], &amount)) return not_an_integer(c);
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < cmd.size(); ++i) {
      if (resp_iequals(cmd[i], "NX")) nx = true;
      else if (resp_iequals(cmd[i], "XX")) xx = true;
      else if (resp_iequals(cmd[i], "GT")) gt = true;
      else if (resp_iequals(cmd[i], "LT")) lt = true;
      else return error(c, "ERR Unsupported option " + std::string(cmd[i]));
    }
    if (nx && (xx || gt || lt)) {
      return error(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if (gt && lt) return error(c, "ERR GT and LT options at the same time are not compatible");
    const int64_t now = sample::monotonic_ms();
    int64_t at = 0;
    if (!deadline_after(amount, unit_ms, now, &at)) {
      return error(c, "ERR invalid expire time in '" + std::string(name) + "' command");
    }
    std::string_view key = cmd[1];
    int64_t result = keyspace_.with_shard(key, [&](Keyspace::Shard& s) -> int64_t {
      Keyspace::Entry* e = s.find(key);
      if (!e) return 0;
      const bool has = e->expires_at_ms != Keyspace::kNoExpiry;
      if ((nx && has) || (xx && !has) || (gt && (!has || at <= e->expires_at_ms)) ||
          (lt && has && at >= e->expires_at_ms)) {
        return 0;
      }
      if (at <= now) {
        s.erase(key);
      } else {
        s.set_expiry(*e, at);
      }
      return 1;
    });
    return resp::write_integer(c, result);
  }

  Status ttl(Conn& c, const RespCommand& cmd) { return ttl_in(c, cmd[1], true); }
  Status pttl(Conn& c, const RespCommand& cmd) { return ttl_in(c, cmd[1], false); }
  // -2: no such key; -1: no deadline; else the time left, seconds rounded as redis does.
  Status ttl_in(Conn& c, std::string_view key, bool seconds) {
    int64_t left = keyspace_.with_shard(key, [&](Keyspace::Shard& s) -> int64_t {
      Keyspace::Entry* e = s.find(key);
      if (!e) return -2;
      if (e->expires_at_ms == Keyspace::kNoExpiry) return -1;
      int64_t ms = std::max<int64_t>(e->expires_at_ms - sample::monotonic_ms(), 0);
      return seconds ? (ms + 500) / 1000 : ms;
    });
    return resp::write_integer(c, left);
  }

  static const std::array<Command, 26> kCommands;

  Keyspace keyspace_;
};

const std::array<RespServer::Command, 26> RespServer::kCommands = {{
    {"get", 2, &RespServer::get},          {"set", -3, &RespServer::set},
    {"ping", -1, &RespServer::ping},       {"echo", 2, &RespServer::echo},
    {"incr", 2, &RespServer::incr},        {"decr", 2, &RespServer::decr},
    {"incrby", 3, &RespServer::incrby},    {"decrby", 3, &RespServer::decrby},
    {"mget", -2, &RespServer::mget},       {"mset", -3, &RespServer::mset},
    {"del", -2, &RespServer::del},         {"exists", -2, &RespServer::exists},
    {"expire", -3, &RespServer::expire},   {"pexpire", -3, &RespServer::pexpire},
    {"ttl", 2, &RespServer::ttl},          {"pttl", 2, &RespServer::pttl},
    {"dbsize", 1, &RespServer::dbsize},    {"flushall", -1, &RespServer::flush},
    {"flushdb", -1, &RespServer::flush},   {"select", 2, &RespServer::select},
    {"command", -1, &RespServer::command}, {"config", -2, &RespServer::config},
    {"client", -2, &RespServer::client},   {"info", -1, &RespServer::info},
    {"hello", -1, &RespServer::hello},     {"quit", -1, &RespServer::quit},
}};

// Linear over a few dozen names: most fail on the length compare alone.
const RespServer::Command* RespServer::find(std::string_view name) {
  for (const Command& command : kCommands) {
    if (resp_iequals(name, command.name)) return &command;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  sample::Flags flags = sample::parse_flags(
      argc, argv,
      "An in-memory key-value server speaking RESP2 (redis 7 replies), enough for redis-cli, "
      "redis-benchmark and redis-cli --pipe. Strings, counters, MGET/MSET and expiry; one "
      "store shared by every loop.",
      {}, sample::server_notes(), "redis");
  flags.options.ticker = true;  // drives the active expiry sweep
  RespServer server;
  return sample::run("resp_server", server, flags,
                     [&server](ringnet::MetricsWriter& w) { server.write_metrics(w, "resp"); });
}
