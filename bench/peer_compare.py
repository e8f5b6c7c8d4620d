#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""peer_compare.py: ringnet's protocol samples against the servers people would use
instead, driven by the load tools those servers are usually measured with, in one run.

  resp: samples/resp_server (epoll, io_uring) vs redis-server (persistence off),
        driven by redis-benchmark -c 50, pipeline 1 and 16, PING / SET / GET.
  http: samples/http_server (epoll, io_uring) vs nginx (one worker, the same plaintext
        body from a `return 200` location), driven by wrk -c 50, without and with
        pipelining (16 requests per write, through a wrk Lua script).

Every server runs with one loop/worker pinned to SERVER_CPU (default 0); the load tool is
pinned to LOAD_CPU (default 1). Runs are interleaved (A B C A B C ...) and each cell is the
median of the repeats. Besides throughput and latency, the server's CPU time per request
(utime+stime of all its processes over the run / requests) is reported: on two cores the
single-threaded client is often the bottleneck, and throughput alone would hide how much
the server spent.

  bench/peer_compare.py                  # both suites, 3 repeats
  bench/peer_compare.py --quick          # 1 repeat, short runs (a smoke test)
  bench/peer_compare.py --suite resp --repeats 5
  bench/peer_compare.py --resp-tests get --pipelines 1,16 --out-dir DIR
                                         # a subset; peers.md + peers-runs.csv in DIR
  bench/peer_compare.py --loops 2 --server-cpu 0-1 --load-cpu 0-1 --load-threads 2
                                         # all cores: ringnet loops / nginx workers = 2

Writes bench/results/peers-<timestamp>.md and bench/results/latest-peers.md (or, with
--out-dir, peers.md and peers-runs.csv, one row per run, there instead). Needs a release
build in build-release/ (bench/echo_compare.sh makes one; --build-dir or BUILD_DIR to
change) and the Debian packages redis-server, redis-tools, nginx-light, wrk (bench/run
installs them through scripts/deps.sh). Everything listens on 127.0.0.1 only. redis-server
stays single-threaded with --loops (one event loop is its design; io-threads only helps on
boxes with many more cores). Exit status 1 if any run failed.
"""
import argparse
import csv
import io
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pids):
    """utime+stime of the given processes, in seconds (one clock tick resolution)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    """A server process pinned to one CPU; pids() lists every process whose CPU counts."""

    def __init__(self, name, argv, port, cpu, workdir):
        self.name, self.port = name, port
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_port(port):
            self.stop()
            raise RuntimeError(f"{name} did not start listening on {port}: see {self.log.name}")

    def pids(self):
        # The process and its children (nginx: master + worker).
        pids = [self.proc.pid]
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                 text=True).stdout
            pids += [int(p) for p in out.split()]
        except OSError:
            pass
        return pids

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def measure(server, argv, requests_of):
    """Runs the load tool pinned to LOAD_CPU; returns (tool output, requests, server CPU s)."""
    pids = server.pids()
    before = cpu_seconds(pids)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    after = cpu_seconds(pids)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()[:400]}")
    return out.stdout, requests_of(out.stdout), after - before


def ringnet_servers(args, workdir, sample):
    """The sample on each backend, --loops loops (default one), pinned like the peer."""
    bin_ = os.path.join(args.build_dir, "samples", sample)
    servers = []
    for backend in ("epoll", "io_uring"):
        port = free_port()
        servers.append(Server(f"ringnet-{backend}", [bin_, "--port", str(port),
                                                     "--loops", str(args.loops),
                                                     "--backend", backend], port,
                              args.server_cpu, workdir))
    return servers


# ---- resp ------------------------------------------------------------------------------

def resp_servers(args, workdir):
    servers = ringnet_servers(args, workdir, "resp_server")
    port = free_port()
    servers.append(Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                                    "--protected-mode", "no", "--io-threads", "1",
                                    "--dir", workdir, "--logfile", ""], port,
                          args.server_cpu, workdir))
    return servers


def resp_run(args, server, test, pipeline):
    n = (args.resp_requests * (8 if pipeline > 1 else 1)) // (4 if args.quick else 1)
    argv = ["taskset", "-c", str(args.load_cpu), "redis-benchmark", "-h", "127.0.0.1",
            "-p", str(server.port), "-c", "50", "-n", str(n), "-P", str(pipeline),
            "-r", "100000", "-t", test, "--csv"]
    if args.load_threads > 1:
        argv += ["--threads", str(args.load_threads)]
    out, requests, cpu = measure(server, argv, lambda _: n)
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no CSV: {out[:300]}")
    row = rows[-1]
    return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]),
            "p99_ms": float(row["p99_latency_ms"]), "cpu_us": cpu / requests * 1e6}


# ---- http ------------------------------------------------------------------------------

NGINX_CONF = """
worker_processes {workers};
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; use epoll; multi_accept on; }}
http {{
  access_log off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 65;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  server {{
    listen 127.0.0.1:{port}{listen_opts} backlog=4096;
    location = /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
{server_extra}  }}
}}
"""

WRK_PIPELINE_LUA = """
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil) end
  req = table.concat(r)
end
request = function() return req end
"""


def http_servers(args, workdir):
    servers = ringnet_servers(args, workdir, "http_server")
    port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=workdir, port=port, workers=args.loops, listen_opts="",
                                  server_extra=""))
    servers.append(Server("nginx", ["nginx", "-p", workdir, "-c", conf], port,
                          args.server_cpu, workdir))
    return servers


def wrk_requests(out):
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError(f"wrk printed no request count: {out[:300]}")
    return int(m.group(1))


def latency_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    value = float(m.group(1)) * scale
    # wrk prints 0.00us for percentiles it lost track of (it happens with pipelining).
    return value if value > 0 else float("nan")


def http_run(args, server, pipeline, workdir):
    duration = args.duration if args.duration is not None else (2 if args.quick else 5)
    argv = ["taskset", "-c", str(args.load_cpu), "wrk", f"-t{args.load_threads}", "-c50",
            f"-d{duration}s", "--latency"]
    if pipeline > 1:
        lua = os.path.join(workdir, "pipeline.lua")
        with open(lua, "w") as f:
            f.write(WRK_PIPELINE_LUA)
        argv += ["-s", lua]
    argv.append(f"http://127.0.0.1:{server.port}/plaintext")
    if pipeline > 1:
        argv += ["--", str(pipeline)]
    out, requests, cpu = measure(server, argv, wrk_requests)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk against {server.name} saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return {"rps": rps, "p50_ms": latency_ms(p50.group(1)) if p50 else float("nan"),
            "p99_ms": latency_ms(p99.group(1)) if p99 else float("nan"),
            "cpu_us": cpu / requests * 1e6}


# ---- report ----------------------------------------------------------------------------

def loops_text(loops):
    if loops == 1:
        return "one loop / one worker"
    return f"ringnet {loops} loops, nginx {loops} workers, redis single-threaded"


def median_cell(runs, key):
    values = [r[key] for r in runs]
    return statistics.median(values), min(values), max(values)


def fmt_ms(value):
    return "n/a" if value != value else f"{value:.3f}"


def table(title, peer, scenarios, results, servers):
    lines = [f"### {title}", "",
             "| scenario | server | req/s | p50 ms | p99 ms | server CPU µs/req | "
             f"req/s vs {peer} | CPU/req vs {peer} |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for sc in scenarios:
        peer_runs = results.get((sc, peer))
        peer_rps = median_cell(peer_runs, "rps")[0] if peer_runs else None
        peer_cpu = median_cell(peer_runs, "cpu_us")[0] if peer_runs else None
        for name in servers:
            runs = results.get((sc, name))
            if not runs:
                lines.append(f"| {sc} | {name} | failed | | | | | |")
                continue
            rps, lo, hi = median_cell(runs, "rps")
            p50 = fmt_ms(median_cell(runs, "p50_ms")[0])
            p99 = fmt_ms(median_cell(runs, "p99_ms")[0])
            cpu, clo, chi = median_cell(runs, "cpu_us")
            spread = f" ({lo:,.0f}-{hi:,.0f})" if len(runs) > 1 else ""
            cspread = f" ({clo:.2f}-{chi:.2f})" if len(runs) > 1 else ""
            ratio = f"{rps / peer_rps:.2f}x" if peer_rps else ""
            cratio = f"{cpu / peer_cpu:.2f}x" if peer_cpu else ""
            lines.append(f"| {sc} | {name} | {rps:,.0f}{spread} | {p50} | {p99} | "
                         f"{cpu:.2f}{cspread} | {ratio} | {cratio} |")
    return "\n".join(lines) + "\n"


RUN_COLUMNS = ["suite", "scenario", "server", "repeat", "status", "rps", "p50_ms", "p99_ms",
               "cpu_us"]


def run_suite(args, suite, servers, scenarios, rows):
    """Runs every scenario on every server, interleaved, args.repeats times; appends one
    dict per run (RUN_COLUMNS) to `rows`.
    Returns ((results by (scenario, server), server names), failures)."""
    results, failures = {}, 0
    try:
        for repeat in range(1, args.repeats + 1):
            for sc, run in scenarios:
                for s in servers:
                    row = {"suite": suite, "scenario": sc, "server": s.name, "repeat": repeat}
                    try:
                        r = run(args, s)
                        results.setdefault((sc, s.name), []).append(r)
                        rows.append({**row, "status": "ok", **r})
                        print(f"{suite} {sc:14} {s.name:15} {r['rps']:>12,.0f} req/s"
                              f"  cpu {r['cpu_us']:.2f} us/req", flush=True)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        failures += 1
                        rows.append({**row, "status": "failed"})
                        print(f"{suite} {sc} {s.name}: {e}", flush=True)
    finally:
        for s in servers:
            s.stop()
    return (results, [s.name for s in servers]), failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="resp,http")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--duration", type=int, default=None,
                    help="wrk seconds per run (default 5, 2 with --quick)")
    ap.add_argument("--resp-requests", type=int, default=400000,
                    help="redis-benchmark -n at pipeline 1 (x8 at pipeline 16)")
    ap.add_argument("--resp-tests", default="ping_mbulk,set,get",
                    help="redis-benchmark -t tests, comma-separated")
    ap.add_argument("--pipelines", default="1,16", help="pipeline depths for both suites")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build-dir",
                    default=os.environ.get("BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--server-cpu", default=os.environ.get("SERVER_CPU", "0"),
                    help="taskset CPU list for the servers")
    ap.add_argument("--load-cpu", default=os.environ.get("LOAD_CPU", "1"),
                    help="taskset CPU list for the load tool")
    ap.add_argument("--loops", type=int, default=1,
                    help="ringnet loops and nginx workers (redis stays single-threaded)")
    ap.add_argument("--load-threads", type=int, default=1,
                    help="wrk -t / redis-benchmark --threads")
    ap.add_argument("--out-dir", help="write peers.md and peers-runs.csv here instead of "
                                      "bench/results/")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    pipelines = [int(p) for p in args.pipelines.split(",")]
    resp_tests = args.resp_tests.split(",")
    suites = args.suite.split(",")
    workdir = tempfile.mkdtemp(prefix="peer_compare.")
    report = [f"## ringnet vs peers ({time.strftime('%Y-%m-%d %H:%M')})", "",
              f"Machine: {os.cpu_count()} CPUs, kernel {os.uname().release}; server pinned "
              f"to CPU {args.server_cpu} ({loops_text(args.loops)}), load tool to CPU "
              f"{args.load_cpu}; median of {args.repeats} interleaved runs (min-max).", ""]
    failures = 0
    rows = []
    try:
        suite_defs = {
            "resp": (("redis-server", "redis-benchmark"), resp_servers,
                     [(f"{t} P{p}", lambda a, s, t=t, p=p: resp_run(a, s, t, p))
                      for t in resp_tests for p in pipelines],
                     "RESP: redis-benchmark -c 50 (-r 100000)", "redis"),
            "http": (("nginx", "wrk"), http_servers,
                     [(f"plaintext P{p}", lambda a, s, p=p: http_run(a, s, p, workdir))
                      for p in pipelines],
                     "HTTP: wrk -t1 -c50 /plaintext", "nginx"),
        }
        for suite in suites:
            if suite not in suite_defs:
                print(f"peer_compare: unknown suite {suite!r} (want resp, http)")
                return 2
            tools, start_servers, scenarios, title, peer = suite_defs[suite]
            missing = [t for t in tools if not shutil.which(t)]
            if missing:
                print(f"peer_compare: skipping {suite}: {', '.join(missing)} not installed")
                continue
            try:
                servers = start_servers(args, workdir)
            except (RuntimeError, OSError) as e:
                failures += 1
                print(f"peer_compare: {suite}: a server did not start: {e}")
                continue
            results, errors = run_suite(args, suite, servers, scenarios, rows)
            failures += errors
            report.append(table(title, peer, [sc for sc, _ in scenarios], results[0], results[1]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        report.append(f"**{failures} run(s) failed; see the output above.**\n")
    text = "\n".join(report)
    print()
    print(text)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "peers.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out_dir, "peers-runs.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=RUN_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        return 1 if failures else 0
    results_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(results_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"peers-{stamp}.md", "latest-peers.md"):
        with open(os.path.join(results_dir, name), "w") as f:
            f.write(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
