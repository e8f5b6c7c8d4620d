#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of samples/resp_server with clients nobody on this team wrote: the real
redis-cli (every command the sample implements, exact output), `redis-cli -x` with a binary
value, `redis-cli --pipe` with 10,000 commands, redis-benchmark with and without
pipelining, and raw sockets for malformed frames (answered with -ERR Protocol error, then
closed, while another connection goes on). Ends with SIGTERM, expecting exit 0.

usage: resp_server_clients.py PATH/TO/resp_server [--backend epoll|io_uring] [--loops N]
Exits 77 (skipped) when redis-cli is missing or the io_uring backend is unavailable.
redis-cli prints replies raw when its stdout is not a terminal: a bulk string as its
bytes plus "\\n", nil as an empty line, an error as its text plus "\\n\\n".
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time

import sample_server
from sample_server import connect, recv_n, recv_until_eof

FAILURES = []


def check(what, got, expected):
    if got != expected:
        FAILURES.append(f"{what}: expected {expected!r}, got {got!r}")


class Cli:
    def __init__(self, port):
        self.port = port

    def raw(self, *args, stdin=None, timeout=20):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], input=stdin,
                           capture_output=True, timeout=timeout)
        return r.stdout

    def __call__(self, *args):
        return self.raw(*args).decode("latin-1")

    def expect(self, args, expected):
        check("redis-cli " + " ".join(args), self(*args), expected)

    def expect_one_of(self, args, choices):
        out = self(*args)
        if out not in choices:
            FAILURES.append(f"redis-cli {' '.join(args)}: expected one of {choices!r}, "
                            f"got {out!r}")

    # A TTL in whole seconds just after it was set: `seconds`, or one less if the machine
    # stalled for over half a second in between.
    def ttl(self, key, seconds):
        self.expect_one_of(["TTL", key], [f"{seconds}\n", f"{seconds - 1}\n"])

    def error(self, args, message):
        self.expect(args, message + "\n\n")

    def integer(self, args):
        out = self(*args)
        if not re.fullmatch(r"-?\d+\n", out):
            FAILURES.append(f"redis-cli {' '.join(args)}: not an integer: {out!r}")
            return None
        return int(out)


def check_commands(cli):
    cli.expect(["FLUSHALL"], "OK\n")
    cli.expect(["PING"], "PONG\n")
    cli.expect(["PING", "hello world"], "hello world\n")
    cli.expect(["ECHO", "hi there"], "hi there\n")
    cli.error(["ECHO"], "ERR wrong number of arguments for 'echo' command")
    cli.error(["PING", "a", "b"], "ERR wrong number of arguments for 'ping' command")

    # SET / GET and SET's options
    cli.expect(["SET", "k", "v"], "OK\n")
    cli.expect(["GET", "k"], "v\n")
    cli.expect(["get", "k"], "v\n")  # command names ignore case
    cli.expect(["GET", "missing"], "\n")
    cli.expect(["SET", "k", "v2", "XX"], "OK\n")
    cli.expect(["SET", "k", "v3", "NX"], "\n")
    cli.expect(["SET", "new", "n", "XX"], "\n")
    cli.expect(["SET", "new", "n", "NX"], "OK\n")
    cli.expect(["SET", "k", "v4", "GET"], "v2\n")
    cli.expect(["GET", "k"], "v4\n")
    cli.error(["SET", "k", "v", "NX", "XX"], "ERR syntax error")
    cli.error(["SET", "k", "v", "EX"], "ERR syntax error")
    cli.error(["SET", "k", "v", "EX", "0"], "ERR invalid expire time in 'set' command")
    cli.error(["SET", "k", "v", "EX", "abc"], "ERR value is not an integer or out of range")
    cli.error(["GET"], "ERR wrong number of arguments for 'get' command")
    cli.error(["SET", "k"], "ERR wrong number of arguments for 'set' command")

    # TTLs
    cli.expect(["SET", "t", "v", "EX", "100"], "OK\n")
    cli.ttl("t", 100)
    pttl = cli.integer(["PTTL", "t"])
    if pttl is not None and not 95000 <= pttl <= 100000:
        FAILURES.append(f"PTTL after EX 100: {pttl}")
    cli.expect(["SET", "p", "v", "PX", "1500"], "OK\n")
    pttl = cli.integer(["PTTL", "p"])
    if pttl is not None and not 0 < pttl <= 1500:
        FAILURES.append(f"PTTL after PX 1500: {pttl}")
    p_set_at = time.monotonic()
    cli.expect(["TTL", "k"], "-1\n")
    cli.expect(["TTL", "missing"], "-2\n")
    cli.expect(["PTTL", "missing"], "-2\n")
    cli.expect(["EXPIRE", "k", "50"], "1\n")
    cli.ttl("k", 50)
    cli.expect(["EXPIRE", "k", "60", "NX"], "0\n")
    cli.expect(["EXPIRE", "k", "60", "GT"], "1\n")
    cli.ttl("k", 60)
    cli.expect(["EXPIRE", "missing", "10"], "0\n")
    cli.expect(["PEXPIRE", "k", "5000"], "1\n")
    pttl = cli.integer(["PTTL", "k"])
    if pttl is not None and not 4000 < pttl <= 5000:
        FAILURES.append(f"PTTL after PEXPIRE 5000: {pttl}")
    cli.expect(["SET", "k", "plain"], "OK\n")  # a plain SET clears the deadline
    cli.expect(["TTL", "k"], "-1\n")
    cli.error(["EXPIRE", "k", "soon"], "ERR value is not an integer or out of range")
    cli.expect(["SET", "gone", "v"], "OK\n")
    cli.expect(["EXPIRE", "gone", "-1"], "1\n")  # a deadline in the past deletes
    cli.expect(["GET", "gone"], "\n")
    time.sleep(max(0.0, p_set_at + 1.6 - time.monotonic()))
    cli.expect(["GET", "p"], "\n")  # PX 1500 has passed
    cli.expect(["TTL", "p"], "-2\n")

    # counters
    cli.expect(["INCR", "ctr"], "1\n")
    cli.expect(["INCRBY", "ctr", "10"], "11\n")
    cli.expect(["DECR", "ctr"], "10\n")
    cli.expect(["DECRBY", "ctr", "15"], "-5\n")
    cli.expect(["GET", "ctr"], "-5\n")
    cli.expect(["SET", "big", "9223372036854775807"], "OK\n")
    cli.error(["INCR", "big"], "ERR increment or decrement would overflow")
    cli.expect(["SET", "small", "-9223372036854775808"], "OK\n")
    cli.error(["DECR", "small"], "ERR increment or decrement would overflow")
    cli.error(["DECRBY", "ctr", "-9223372036854775808"], "ERR decrement would overflow")
    cli.expect(["SET", "s", "abc"], "OK\n")
    cli.error(["INCR", "s"], "ERR value is not an integer or out of range")
    cli.error(["INCRBY", "ctr", "x"], "ERR value is not an integer or out of range")
    cli.expect(["SET", "ttlctr", "5", "EX", "100"], "OK\n")
    cli.expect(["INCR", "ttlctr"], "6\n")
    cli.ttl("ttlctr", 100)  # INCR keeps the deadline

    # several keys
    cli.expect(["MSET", "m1", "a", "m2", "b", "m3", "c"], "OK\n")
    cli.expect(["MGET", "m1", "missing", "m3"], "a\n\nc\n")
    cli.error(["MSET", "m1", "a", "m2"], "ERR wrong number of arguments for 'mset' command")
    cli.expect(["EXISTS", "m1", "m1", "missing"], "2\n")
    cli.expect(["DEL", "m1", "m2", "missing"], "2\n")
    cli.expect(["EXISTS", "m1"], "0\n")

    # keyspace and server
    cli.expect(["FLUSHALL"], "OK\n")
    cli.expect(["DBSIZE"], "0\n")
    cli.expect(["MSET", "a", "1", "b", "2", "c", "3"], "OK\n")
    cli.expect(["DBSIZE"], "3\n")
    info = cli("INFO")
    for want in ("redis_version:", "db0:keys=3,expires=0"):
        if want not in info:
            FAILURES.append(f"INFO lacks {want!r}: {info!r}")
    cli.expect(["FLUSHDB"], "OK\n")
    cli.expect(["DBSIZE"], "0\n")
    # Active expiry: keys with a short deadline leave DBSIZE without being touched.
    cli.expect(["SET", "stay", "v"], "OK\n")
    for i in range(5):
        cli.expect(["SET", f"short{i}", "v", "PX", "100"], "OK\n")
    deadline = time.monotonic() + 3
    while cli("DBSIZE") != "1\n" and time.monotonic() < deadline:
        time.sleep(0.05)
    cli.expect(["DBSIZE"], "1\n")
    cli.expect(["SELECT", "0"], "OK\n")
    cli.error(["SELECT", "1"], "ERR DB index is out of range")
    cli.error(["SELECT", "x"], "ERR value is not an integer or out of range")
    cli.expect(["COMMAND"], "\n")
    cli.expect(["COMMAND", "DOCS"], "\n")
    count = cli.integer(["COMMAND", "COUNT"])
    if count is not None and count < 20:
        FAILURES.append(f"COMMAND COUNT: {count}")
    cli.error(["COMMAND", "FOO"], "ERR unknown subcommand 'FOO'. Try COMMAND HELP.")
    cli.expect(["CONFIG", "GET", "save"], "save\n\n")
    cli.expect(["CONFIG", "GET", "appendonly"], "appendonly\nno\n")
    cli.expect(["CONFIG", "GET", "nonexistent"], "\n")
    cli.expect(["CLIENT", "SETNAME", "tester"], "OK\n")
    cli.expect(["CLIENT", "GETNAME"], "\n")
    cli.error(["HELLO", "3"], "NOPROTO unsupported protocol version")
    hello = cli("HELLO", "2")
    if not hello.startswith("server\nredis\nversion\n") or "proto\n2\n" not in hello:
        FAILURES.append(f"HELLO 2: {hello!r}")
    cli.error(["FOO", "a", "b"], "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
    cli.error(["NOSUCH"], "ERR unknown command 'NOSUCH', with args beginning with: ")
    cli.expect(["QUIT"], "OK\n")


def check_binary_value(cli, port):
    value = bytes(range(256)) * 40 + b"\r\n$-1\r\n*0\r\n\x00tail"
    with tempfile.NamedTemporaryFile() as f:
        f.write(value)
        f.flush()
        with open(f.name, "rb") as stdin:
            r = subprocess.run(["redis-cli", "-p", str(port), "-x", "SET", "bin"], stdin=stdin,
                               capture_output=True, timeout=20)
    check("redis-cli -x SET bin", r.stdout, b"OK\n")
    check("redis-cli GET bin", cli.raw("GET", "bin"), value + b"\n")
    # The same bytes as a key, through a raw socket.
    key = b"\x00key\r\n\xff"
    s = connect(port)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\nok\r\n" % (len(key), key) +
              b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
    check("binary key SET+GET", recv_n(s, 13), b"+OK\r\n$2\r\nok\r\n")
    s.close()


def check_pipe(cli, port):
    cli.expect(["FLUSHALL"], "OK\n")
    parts = []
    for i in range(10000):
        if i % 2:
            parts.append(b"*2\r\n$4\r\nINCR\r\n$8\r\npipe:ctr\r\n")
        else:
            key = b"pipe:%d" % i
            parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key))
    r = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=b"".join(parts),
                       capture_output=True, timeout=30)
    out = r.stdout.decode("latin-1")
    if "errors: 0, replies: 10000" not in out or r.returncode != 0:
        FAILURES.append(f"redis-cli --pipe: rc={r.returncode} {out!r} {r.stderr!r}")
    cli.expect(["GET", "pipe:ctr"], "5000\n")
    cli.expect(["DBSIZE"], "5001\n")


BENCH_TESTS = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"]


def check_benchmark(port, pipeline):
    cmd = ["redis-benchmark", "-p", str(port), "-q", "-n", "20000", "-c", "20",
           "-t", "ping,set,get,incr,mset", "-P", str(pipeline)]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        FAILURES.append(f"redis-benchmark -P {pipeline} did not finish in 60 s")
        return
    lines = [l.strip() for l in re.split(r"[\r\n]", r.stdout.decode("latin-1") +
                                         r.stderr.decode("latin-1")) if l.strip()]
    if r.returncode != 0:
        FAILURES.append(f"redis-benchmark -P {pipeline}: rc={r.returncode}")
    for name in BENCH_TESTS:
        pattern = re.escape(name) + r": [\d.]+ requests per second"
        if not any(re.match(pattern, l) for l in lines):
            FAILURES.append(f"redis-benchmark -P {pipeline}: no result line for {name}: {lines}")
    errors = [l for l in lines if re.search(r"error|warning", l, re.I)]
    if errors:
        FAILURES.append(f"redis-benchmark -P {pipeline} reported: {errors[:3]}")
    rates = [l for l in lines if "requests per second" in l and "rps=" not in l]
    print(f"redis-benchmark -P {pipeline}: " + "; ".join(rates))


def check_protocol_errors(port):
    good = connect(port)
    good.sendall(b"PING\r\n")
    check("raw PING", recv_n(good, 7), b"+PONG\r\n")
    # Empty commands are skipped; pipelined commands come back in order.
    good.sendall(b"\r\n*0\r\n*-1\r\nECHO \"a b\"\r\n*2\r\n$4\r\nECHO\r\n$1\r\nz\r\nPING\r\n")
    expected = b"$3\r\na b\r\n$1\r\nz\r\n+PONG\r\n"
    check("raw pipelined with empty commands", recv_n(good, len(expected)), expected)
    cases = [
        (b"*1\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\nx\r\n", b"-ERR Protocol error: expected '$', got 'x'\r\n"),
        (b"SET \"a\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"PING\r\n*1\r\n$-5\r\n", b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"),
    ]
    for payload, reply in cases:
        bad = connect(port)
        bad.sendall(payload)
        check(f"malformed {payload!r}", recv_until_eof(bad), reply)
        bad.close()
        good.sendall(b"*2\r\n$4\r\nECHO\r\n$5\r\nalive\r\n")
        check("other connection after a protocol error", recv_n(good, 11),
              b"$5\r\nalive\r\n")
    good.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    if shutil.which("redis-cli") is None:
        print("skip: redis-cli not found")
        sys.exit(77)
    started = time.monotonic()
    log = tempfile.TemporaryFile()
    # stderr goes to a file: protocol errors are logged there and must never fill a pipe.
    proc, port = sample_server.start(args.binary, args.backend, "--loops", str(args.loops),
                                     stderr_file=log)
    try:
        cli = Cli(port)
        check_commands(cli)
        check_binary_value(cli, port)
        check_pipe(cli, port)
        if shutil.which("redis-benchmark"):
            check_benchmark(port, 1)
            check_benchmark(port, 16)
        else:
            print("note: redis-benchmark not found; benchmark runs skipped")
        check_protocol_errors(port)
        if proc.poll() is not None:
            FAILURES.append(f"resp_server died: rc={proc.returncode}")
    finally:
        code, _, _ = sample_server.stop(proc)
    if code != 0:
        FAILURES.append(f"resp_server exited with {code}")
    if FAILURES:
        for f in FAILURES:
            print("FAIL:", f)
        log.seek(0)
        print("resp_server stderr (tail):")
        print(log.read().decode(errors="replace")[-3000:])
        sys.exit(f"{len(FAILURES)} checks failed")
    print(f"ok: redis-cli, --pipe, redis-benchmark and raw sockets on {args.backend} "
          f"in {time.monotonic() - started:.1f} s; server exited 0")


if __name__ == "__main__":
    main()
