#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tls_compare.py: ringnet's TLS (samples/http_server with --tls-cert, on each backend)
against nginx with TLS (one worker, the same certificate), in one run.

  new handshakes      bench/tls_load: connect, full handshake, close, one after another
                      (TLS 1.3, key exchange X25519 or P-256; ECDSA P-256 or RSA-2048 cert)
  resumed handshakes  the same with the first session's ticket (TLS 1.3 psk_dhe_ke, and
                      TLS 1.2 abbreviated)
  bulk                wrk -c 10 over keep-alive TLS, GET of a 64 KiB body

Every server runs with one loop/worker pinned to SERVER_CPU (default 0; ringnet with
--reuseport, so that its loop accepts for itself as nginx's worker does), the load tool on
LOAD_CPU (default 1). Rounds are interleaved (ringnet-epoll, ringnet-io_uring, nginx, ...)
and each cell is the median of the rounds. Reported: handshakes (or requests) per second,
and the server's CPU time per handshake (or per MiB of body), utime+stime of its processes
over the run: the single-threaded client is the limit, so the server's CPU is the figure
to compare. Both servers use OpenSSL 3 from Debian, so what differs is the engine around
it. Kernel TLS is not measured: this machine's kernel has no tls module (the servers run
records in user space).

  bench/tls_compare.py [--rounds 5] [--seconds 4] [--quick] [--out FILE]

Needs a release build in build-release/ (--build-dir) with bench/tls_load, nginx (Debian
nginx-light) and wrk; writes bench/results/latest-tls.md unless --out says otherwise.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_compare import NGINX_CONF, ROOT, Server, cpu_seconds, free_port  # noqa: E402

# peer_compare.py's nginx, listening with TLS and serving www/bytes/ as files.
NGINX_TLS_EXTRA = """    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    root {work}/www;
    location /bytes/ {{ default_type application/octet-stream; }}
"""


def make_cert(workdir, kind):
    """A self-signed certificate for localhost: kind 'ecdsa' (P-256) or 'rsa' (2048)."""
    cert, key = os.path.join(workdir, f"{kind}.pem"), os.path.join(workdir, f"{kind}.key")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ecdsa" \
        else ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def start_servers(args, workdir, cert, key):
    servers = []
    http = os.path.join(args.build_dir, "samples", "http_server")
    for backend in ("epoll", "io_uring"):
        port = free_port()
        servers.append(Server(f"ringnet-{backend}",
                              # --reuseport: the one loop accepts for itself, as nginx's
                              # one worker does (no acceptor thread handing sockets over).
                              [http, "--port", str(port), "--loops", "1", "--reuseport",
                               "--backend", backend, "--tls-cert", cert, "--tls-key", key],
                              port, args.server_cpu,
                              workdir))
    port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=workdir, port=port, workers=1, listen_opts=" ssl",
                                  server_extra=NGINX_TLS_EXTRA.format(work=workdir, cert=cert,
                                                                      key=key)))
    servers.append(Server("nginx", ["nginx", "-p", workdir, "-c", conf], port, args.server_cpu,
                          workdir))
    return servers


def run_load(args, server, scenario):
    """One run of `scenario` against `server`: (rate per second, server CPU per unit)."""
    pids = server.pids()
    before = cpu_seconds(pids)
    if scenario["tool"] == "tls_load":
        argv = ["taskset", "-c", str(args.load_cpu),
                os.path.join(args.build_dir, "bench", "tls_load"), "--port", str(server.port),
                "--seconds", str(args.seconds)] + scenario["args"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        after = cpu_seconds(pids)
        m = re.search(r"handshakes=(\d+) seconds=([\d.]+) resumed=(\d+) failures=(\d+)", out.stdout)
        if out.returncode != 0 or not m or int(m.group(4)) != 0:
            raise RuntimeError(f"tls_load against {server.name}: {out.stdout} {out.stderr}")
        n, secs, resumed = int(m.group(1)), float(m.group(2)), int(m.group(3))
        if scenario.get("resumed") and resumed < n - 1:
            raise RuntimeError(f"{server.name}: only {resumed} of {n} handshakes resumed")
        return n / secs, (after - before) / n * 1e6  # µs per handshake
    argv = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", "-c10", f"-d{args.seconds:g}s",
            f"https://127.0.0.1:{server.port}/bytes/65536"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    after = cpu_seconds(pids)
    m = re.search(r"(\d+) requests in", out.stdout)
    if out.returncode != 0 or not m or "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
        raise RuntimeError(f"wrk against {server.name}: {out.stdout} {out.stderr}")
    requests = int(m.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    mib = requests * 65536 / (1 << 20)
    return rps * 65536 / (1 << 20), (after - before) / mib * 1e3  # MiB/s, ms per MiB


SCENARIOS = [
    # name, cert, tool, args, units
    {"name": "new, ECDSA P-256 cert, X25519", "cert": "ecdsa", "tool": "tls_load",
     "args": ["--groups", "X25519"]},
    {"name": "new, ECDSA P-256 cert, P-256", "cert": "ecdsa", "tool": "tls_load",
     "args": ["--groups", "P-256"]},
    {"name": "new, RSA-2048 cert, X25519", "cert": "rsa", "tool": "tls_load",
     "args": ["--groups", "X25519"]},
    {"name": "new, RSA-2048 cert, P-256", "cert": "rsa", "tool": "tls_load",
     "args": ["--groups", "P-256"]},
    {"name": "resumed TLS 1.3 (ticket, X25519)", "cert": "ecdsa", "tool": "tls_load",
     "args": ["--resume", "--groups", "X25519"], "resumed": True},
    {"name": "resumed TLS 1.2 (ticket)", "cert": "ecdsa", "tool": "tls_load",
     "args": ["--resume", "--tls", "1.2", "--groups", "X25519:P-256"], "resumed": True},
    {"name": "bulk, 64 KiB responses (wrk -c10)", "cert": "ecdsa", "tool": "wrk", "args": []},
]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default=os.environ.get("BUILD_DIR",
                                                         os.path.join(ROOT, "build-release")))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4)
    p.add_argument("--quick", action="store_true", help="1 round of 1 s")
    p.add_argument("--server-cpu", default=os.environ.get("SERVER_CPU", "0"))
    p.add_argument("--load-cpu", default=os.environ.get("LOAD_CPU", "1"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest-tls.md"))
    p.add_argument("--only", default="", help="the scenarios whose name contains this text")
    args = p.parse_args()
    global SCENARIOS
    SCENARIOS = [s for s in SCENARIOS if args.only in s["name"]]
    if args.quick:
        args.rounds, args.seconds = 1, 1
    results = {}  # (scenario, server) -> [(rate, cpu)]
    with tempfile.TemporaryDirectory(prefix="ringnet-tls-") as workdir:
        os.chmod(workdir, 0o755)  # nginx's worker (nobody) reads www/ below it
        os.makedirs(os.path.join(workdir, "www", "bytes"))
        with open(os.path.join(workdir, "www", "bytes", "65536"), "wb") as f:
            f.write(b"x" * 65536)
        for kind in ("ecdsa", "rsa"):
            cert, key = make_cert(workdir, kind)
            servers = start_servers(args, workdir, cert, key)
            try:
                for _ in range(args.rounds):
                    for sc in (s for s in SCENARIOS if s["cert"] == kind):
                        for server in servers:
                            results.setdefault((sc["name"], server.name), []).append(
                                run_load(args, server, sc))
            finally:
                for server in servers:
                    server.stop()
    names = ["ringnet-epoll", "ringnet-io_uring", "nginx"]
    lines = ["# TLS: ringnet http_server vs nginx", "",
             f"One loop/worker pinned to CPU {args.server_cpu}, load on CPU {args.load_cpu}; "
             f"median of {args.rounds} interleaved rounds of {args.seconds:g} s. Handshakes: "
             "bench/tls_load, one connection at a time (TLS 1.3 unless noted); server CPU in "
             "µs per handshake. Bulk: wrk -t1 -c10, GET /bytes/65536 over keep-alive TLS; "
             "server CPU in ms per MiB of body. Kernel TLS: not available on this kernel "
             "(no tls module), so both servers seal records in user space.", "",
             "| scenario | " + " | ".join(f"{n} rate" for n in names) + " | "
             + " | ".join(f"{n} CPU" for n in names) + " | CPU epoll/nginx | CPU io_uring/nginx |",
             "|---|" + "---:|" * (2 * len(names) + 2)]
    for sc in SCENARIOS:
        med = {n: (statistics.median(r for r, _ in results[(sc["name"], n)]),
                   statistics.median(c for _, c in results[(sc["name"], n)])) for n in names}
        unit = "MiB/s" if sc["tool"] == "wrk" else "/s"
        rates = " | ".join(f"{med[n][0]:,.0f} {unit}" for n in names)
        cpus = " | ".join(f"{med[n][1]:.1f}" for n in names)
        lines.append(f"| {sc['name']} | {rates} | {cpus} | "
                     f"{med['ringnet-epoll'][1] / med['nginx'][1]:.2f} | "
                     f"{med['ringnet-io_uring'][1] / med['nginx'][1]:.2f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
