#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The samples' command lines (samples/sample_main.h, FlagTable), black-box:

1. --help (and -h) exits 0 and prints every flag on stdout, each with its default; the
   flags it names include a hard-coded list of the ones benchmarks and tests rely on, and
   each one it names is known to the parser (a value flag without its value is "needs a
   value", a switch given a value is "takes no value", never "unknown flag").
2. A table of bad command lines: exit 2, nothing on stdout, one line on stderr giving the
   reason (non-numeric or out-of-range port, --loops 0 or negative, unknown flag, a
   missing value at the end or before the next flag, a bad --backend...).
3. --flag=value works: echo_server on a free port given as --port=N echoes bytes over a
   real socket; resp_server, http_server (--max-body=10 gives 413 for 11 bytes, its admin
   port answers /healthz) and rpc_echo start from --flag=value forms.
4. rpc_client against rpc_echo (numeric host 127.0.0.1, TCP and a Unix socket): N calls
   with every answer checked; a body over the server's --max-body fails with exit 1; a
   port nobody listens on and --host nosuch.invalid exit non-zero with a message naming
   the address (not "Success").

Servers are waited for through their "listening on" line, never by sleeping; every
process runs under a timeout.

usage: samples_cli.py --echo-server P --resp-server P --http-server P --rpc-echo P
                      --rpc-client P
"""
import argparse
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time

import sample_server
from sample_server import fail

RUN_TIMEOUT = 20.0      # one short-lived process (--help, a refused command line)
LISTEN_TIMEOUT = 10.0   # until a server prints its "listening on" line

SERVER_FLAGS = ["--host", "--port", "--unix", "--loops", "--balancer", "--reuseport", "--pin",
                "--backend", "--no-uring-bundle", "--no-uring-register-ring",
                "--no-uring-fixed-files", "--uring-buffer-inc", "--uring-buffers-initial",
                "--drain-timeout", "--admin-port", "--no-metrics", "--idle-timeout",
                "--read-timeout", "--write-timeout"]
IMPORTANT_FLAGS = {
    "echo_server": SERVER_FLAGS,
    "resp_server": SERVER_FLAGS,
    "http_server": SERVER_FLAGS + ["--max-body"],
    "rpc_echo": SERVER_FLAGS + ["--max-body", "--pool-threads"],
    "rpc_client": ["--host", "--port", "--unix", "--calls", "--window", "--size", "--method",
                   "--timeout"],
}

# (arguments, what stderr must contain), each refused with exit 2. A server case is run
# after --port=0, so that a line wrongly accepted cannot take a fixed port.
SERVER_BAD = [
    (["--port", "abc"], "--port: 'abc' is not a port (0-65535"),
    (["--port=70000"], "--port: '70000' is not a port"),
    (["--port", "-1"], "--port: '-1' is not a port"),
    (["--port="], "--port: '' is not a port"),
    (["--loops", "0"], "--loops: '0' is not a loop count (1-1024"),
    (["--loops=-2"], "--loops: '-2' is not a loop count"),
    (["--loops", "two"], "--loops: 'two' is not a loop count"),
    (["--foo"], "unknown flag '--foo' (see --help)"),
    (["--foo=1"], "unknown flag '--foo' (see --help)"),
    (["-p", "1"], "unexpected argument '-p'"),
    (["stray"], "unexpected argument 'stray'"),
    (["--loops"], "--loops needs a value (N)"),
    (["--host", "--loops", "2"], "--host needs a value (H)"),
    (["--backend", "kqueue"], "--backend: 'kqueue' is not one of auto, epoll, io_uring"),
    (["--backend="], "--backend: '' is not one of auto, epoll, io_uring"),
    (["--balancer", "random"], "--balancer: 'random' is not one of rr, lc, hash"),
    (["--pin=yes"], "--pin takes no value"),
    (["--drain-timeout", "1s"], "--drain-timeout: '1s' is not a duration in ms"),
    (["--admin-port", "65536"], "--admin-port: '65536' is not a port"),
    (["--uring-buffers-initial", "-1"], "--uring-buffers-initial: '-1' is not a buffer count"),
]
OWN_BAD = {
    "http_server": [(["--max-body", "-1"], "--max-body: '-1' is not a byte count")],
    "rpc_echo": [(["--max-body", "0"], "--max-body: '0' is not a byte count (1-4294967295)"),
                 (["--pool-threads=257"], "--pool-threads: '257' is not a thread count (1-256)")],
}
CLIENT_BAD = [
    (["--port", "abc"], "--port: 'abc' is not a port (1-65535)"),
    (["--port", "0"], "--port: '0' is not a port (1-65535)"),
    (["--port=70000"], "--port: '70000' is not a port (1-65535)"),
    (["--calls", "0"], "--calls: '0' is not a call count"),
    (["--window=-4"], "--window: '-4' is not a call count"),
    (["--method", "3"], "--method: '3' is not a method this client can check (1-2)"),
    (["--size", "1k"], "--size: '1k' is not a byte count"),
    (["--timeout", "0"], "--timeout: '0' is not a duration in ms"),
    (["--foo"], "unknown flag '--foo' (see --help)"),
    (["--calls"], "--calls needs a value (N)"),
    (["--host", "--port", "1"], "--host needs a value (H)"),
    (["--calls", "5", "extra"], "unexpected argument 'extra'"),
]


def check(condition, message):
    if not condition:
        fail(message)


def run(binary, *args, timeout=RUN_TIMEOUT):
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"{os.path.basename(binary)} {' '.join(args)}: still running after {timeout} s")


def help_rows(text):
    """The flag rows of --help: {flag: (value name or None, the row's text)}."""
    rows, current, in_flags = {}, None, False
    for line in text.splitlines():
        if line == "flags:":
            in_flags = True
            continue
        if not in_flags:
            continue
        if not line.strip():
            break
        m = re.match(r"  (--[a-z][a-z0-9-]*)(?: ([^ ]+))?(?: {2,}(.*))?$", line)
        if m:
            current = m[1]
            rows[current] = [m[2], m[3] or ""]
        elif line.startswith("  -h, --help"):
            current = None
        elif current is not None:
            rows[current][1] += " " + line.strip()
    return {flag: (value, " ".join(text.split())) for flag, (value, text) in rows.items()}


def check_help(binary):
    name = os.path.basename(binary)
    res = run(binary, "--help")
    check(res.returncode == 0, f"{name} --help exited {res.returncode}: {res.stderr}")
    check(res.stderr == "", f"{name} --help wrote to stderr: {res.stderr!r}")
    check(res.stdout.startswith(f"usage: {name} "), f"{name} --help: {res.stdout[:80]!r}")
    check("--help" in res.stdout, f"{name} --help does not list --help")
    short = run(binary, "-h")
    check(short.returncode == 0 and short.stdout == res.stdout, f"{name} -h differs from --help")
    rows = help_rows(res.stdout)
    missing = [f for f in IMPORTANT_FLAGS[name] if f not in rows]
    check(not missing, f"{name} --help does not list {missing}")
    for flag, (value, text) in rows.items():
        check(re.search(r"\(default: [^)]+\)", text) is not None,
              f"{name} --help: {flag} has no default: {text!r}")
        check(len(text) > len("(default: x)") + 5, f"{name} --help: {flag} has no meaning")
        # Known to the parser: refused for its value's form, never as unknown. Both forms
        # stop at the parser (exit 2), so no server starts.
        args = [flag] if value else [flag + "=x"]
        want = f"{flag} needs a value ({value})" if value else f"{flag} takes no value"
        res = run(binary, *args)
        check(res.returncode == 2 and want in res.stderr,
              f"{name} {' '.join(args)}: exit {res.returncode}, stderr {res.stderr!r}, "
              f"wanted {want!r}")
    print(f"ok: {name} --help lists {len(rows)} flags, each with a default, each known")
    return rows


def check_refused(binary, cases, prefix=()):
    name = os.path.basename(binary)
    for args, want in cases:
        res = run(binary, *prefix, *args)
        what = f"{name} {' '.join([*prefix, *args])}"
        check(res.returncode == 2, f"{what}: exit {res.returncode} (wanted 2): {res.stderr!r}")
        check(res.stdout == "", f"{what}: wrote to stdout: {res.stdout!r}")
        lines = res.stderr.splitlines()
        check(len(lines) == 1 and lines[0].startswith(name + ": ") and want in lines[0],
              f"{what}: stderr {res.stderr!r}, wanted one line with {want!r}")
    print(f"ok: {name}: {len(cases)} bad command lines refused with their reason, exit 2")


class Server:
    """A sample server started by the test; lines of its stdout are read with a deadline."""

    def __init__(self, binary, *args):
        self.name = os.path.basename(binary)
        self.proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pending = b""

    def line(self, timeout=LISTEN_TIMEOUT):
        """The next stdout line, or None at EOF or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()

    def listening(self):
        """Waits for "listening on ADDRESS"; returns ADDRESS, or None if it exited first."""
        line = self.line()
        m = re.match(r"listening on (\S+) ", line or "")
        if m is None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.error = self.proc.stderr.read().decode(errors="replace")
            self.first_line = line
            return None
        return m[1]

    def stop(self):
        """SIGTERM; the server must drain and exit 0 within 10 s."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail(f"{self.name} did not exit within 10 s of SIGTERM")
        check(self.proc.returncode == 0,
              f"{self.name} exited {self.proc.returncode}: {err.decode(errors='replace')}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start(binary, *args):
    server = Server(binary, *args)
    address = server.listening()
    if address is None:
        fail(f"{server.name} {' '.join(args)} did not listen: {server.first_line!r} "
             f"{server.error}")
    return server, address


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_equals_form(echo, resp, http):
    # echo_server on a port chosen here, given as --port=N. Another process may take the
    # port between our probe and the server's bind: then try another.
    for attempt in range(5):
        port = free_port()
        server = Server(echo, f"--port={port}", "--host=127.0.0.1", "--loops=1",
                        "--backend=epoll", "--drain-timeout=2000")
        address = server.listening()
        if address is not None:
            break
        check("in use" in server.error, f"echo_server --port={port}: {server.error}")
    else:
        fail("echo_server: no free port taken in 5 attempts")
    try:
        check(address == f"127.0.0.1:{port}", f"echo_server listens on {address}, not :{port}")
        with sample_server.connect(port) as s:
            payload = bytes(range(256)) * 4
            s.sendall(payload)
            got = sample_server.recv_n(s, len(payload))
            check(got == payload, f"echo_server --port={port}: echoed {len(got)} bytes, "
                                  f"{'different' if len(got) == len(payload) else 'short'}")
    except BaseException:
        server.kill()
        raise
    server.stop()
    print(f"ok: echo_server --port={port} --loops=1 --backend=epoll echoes")

    server, address = start(resp, "--port=0", "--loops=1", "--idle-timeout=60000")
    with sample_server.connect(int(address.rsplit(":", 1)[1])) as s:
        s.sendall(b"PING\r\n")
        check(sample_server.recv_n(s, 7) == b"+PONG\r\n", "resp_server: no +PONG")
    server.stop()
    print("ok: resp_server --port=0 --loops=1 --idle-timeout=60000 answers PING")

    server, address = start(http, "--port=0", "--admin-port=0", "--max-body=10")
    admin = server.line()
    m = re.match(r"admin on 127\.0\.0\.1:(\d+) ", admin or "")
    check(m is not None, f"http_server --admin-port=0: {admin!r}")
    status, body = sample_server.http_get(int(m[1]), "/healthz")
    check(status == 200, f"http_server admin /healthz: {status} {body!r}")
    with sample_server.connect(int(address.rsplit(":", 1)[1])) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
        head = s.recv(4096)
        check(head.startswith(b"HTTP/1.1 413 "), f"http_server --max-body=10: {head[:60]!r}")
    server.stop()
    print("ok: http_server --port=0 --admin-port=0 --max-body=10: /healthz 200, 11 bytes 413")


def run_client(client, *args, timeout=60):
    res = run(client, *args, timeout=timeout)
    return res, f"rpc_client {' '.join(args)}"


def check_rpc_client(rpc_echo, client):
    server, address = start(rpc_echo, "--port=0", "--loops=1", "--max-body=4096")
    port = address.rsplit(":", 1)[1]
    try:
        for method in ("1", "2"):
            res, what = run_client(client, "--host", "127.0.0.1", f"--port={port}",
                                   "--calls=3000", "--window", "32", "--size=100",
                                   "--method", method, "--timeout=10000")
            check(res.returncode == 0, f"{what}: exit {res.returncode}: {res.stdout} {res.stderr}")
            m = re.fullmatch(r"calls=(\d+) ok=(\d+) errors=(\d+) calls_per_sec=\d+ "
                             r"p50_us=(\d+) p99_us=(\d+)\n", res.stdout)
            check(m is not None, f"{what}: output {res.stdout!r}")
            check((int(m[1]), int(m[2]), int(m[3])) == (3000, 3000, 0),
                  f"{what}: counts {res.stdout.strip()}")
            mx = re.search(r"rpc_client: max_us=(\d+)", res.stderr)
            check(mx is not None and int(m[4]) <= int(m[5]) <= int(mx[1]),
                  f"{what}: p50 <= p99 <= max does not hold: {res.stdout} {res.stderr}")
            print(f"ok: {what}: {res.stdout.strip()}, max_us={mx[1]}")

        # By host name: localhost resolves (off the loops) to the server's 127.0.0.1.
        res, what = run_client(client, "--host", "localhost", f"--port={port}", "--calls=200",
                               "--timeout=10000")
        check(res.returncode == 0 and res.stdout.startswith("calls=200 ok=200 errors=0 "),
              f"{what}: exit {res.returncode}: {res.stdout} {res.stderr}")
        print(f"ok: {what}: {res.stdout.strip()}")

        # A body the server refuses (over its --max-body): the call fails, exit 1.
        res, what = run_client(client, f"--port={port}", "--calls=3", "--size=5000",
                               "--timeout=5000")
        check(res.returncode == 1, f"{what}: exit {res.returncode} (wanted 1): {res.stderr}")
        check("failed" in res.stderr and "ok=0 errors=3" in res.stdout,
              f"{what}: {res.stdout!r} {res.stderr!r}")
        print(f"ok: {what}: refused by the server, exit 1")
    finally:
        server.stop()

    # Over a Unix-domain socket.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rpc.sock")
        server, address = start(rpc_echo, f"--unix={path}", "--loops=1")
        try:
            check(address == f"unix:{path}", f"rpc_echo --unix: listening on {address}")
            res, what = run_client(client, "--unix", path, "--calls=500", "--window=8")
            check(res.returncode == 0 and res.stdout.startswith("calls=500 ok=500 errors=0 "),
                  f"{what}: exit {res.returncode}: {res.stdout} {res.stderr}")
            print(f"ok: {what}: {res.stdout.strip()}")
        finally:
            server.stop()

    # Nobody listens: the error names the address. The port was free a moment ago.
    port = free_port()
    res, what = run_client(client, "--port", str(port), "--timeout=5000")
    check(res.returncode == 1 and f"127.0.0.1:{port}" in res.stderr and
          "Success" not in res.stderr, f"{what}: exit {res.returncode}: {res.stderr!r}")
    print(f"ok: {what}: {res.stderr.strip()}")

    # A name that cannot resolve (RFC 2606 .invalid): refused, with the name in the message.
    res, what = run_client(client, "--host", "nosuch.invalid", "--timeout=5000")
    check(res.returncode != 0, f"{what}: exit 0: {res.stdout}")
    check("nosuch.invalid" in res.stderr and "cannot resolve" in res.stderr and
          "Success" not in res.stderr,
          f"{what}: message {res.stderr!r}")
    print(f"ok: {what}: exit {res.returncode}: {res.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--echo-server", "--resp-server", "--http-server", "--rpc-echo",
                 "--rpc-client"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    servers = [args.echo_server, args.resp_server, args.http_server, args.rpc_echo]

    for binary in servers + [args.rpc_client]:
        check_help(binary)
    for binary in servers:
        check_refused(binary, SERVER_BAD + OWN_BAD.get(os.path.basename(binary), []),
                      prefix=("--port=0",))
    check_refused(args.rpc_client, CLIENT_BAD)
    check_equals_form(args.echo_server, args.resp_server, args.http_server)
    check_rpc_client(args.rpc_echo, args.rpc_client)
    print("ok: all")


if __name__ == "__main__":
    main()
