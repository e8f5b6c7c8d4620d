# SPDX-License-Identifier: MIT
"""Shared by the black-box scripts in tests/ (*_clients.py): start a sample server on an
ephemeral port, stop it with SIGTERM, and a few blocking socket helpers. Plain Python 3
standard library; the scripts import it from their own directory (Python puts a script's
directory first on sys.path).

Every sample server takes --port 0 --backend B and prints a line "... listening on
HOST:PORT ..." on stdout once it accepts connections; with --admin-port 0 a second line
"admin on HOST:PORT" follows (start_admin()), whose /metrics (Prometheus text) the
scripts read with http_get() and metric_sum(). ServerProbe adds what /proc says of the
process (open descriptors, resident memory), and wait_for() polls for a state the server
reaches after the client saw its side end.
"""
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time


def fail(message):
    sys.exit("FAIL: " + message)


def start(binary, backend, *args, stderr_file=None):
    """Starts `binary --port 0 --backend BACKEND *args` and returns (proc, port).

    stderr goes to a pipe, or to `stderr_file` (a binary file object) for a server that logs
    so much that a pipe nobody reads could fill. Exits 77 (skip) when the io_uring backend
    was asked for and the server says io_uring is unavailable; fails when it reports no port.
    stdout is text and stays a pipe: the caller may read later lines (see stop()).
    """
    name = os.path.basename(binary)
    proc = subprocess.Popen([binary, "--port", "0", "--backend", backend, *args],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if stderr_file is None else stderr_file,
                            text=True)
    line = proc.stdout.readline()
    m = re.search(r":(\d+) ", line)
    if m:
        return proc, int(m.group(1))
    start_failed(proc, backend, f"{name} did not report its port: {line!r}", stderr_file)


def start_failed(proc, backend, what, stderr_file=None):
    """A server that did not report its port(s): kills it, exits 77 (skip) when io_uring
    was asked for and is unavailable, else fails with `what` and its stderr."""
    proc.kill()
    proc.wait()
    if stderr_file is None:
        err = proc.stderr.read()
    else:
        stderr_file.seek(0)
        err = stderr_file.read().decode(errors="replace")
    if backend == "io_uring" and "io_uring unavailable" in err:
        print(f"skip: {err.strip()}")
        sys.exit(77)
    fail(f"{what} {err}")


def start_admin(binary, backend, *args, stderr_file=None):
    """Starts the server with --admin-port 0; returns (proc, port, admin_port).

    stderr as in start(). Exits 77 (skip) when io_uring was asked for and is unavailable.
    """
    proc = subprocess.Popen([binary, "--port", "0", "--admin-port", "0", "--backend", backend,
                             *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if stderr_file is None else stderr_file,
                            text=True)
    first = proc.stdout.readline()
    second = proc.stdout.readline()
    m1 = re.search(r"listening on 127\.0\.0\.1:(\d+) ", first)
    m2 = re.search(r"admin on 127\.0\.0\.1:(\d+) ", second)
    if m1 and m2:
        return proc, int(m1.group(1)), int(m2.group(1))
    proc.kill()
    _, err = proc.communicate()
    if stderr_file is not None:
        stderr_file.seek(0)
        err = stderr_file.read().decode(errors="replace")
    if backend == "io_uring" and "io_uring unavailable" in err:
        print(f"skip: {err.strip()}")
        sys.exit(77)
    fail(f"server did not report its ports: {first!r} {second!r} {err}")


def stop(proc, timeout=10):
    """Sends SIGTERM (unless the server has already exited) and waits for it to exit.

    Returns (exit code, the rest of its stdout, its stderr — None when it went to a file).
    Fails when the server is still running `timeout` seconds after the signal.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        fail(f"{os.path.basename(proc.args[0])} did not exit within {timeout} s of SIGTERM")
    return proc.returncode, out, err


def connect(port, timeout=10.0, nodelay=False):
    """A blocking TCP connection to 127.0.0.1:port with a timeout on every operation."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_n(sock, n):
    """Receives until it has `n` bytes or the peer closes; shorter only at EOF."""
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def recv_until_eof(sock):
    """Everything the peer sends until it closes."""
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk


def drain_rounds(binary, backend, load_client, totals_name, *, rounds=20, conns=50,
                 server_args=()):
    """SIGTERM under continuous load, `rounds` times, each at a random moment.

    Each round starts the server (with `server_args`), connects `conns` clients and runs
    load_client(sock, first_id, result) in a thread per connection: it keeps numbered
    requests in flight until the server closes, checks every answer against what it sent
    (raising no exception; it sets result["error"] on a wrong, unknown or repeated
    answer) and sets result["answered"] and result["ended"]. SIGTERM comes 50-500 ms into
    the load (seeded: RINGNET_TEST_SEED repeats a run). Then every client must have seen
    its connection end, the server must exit 0 reporting 0 connections closed at the
    deadline, and its totals line (`<totals_name>: requests=N ...`) must count exactly the
    answers the clients got: every request the server read was answered once; those it
    never read got none, and the client saw the close. Returns the drain times.
    """
    seed = int(os.environ.get("RINGNET_TEST_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    took = []
    for r in range(rounds):
        proc, port = start(binary, backend, "--drain-timeout", "5000", *server_args)
        socks = [connect(port, timeout=15.0, nodelay=True) for _ in range(conns)]
        results = [dict() for _ in socks]
        threads = [threading.Thread(target=load_client, args=(s, (k + 1) * 10_000_000,
                                                              results[k]), daemon=True)
                   for k, s in enumerate(socks)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.5))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        where = f"round {r} (RINGNET_TEST_SEED={seed})"
        for t in threads:
            t.join(25)
            if t.is_alive():
                proc.kill()
                fail(f"{where}: a client never saw its connection end")
        try:  # not stop(): a second SIGTERM may mean "now", and this one must drain
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail(f"{where}: the server did not exit within 10 s of SIGTERM")
        code = proc.returncode
        took.append(time.monotonic() - t0)
        for k, res in enumerate(results):
            if "error" in res:
                fail(f"{where}, connection {k}: {res['error']}")
            if res.get("ended") is None:
                fail(f"{where}, connection {k}: did not end")
        if code != 0:
            fail(f"{where}: exit code {code}: {err}")
        m = re.search(r"\((\d+) connections closed at the deadline\)", err or "")
        if m is None or m.group(1) != "0":
            fail(f"{where}: drain report: {err!r}")
        m = re.search(re.escape(totals_name) + r": requests=(\d+) ", out)
        if m is None:
            fail(f"{where}: no totals line: {out!r}")
        counted, answered = int(m.group(1)), sum(res["answered"] for res in results)
        if counted != answered:
            fail(f"{where}: the server counted {counted} requests, the clients got "
                 f"{answered} answers")
    return took


def http_get(port, path):
    """GET over a fresh connection (the admin listener closes after each answer):
    returns (status, body text)."""
    with connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        raw = recv_until_eof(s).decode()
    head, _, body = raw.partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def metric_sum(text, name):
    """Sum of the samples of `name`; a name with labels (`x{a="b"}`) matches that series."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(predicate, timeout, interval=0.02):
    """Polls predicate() until it returns a true value (returned) or `timeout` seconds
    pass (then returns the last false value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class ServerProbe:
    """A running server seen from outside: /metrics on its admin port and /proc/<pid>."""

    def __init__(self, proc, admin_port):
        self.pid, self.admin_port = proc.pid, admin_port

    def metrics(self):
        status, text = http_get(self.admin_port, "/metrics")
        if status != 200:
            fail(f"/metrics answered {status}")
        return text

    def fds(self):
        """Open file descriptors of the process."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self):
        """Resident memory (VmRSS) in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        fail(f"no VmRSS for pid {self.pid}")


def content_length(head):
    """The Content-Length of an HTTP message head (bytes before the blank line); 0 without one."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0
