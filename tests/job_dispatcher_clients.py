# SPDX-License-Identifier: MIT
"""The job dispatcher end to end, on loopback, with the redis-server it starts itself:

  failover  a 1-second job over 3 workers for 30 s, two dispatcher replicas. The worker
            running the job is SIGKILLed mid-run at ~10 s, the leading dispatcher at ~20 s
            (mid-run too). The workers' dedupe logs must show every scheduled time from the
            first to the last exactly once; the killed worker's run done elsewhere; the
            follower leading within the lease (plus its polling tenth).
  slow      a worker slower than the per-run timeout: the run is retried with growing
            backoff and answered by the attempt that finds it finished (one execution);
            a job with fewer attempts fails with DEADLINE_EXCEEDED, counted.
  policies  skip, queue and allow, on runs longer than the interval.
  handover  SIGTERM to the leader hands the lease over at once, nothing missed.

Usage: job_dispatcher_clients.py JOB_DISPATCHER JOB_WORKER [--backend B] [--only NAME]
                                 [--skip NAME]...
Exits 77 (skip) when redis-server is not installed.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sample_server import fail, start, stop, wait_for  # noqa: E402

LEASE_MS = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(self.ping, 10):
            fail("redis-server did not answer PING")

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Dispatcher:
    def __init__(self, binary, name, redis, config, workdir):
        self.name = name
        self.log = open(os.path.join(workdir, f"dispatcher-{name}.log"), "w+b")
        self.proc = subprocess.Popen(
            [binary, "--config", config, "--redis", f"127.0.0.1:{redis.port}", "--id", name,
             "--http-port", "0", "--lease-ms", str(LEASE_MS), "--probe-ms", "200"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http on 127\.0\.0\.1:(\d+) ", line)
        if not m:
            self.proc.kill()
            fail(f"dispatcher {name} did not report its HTTP port: {line!r}")
        self.http = int(m.group(1))

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as r:
            return r.read().decode()

    def leader(self):
        try:
            return self.get("/healthz").startswith("leader")
        except OSError:
            return False

    def metric(self, name, labels="", text=None):
        """The sum of the samples of `name` whose labels contain `labels`, in `text` (one
        scrape) or in a new scrape."""
        total = 0
        for line in (text if text is not None else self.get("/metrics")).splitlines():
            head = "" if line.startswith("#") else line.split(" ", 1)[0]
            if (head == name or head.startswith(name + "{")) and labels in head:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def stop_clean(proc, what, log=None):
    """SIGTERM, and the process must exit 0 (a sanitizer's report makes it fail)."""
    rc, _, err = stop(proc)
    if rc != 0:
        fail(f"{what} exited {rc} on SIGTERM\n{err if log is None else log()}")


def start_worker(binary, backend, redis, workdir, name, delay_ms, ttl_ms=1500, capacity=16):
    dedupe = os.path.join(workdir, f"dedupe-{name}.log")
    attempts = os.path.join(workdir, f"attempts-{name}.log")
    proc, port = start(binary, backend, "--redis", f"127.0.0.1:{redis.port}", "--service",
                       "worker", "--delay-ms", str(delay_ms), "--ttl-ms", str(ttl_ms),
                       "--dedupe-log", dedupe, "--attempt-log", attempts,
                       "--capacity", str(capacity))
    return {"name": name, "proc": proc, "port": port, "dedupe": dedupe, "attempts": attempts}


def read_lines(path):
    try:
        with open(path) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def write_config(workdir, jobs):
    path = os.path.join(workdir, "jobs.json")
    with open(path, "w") as f:
        json.dump({"jobs": jobs}, f)
    return path


def sleep_until_mid_run(offset_ms=150):
    """Sleeps to `offset_ms` past the next whole second: a 1 s job's run is then executing."""
    now = time.time()
    time.sleep(1 - (now % 1) + offset_ms / 1000)
    return int(now) + 1  # the scheduled second whose run is executing


def failover(args, workdir):
    redis = Redis(workdir)
    config = write_config(workdir, [{
        "name": "tick", "every": "1s", "target": {"service": "worker", "method": 1},
        "timeout_ms": 1500, "concurrency": "allow",
        "retry": {"max_attempts": 6, "backoff_ms": 100, "max_backoff_ms": 1000}}])
    workers = [start_worker(args.job_worker, args.backend, redis, workdir, n, 300)
               for n in ("w1", "w2", "w3")]
    dispatchers = [Dispatcher(args.job_dispatcher, n, redis, config, workdir) for n in ("d1", "d2")]
    try:
        if not wait_for(lambda: any(d.leader() for d in dispatchers), 10):
            fail("no dispatcher became leader")
        began = time.time()

        # ~10 s: SIGKILL the worker that runs "tick", while it runs.
        time.sleep(max(0, began + 9 - time.time()))
        executed = [(w, l) for w in workers for l in read_lines(w["dedupe"])]
        if not executed:
            fail("no run executed in 9 s")
        victim = max(executed, key=lambda e: int(e[1][2]))[0]
        killed_second = sleep_until_mid_run()
        victim["proc"].kill()
        victim["proc"].wait()

        # ~20 s: SIGKILL the leading dispatcher mid-run; time the follower's take-over.
        time.sleep(max(0, began + 19 - time.time()))
        leader = next(d for d in dispatchers if d.leader())
        follower = next(d for d in dispatchers if d is not leader)
        sleep_until_mid_run()
        leader.proc.kill()
        leader.proc.wait()
        killed_at = time.time()
        if not wait_for(follower.leader, LEASE_MS / 1000 * 3):
            fail("the follower did not take over")
        takeover = time.time() - killed_at
        print(f"failover: follower leads {takeover * 1000:.0f} ms after the leader's SIGKILL "
              f"(lease {LEASE_MS} ms)")

        time.sleep(max(0, began + 31 - time.time()))
        end = time.time()
        stop_clean(follower.proc, f"dispatcher {follower.name}", follower.stderr)
        # Every fired run has ended once the last one's execution (300 ms) is over.
        time.sleep(0.6)
        metrics_note = follower.stderr()
    finally:
        for d in dispatchers:
            if d.proc.poll() is None:
                d.proc.kill()
        for w in workers:
            if w["proc"].poll() is None:
                stop_clean(w["proc"], f"worker {w['name']}")
        redis.stop()

    seen = {}
    for w in workers:
        for run_id, address, _ in read_lines(w["dedupe"]):
            seen.setdefault(run_id, []).append(w["name"])
    times = sorted(int(r.split("@")[1]) for r in seen)
    if not times:
        fail("no runs in the dedupe logs")
    expected = list(range(times[0], times[-1] + 1, 1000))
    missing = sorted(set(expected) - set(times))
    twice = {r: ws for r, ws in seen.items() if len(ws) > 1}
    print(f"failover: {len(times)} scheduled times from {times[0]} to {times[-1]}, "
          f"{len(missing)} missing, {len(twice)} executed twice")
    if missing:
        fail(f"scheduled times never executed: {missing}\n{metrics_note}")
    if twice:
        fail(f"runs executed more than once: {twice}")
    if len(times) < 28:
        fail(f"only {len(times)} runs in ~31 s")
    if times[-1] < (end - 3) * 1000:
        fail("the new leader stopped firing")
    killed_run = f"tick@{killed_second * 1000}"
    if killed_run not in seen or victim["name"] in seen[killed_run]:
        fail(f"{killed_run}, running on the killed worker {victim['name']}, was not done "
             f"elsewhere: {seen.get(killed_run)}")
    print(f"failover: {killed_run} (killed on {victim['name']}) done by {seen[killed_run]}")
    if takeover > LEASE_MS / 1000 * 1.1 + 0.5:
        fail(f"take-over took {takeover:.2f} s, lease {LEASE_MS} ms")


def slow(args, workdir):
    redis = Redis(workdir)
    retry = {"backoff_ms": 200, "max_backoff_ms": 2000, "jitter": 0}
    config = write_config(workdir, [
        {"name": "slow", "every": "2s", "timeout_ms": 400, "concurrency": "skip",
         "target": {"service": "worker", "method": 1, "key": "k"},
         "retry": dict(retry, max_attempts=4)},
        {"name": "doomed", "every": "2s", "timeout_ms": 300, "concurrency": "skip",
         "target": {"service": "worker", "method": 1, "key": "k"},
         "retry": dict(retry, max_attempts=2)}])
    worker = start_worker(args.job_worker, args.backend, redis, workdir, "w", 1600)
    d = Dispatcher(args.job_dispatcher, "d", redis, config, workdir)
    try:
        # The first "slow" run: attempts at 0, 600, 1400 ms (timeout 400 + backoff 200, 400);
        # the third waits for the execution (1600 ms) and gets its answer.
        def first_slow_run_done():
            return d.metric("jobs_runs_succeeded_total", 'job="slow"') >= 1
        if not wait_for(first_slow_run_done, 10):
            fail(f"the slow run never succeeded\n{d.stderr()}")
        if not wait_for(lambda: d.metric("jobs_runs_failed_total", 'code="DEADLINE_EXCEEDED"') >= 1, 10):
            fail("the doomed job did not fail with DEADLINE_EXCEEDED")
        retried = d.metric("jobs_runs_retried_total", 'job="slow"')
    finally:
        stop_clean(d.proc, "the dispatcher", d.stderr)
        stop_clean(worker["proc"], "the worker")
        redis.stop()
    arrivals = {}
    for ms, run_id in read_lines(worker["attempts"]):
        arrivals.setdefault(run_id, []).append(int(ms))
    slow_runs = sorted(r for r in arrivals if r.startswith("slow@"))
    first = arrivals[slow_runs[0]]
    gaps = [b - a for a, b in zip(first, first[1:])]
    print(f"slow: {slow_runs[0]} attempts at +{[a - first[0] for a in first]} ms, "
          f"retried {retried}")
    if len(first) != 3 or gaps[0] < 550 or gaps[1] < gaps[0] + 150:
        fail(f"expected 3 attempts with growing backoff (~600, ~800 ms apart): gaps {gaps}")
    executed = [l for l in read_lines(worker["dedupe"]) if l[0] == slow_runs[0]]
    if len(executed) != 1:
        fail(f"{slow_runs[0]} executed {len(executed)} times")


def policies(args, workdir):
    """Three 1 s jobs on a worker taking 2.5 s a run: allow overlaps them, skip drops the
    times that come due while one runs, queue runs every time one after the other."""
    redis = Redis(workdir)
    job = {"every": "1s", "timeout_ms": 5000, "target": {"service": "worker", "method": 1}}
    config = write_config(workdir, [dict(job, name=n, concurrency=n) for n in ("allow", "skip", "queue")])
    worker = start_worker(args.job_worker, args.backend, redis, workdir, "w", 2500)
    d = Dispatcher(args.job_dispatcher, "d", redis, config, workdir)
    try:
        if not wait_for(d.leader, 10):
            fail("no leader")
        time.sleep(8.5)
        skipped = d.metric("jobs_runs_skipped_total", 'job="skip"')
        # allow's 2.5 s runs overlap: several in flight on the one worker right now.
        scrape = d.get("/metrics")
        in_flight = d.metric("jobs_worker_in_flight", text=scrape)
        fired = d.metric("jobs_runs_fired_total", text=scrape)
        lagged = d.metric("jobs_schedule_lag_seconds_count", text=scrape)
        leader_gauges = (d.metric("jobs_leader", text=scrape),
                         d.metric("jobs_fencing_token", text=scrape))
    finally:
        stop_clean(d.proc, "the dispatcher", d.stderr)
        time.sleep(0.1)
        stop_clean(worker["proc"], "the worker")
        redis.stop()
    done = {}  # job -> [(scheduled, finished ms)]
    for run_id, _, finished in read_lines(worker["dedupe"]):
        name, at = run_id.split("@")
        done.setdefault(name, []).append((int(at), int(finished)))
    arrivals = {}
    for ms, run_id in read_lines(worker["attempts"]):
        arrivals.setdefault(run_id, int(ms))
    for name in done:
        done[name].sort()
    print("policies: executed " + ", ".join(f"{n}={len(v)}" for n, v in sorted(done.items())) +
          f", skip's skipped={skipped}")
    if in_flight < 2:
        fail(f"jobs_worker_in_flight {in_flight} while allow's runs overlap")
    if lagged < fired or fired < 10:  # (a run fired during the scrape may add one)
        fail(f"schedule lag recorded {lagged} times for {fired} runs fired")
    if leader_gauges[0] != 1 or leader_gauges[1] < 1:
        fail(f"jobs_leader, jobs_fencing_token = {leader_gauges}")
    allow, skip, queue = done.get("allow", []), done.get("skip", []), done.get("queue", [])
    if len(allow) < 4 or any(b[0] - a[0] != 1000 for a, b in zip(allow, allow[1:])):
        fail(f"allow did not run every second: {allow}")
    if len(skip) < 2 or any(b[0] - a[0] < 3000 for a, b in zip(skip, skip[1:])) or skipped < 2:
        fail(f"skip ran times that came due while it ran: {skip}, skipped {skipped}")
    if len(queue) < 2 or any(b[0] - a[0] != 1000 for a, b in zip(queue, queue[1:])):
        fail(f"queue lost a time: {queue}")
    for (t1, end1), (t2, _) in zip(queue, queue[1:]):
        if arrivals[f"queue@{t2}"] < end1 - 5:
            fail(f"queue@{t2} started before queue@{t1} ended")


def handover(args, workdir):
    """SIGTERM to the leader releases the lease: the follower leads at its next try (every
    lease/10), not at the lease's end, and no scheduled time is missed or run twice."""
    redis = Redis(workdir)
    config = write_config(workdir, [{"name": "tick", "every": "500ms", "concurrency": "allow",
                                     "target": {"service": "worker", "method": 1}}])
    worker = start_worker(args.job_worker, args.backend, redis, workdir, "w", 50)
    dispatchers = [Dispatcher(args.job_dispatcher, n, redis, config, workdir) for n in ("d1", "d2")]
    try:
        if not wait_for(lambda: any(d.leader() for d in dispatchers), 10):
            fail("no leader")
        time.sleep(2)
        leader = next(d for d in dispatchers if d.leader())
        follower = next(d for d in dispatchers if d is not leader)
        stop_clean(leader.proc, "the leader", leader.stderr)
        stopped = time.time()
        if not wait_for(follower.leader, 5):
            fail("the follower did not take over")
        takeover = time.time() - stopped
        time.sleep(2)
        stop_clean(follower.proc, "the follower", follower.stderr)
        time.sleep(0.2)
    finally:
        for d in dispatchers:
            if d.proc.poll() is None:
                d.proc.kill()
        stop_clean(worker["proc"], "the worker")
        redis.stop()
    print(f"handover: follower leads {takeover * 1000:.0f} ms after the leader's SIGTERM")
    if takeover > LEASE_MS / 1000 / 10 + 0.5:
        fail(f"take-over after a clean stop took {takeover:.2f} s: the lease was not released")
    times = sorted(int(l[0].split("@")[1]) for l in read_lines(worker["dedupe"]))
    if len(times) < 6 or times != list(range(times[0], times[-1] + 1, 500)):
        fail(f"scheduled times missed or repeated across the handover: {times}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("job_dispatcher")
    p.add_argument("job_worker")
    p.add_argument("--backend", default="epoll")
    p.add_argument("--only")
    p.add_argument("--skip", action="append", default=[])
    args = p.parse_args()
    if shutil.which("redis-server") is None:
        print("skip: redis-server is not installed (apt-get install redis-server)")
        sys.exit(77)
    for name, scenario in (("slow", slow), ("policies", policies), ("handover", handover),
                           ("failover", failover)):
        if (args.only and args.only != name) or name in args.skip:
            continue
        with tempfile.TemporaryDirectory() as workdir:
            scenario(args, workdir)
    print("job_dispatcher_clients: ok")


if __name__ == "__main__":
    main()
