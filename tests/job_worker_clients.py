#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Black-box check of samples/job_dispatcher/job_worker against a redis-server of its own,
with raw RPC frames (rpc_server_clients.Client) and raw RESP (a few lines below).

Worker A (--capacity 2 --delay-ms 500, attempt log) and worker B (--capacity 64
--delay-ms 20 --ttl-ms 1500) share one dedupe log:
 1. Both are registered in ringnet:jobs:workers:worker (with their capacity) as soon as
    they print "listening on".
 2. A run executes once: "ok <run_id> <address>" after >= the delay, one log line.
 3. A repeat after it finished: "dup <run_id> <address>" at once, no new log line.
 4. A repeat sent (on another connection) while the first executes: both get "ok" when it
    finishes, and there is one log line.
 5. Three new runs at once with capacity 2: two "ok", one RESOURCE_EXHAUSTED "busy"; the
    refused one is not remembered (sent again later it executes).
 6. Malformed bodies (no newline, empty run id, a space in it): INVALID_ARGUMENT.
 7. B executes 40 runs from 4 connections at once, into the shared log: every line
    whole, one per run, naming the worker that ran it.
 8. /metrics of A: runs, deduped, waiting, refused totals and in_flight as counted here;
    the attempt log has one line per well-formed request.
 9. SIGTERM on A with a run in flight: the run is answered "ok", A is deregistered, exits
    0 and prints its totals line.
10. SIGKILL on B: its entry stays until --ttl-ms lapses, then is expired (polled).

usage: job_worker_clients.py PATH/TO/job_worker [--backend epoll|io_uring]
Exits 77 (skipped) when redis-server is not installed, or io_uring is refused.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import sample_server
from rpc_server_clients import Client, ERROR, RESPONSE, check, request
from sample_server import fail, http_get, metric_sum, wait_for

RUN = 1
INVALID_ARGUMENT, RESOURCE_EXHAUSTED = 3, 8
WORKERS_KEY, CAPACITY_KEY = "ringnet:jobs:workers:worker", "ringnet:jobs:capacity:worker"


# ---------------------------------------------------------------- redis

class Redis:
    """A blocking RESP client: one command at a time, replies as Python values."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.reply()

    def reply(self):
        line = self.file.readline()
        check(line.endswith(b"\r\n"), f"redis closed the connection: {line!r}")
        kind, rest = line[:1], line[1:-2].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            fail(f"redis error: {rest}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        fail(f"unexpected RESP reply {line!r}")

    def now_ms(self):
        sec, usec = self("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def live_workers(self):
        """The registry's unexpired entries, by redis's clock (as list_workers sees it)."""
        return set(self("ZRANGEBYSCORE", WORKERS_KEY, f"({self.now_ms()}", "+inf"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        print("skip: redis-server not found on PATH (apt-get install redis-server)")
        sys.exit(77)
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up():
        if proc.poll() is not None:
            fail(f"redis-server exited at start: {proc.stderr.read().decode()}")
        try:
            return Redis(port)("PING") == "PONG"
        except OSError:
            return False
    if not wait_for(up, 5.0):
        proc.kill()
        fail(f"redis-server not answering on port {port}")
    return proc, port


# ---------------------------------------------------------------- the worker

def start_worker(binary, backend, redis_port, dedupe, *args, admin=False):
    """Returns (proc, port, admin port or None, registered address)."""
    common = ("--redis", f"127.0.0.1:{redis_port}", "--dedupe-log", dedupe, "--loops", "2",
              *args)
    if admin:
        proc, port, admin_port = sample_server.start_admin(binary, backend, *common)
    else:
        (proc, port), admin_port = sample_server.start(binary, backend, *common), None
    return proc, port, admin_port, f"tcp://127.0.0.1:{port}"


def body(run_id, payload="p"):
    return f"{run_id}\n{payload}".encode()


def log_lines(path):
    with open(path) as f:
        text = f.read()
    check(text == "" or text.endswith("\n"), f"{path} ends in a partial line: {text[-80:]!r}")
    return text.splitlines()


def runs_logged(path, run_id):
    return [line for line in log_lines(path) if line.split(" ")[0] == run_id]


def expect_ok(ans, word, run_id, address, what):
    check(ans["type"] == RESPONSE,
          f"{what}: error {ans['code']} {ans['message']!r} instead of {word}")
    got = ans["body"].decode()
    check(got == f"{word} {run_id} {address}", f"{what}: answered {got!r}")


def expect_error(ans, code, what):
    check(ans["type"] == ERROR and ans["code"] == code,
          f"{what}: expected error {code}, got type {ans['type']} code {ans['code']} "
          f"{ans['body'][:60]!r}")


# ---------------------------------------------------------------- cases

def case_registered(redis, workers):
    members = redis("ZRANGE", WORKERS_KEY, "0", "-1")
    for address, capacity in workers:
        check(address in members, f"{address} not registered right after 'listening on': "
                                  f"{members}")
        got = redis("HGET", CAPACITY_KEY, address)
        check(got == str(capacity), f"{address}: capacity {got!r}, expected {capacity}")
    print(f"ok: registered at start: {sorted(members)}")


def case_once_then_dup(port, address, dedupe, tally):
    c = Client(port)
    t0 = time.monotonic()
    expect_ok(c.call(RUN, body("once@1000")), "ok", "once@1000", address, "first run")
    took = time.monotonic() - t0
    check(took >= 0.45, f"first run answered after {took:.3f} s, before its 500 ms of work")
    lines = runs_logged(dedupe, "once@1000")
    check(len(lines) == 1, f"run logged {len(lines)} times: {lines}")
    check(re.fullmatch(r"once@1000 " + re.escape(address) + r" \d{13}", lines[0]),
          f"log line {lines[0]!r}")
    expect_ok(c.call(RUN, body("once@1000", "other payload")), "dup", "once@1000", address,
              "repeat")
    check(len(runs_logged(dedupe, "once@1000")) == 1, "the repeat was logged")
    c.close()
    tally.update(runs=1, deduped=1, attempts=2)
    print(f"ok: a run executes once ({took:.2f} s) and its repeat gets dup")


def case_concurrent_repeat(port, address, dedupe, tally):
    first, second = Client(port), Client(port)
    t0 = time.monotonic()
    first.send(request(RUN, first.new_id(), body("conc@2000")))
    second.send(request(RUN, second.new_id(), body("conc@2000")))
    for c, what in ((first, "first"), (second, "repeat while executing")):
        expect_ok(c.read(), "ok", "conc@2000", address, what)
        check(time.monotonic() - t0 >= 0.45, f"{what} answered before the run's work was done")
        c.close()
    lines = runs_logged(dedupe, "conc@2000")
    check(len(lines) == 1, f"a run repeated while executing was logged {len(lines)} times")
    tally.update(runs=1, waited=1, attempts=2)
    print("ok: a repeat sent while the run executes waits and gets the same ok")


def case_capacity(port, address, dedupe, tally):
    c = Client(port)
    ids = ["cap@1", "cap@2", "cap@3"]
    c.send(b"".join(request(RUN, c.new_id(), body(i)) for i in ids))
    answers = {}
    for _ in ids:
        ans = c.read()
        answers[ids[ans["id"] - 1]] = ans
    busy = [i for i, a in answers.items() if a["type"] == ERROR]
    check(len(busy) == 1, f"capacity 2, three runs: {len(busy)} refused: {answers}")
    expect_error(answers[busy[0]], RESOURCE_EXHAUSTED, "third run over capacity")
    check(answers[busy[0]]["body"][2:] == b"busy", f"refusal says {answers[busy[0]]['body']!r}")
    for i in ids:
        if i != busy[0]:
            expect_ok(answers[i], "ok", i, address, f"run {i} within capacity")
    check(runs_logged(dedupe, busy[0]) == [], "the refused run was logged")
    expect_ok(c.call(RUN, body(busy[0])), "ok", busy[0], address, "the refused run sent again")
    check(len(runs_logged(dedupe, busy[0])) == 1, "the refused run, sent again, not logged once")
    c.close()
    tally.update(runs=3, refused=1, attempts=4)
    print(f"ok: over capacity -> RESOURCE_EXHAUSTED busy ({busy[0]}), not remembered")


def case_malformed(port, address, tally):
    c = Client(port)
    for data, what in ((b"no newline", "no newline"), (b"\npayload", "empty run id"),
                       (b"a b@1\np", "a space in the run id"), (b"", "empty body")):
        expect_error(c.call(RUN, data), INVALID_ARGUMENT, what)
    expect_ok(c.call(RUN, body("once@1000")), "dup", "once@1000", address, "after malformed")
    c.close()
    tally.update(deduped=1, attempts=1)
    print("ok: malformed bodies -> INVALID_ARGUMENT, the connection still works")


def case_shared_log(port, address, dedupe, a_address):
    results = {}

    def client(k):
        c = Client(port)
        ids = [f"b{k}@{n}" for n in range(10)]
        c.send(b"".join(request(RUN, c.new_id(), body(i)) for i in ids))
        results[k] = [c.read() for _ in ids]
        c.close()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
        check(not t.is_alive(), "worker B did not answer 10 runs within 15 s")
    for k, answers in results.items():
        for ans in answers:
            expect_ok(ans, "ok", f"b{k}@{ans['id'] - 1}", address, "worker B run")
    lines = log_lines(dedupe)
    for line in lines:
        check(re.fullmatch(r"\S+ tcp://127\.0\.0\.1:\d+ \d{13}", line), f"log line {line!r}")
    b_lines = [line for line in lines if line.startswith("b")]
    check(len(b_lines) == 40 and all(line.split()[1] == address for line in b_lines),
          f"worker B's 40 runs: {len(b_lines)} lines")
    check(all(line.split()[1] == a_address for line in lines if not line.startswith("b")),
          "a line of worker A's runs names another address")
    print(f"ok: 40 runs on worker B from 4 connections, {len(lines)} whole lines in the "
          f"shared log")


def case_metrics(admin_port, attempt_log, tally):
    want = {"jobs_worker_runs_total": tally.runs, "jobs_worker_deduped_total": tally.deduped,
            "jobs_worker_waiting_total": tally.waited, "jobs_worker_refused_total": tally.refused,
            "jobs_worker_in_flight": 0}

    seen = {}

    def matches():
        text = http_get(admin_port, "/metrics")[1]
        seen.update({name: int(metric_sum(text, name)) for name in want})
        return seen == want
    check(wait_for(matches, 5.0), f"/metrics: {seen}, expected {want}")
    check(seen == want, f"/metrics: {seen}, expected {want}")
    lines = log_lines(attempt_log)
    check(len(lines) == tally.attempts,
          f"attempt log has {len(lines)} lines for {tally.attempts} requests: {lines}")
    check(all(re.fullmatch(r"\d{13} \S+", line) for line in lines), f"attempt log: {lines}")
    print(f"ok: /metrics {seen}; {len(lines)} attempt lines")


def case_sigterm(proc, port, admin_port, address, redis, tally):
    c = Client(port)
    c.send(request(RUN, c.new_id(), body("drain@1")))

    def in_flight():
        return metric_sum(http_get(admin_port, "/metrics")[1], "jobs_worker_in_flight") == 1
    check(wait_for(in_flight, 5.0), "the run sent before SIGTERM never started")
    proc.send_signal(signal.SIGTERM)
    expect_ok(c.read(), "ok", "drain@1", address, "a run in flight at SIGTERM")
    c.close()
    code, _, err = sample_server.stop(proc)
    check(code == 0, f"worker A exited {code}: {err}")
    want = (f"job_worker: runs={tally.runs + 1} deduped={tally.deduped} "
            f"waited={tally.waited} refused={tally.refused}")
    check(want in err, f"worker A's totals: expected {want!r} in {err!r}")
    members = redis("ZRANGE", WORKERS_KEY, "0", "-1")
    check(address not in members, f"worker A still registered after SIGTERM: {members}")
    check(redis("HGET", CAPACITY_KEY, address) is None, "worker A's capacity left behind")
    print(f"ok: SIGTERM answered the run in flight, deregistered, exit 0: {want}")


def case_sigkill(proc, address, ttl_ms, redis):
    check(address in redis.live_workers(), "worker B not live before SIGKILL")
    proc.kill()
    proc.wait()
    t0 = time.monotonic()
    score = redis("ZSCORE", WORKERS_KEY, address)
    check(score is not None, "worker B's entry vanished at SIGKILL: it cannot deregister")
    expired = wait_for(lambda: address not in redis.live_workers(), ttl_ms / 1000 + 3.0)
    check(expired, f"worker B's entry did not expire within {ttl_ms} ms + 3 s of SIGKILL")
    print(f"ok: SIGKILL: the entry expired {time.monotonic() - t0:.2f} s later "
          f"(--ttl-ms {ttl_ms})")


class Tally:
    """What worker A should count, from the answers this script got."""

    def __init__(self):
        self.runs = self.deduped = self.waited = self.refused = self.attempts = 0

    def update(self, **kw):
        for k, v in kw.items():
            setattr(self, k, getattr(self, k) + v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("--backend", default="epoll")
    args = ap.parse_args()
    redis_proc, redis_port = start_redis()
    procs = [redis_proc]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dedupe, attempts = os.path.join(tmp, "dedupe.log"), os.path.join(tmp, "attempts.log")
            a, a_port, a_admin, a_addr = start_worker(
                args.worker, args.backend, redis_port, dedupe, "--capacity", "2",
                "--delay-ms", "500", "--attempt-log", attempts, admin=True)
            procs.append(a)
            b, b_port, _, b_addr = start_worker(
                args.worker, args.backend, redis_port, dedupe, "--capacity", "64",
                "--delay-ms", "20", "--ttl-ms", "1500")
            procs.append(b)
            redis = Redis(redis_port)
            tally = Tally()
            case_registered(redis, [(a_addr, 2), (b_addr, 64)])
            case_once_then_dup(a_port, a_addr, dedupe, tally)
            case_concurrent_repeat(a_port, a_addr, dedupe, tally)
            case_capacity(a_port, a_addr, dedupe, tally)
            case_malformed(a_port, a_addr, tally)
            case_shared_log(b_port, b_addr, dedupe, a_addr)
            case_metrics(a_admin, attempts, tally)
            case_sigterm(a, a_port, a_admin, a_addr, redis, tally)
            case_sigkill(b, b_addr, 1500, redis)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
