#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""report.py: turns one bench/run results directory into tables and charts.

  bench/report.py bench/results/<timestamp>

Reads what bench/run left in <dir>/raw/ (every part optional: a part that was skipped or
failed is reported as missing, not as an error):
  echo-runs.csv    one row per echo run (bench/echo_compare.sh --out-dir)
  idle-rss.csv     server RSS per idle connection (echo_compare.sh --idle-rss)
  peers-runs.csv   one row per redis-benchmark / wrk run (bench/peer_compare.py --out-dir)
  syscalls.csv     server syscalls per message (bench/syscalls_per_msg.sh --out-dir)
  micro_*.json     Google Benchmark --benchmark_out files
and <dir>/machine.json (written by bench/run). Writes into <dir>:
  summary.md       the Markdown report: headline ratios, full tables, machine
  summary.json     the same numbers, machine-readable
  echo.csv, peers.csv, micro.csv   one row per (scenario, server): median, min, max
  charts/*.png     throughput, p99 latency and CPU per message per scenario, servers side
                   by side, with min-max error bars (gnuplot; skipped with a message if
                   gnuplot is missing)
Exit status 0, or 1 when no input was found at all.
"""
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

# Display order; servers not listed here follow in the order they appear.
ECHO_ORDER = ["ringnet-epoll", "ringnet-uring", "ringnet-uring-nobundle", "bare", "bare-uring",
              "asio", "libuv"]
# (ringnet server, the server it is divided by) for the headline ratios.
ECHO_RATIOS = [("ringnet-epoll", "bare"), ("ringnet-epoll", "asio"), ("ringnet-epoll", "libuv"),
               ("ringnet-uring", "bare-uring"), ("ringnet-uring", "asio"),
               ("ringnet-uring", "libuv")]
PEER_OF_SUITE = {"resp": "redis", "http": "nginx"}


def read_csv(path):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(text):
    try:
        v = float(text)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def spread(values):
    """{median, min, max, n} of the numbers among `values`, or None."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def ordered(names, order):
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


def scenario_key(scen):
    """'50x64x16' sorts by connections, then size, then depth."""
    try:
        return tuple(int(x) for x in scen.split("x"))
    except ValueError:
        return (math.inf, scen)


def human_size(n):
    n = int(n)
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def scenario_label(scen):
    """'50x64x16' -> '50 conns, 64 B, depth 16'."""
    try:
        c, s, d = scen.split("x")
        return f"{int(c):,} conn{'s' if int(c) != 1 else ''}, {human_size(s)}, depth {d}"
    except ValueError:
        return scen


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def cell(s, digits=0):
    """'median (min–max)' or 'n/a'."""
    if s is None:
        return "n/a"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def ratio(a, b):
    if a is None or b is None or not b["median"]:
        return None
    return a["median"] / b["median"]


# ---- echo --------------------------------------------------------------------------------

ECHO_METRICS = ["msgs_per_s", "mib_per_s", "p50_us", "p99_us", "p999_us",
                "server_cpu_us_per_msg", "busy_pct"]


def aggregate_echo(rows):
    """{(scenario, server): {metric: spread, 'failed': n}}"""
    groups = {}
    for r in rows:
        g = groups.setdefault((r["scenario"], r["server"]), {"runs": [], "failed": 0})
        if r["status"] != "ok":
            g["failed"] += 1
            continue
        window, cpu_s = num(r.get("window_s")), num(r.get("server_cpu_s"))
        r = dict(r)
        r["busy_pct"] = 100 * cpu_s / window if window and cpu_s is not None else None
        g["runs"].append(r)
    out = {}
    for key, g in groups.items():
        out[key] = {m: spread(num(r[m]) if m != "busy_pct" else r[m] for r in g["runs"])
                    for m in ECHO_METRICS}
        out[key]["failed"] = g["failed"]
    return out


def echo_tables(agg):
    scens = sorted({s for s, _ in agg}, key=scenario_key)
    servers = ordered([v for _, v in agg], ECHO_ORDER)
    lines = ["## Echo", "",
             "Headline: ringnet's server CPU time per echoed message divided by each other "
             "server's, median of the repeats (below 1.00 ringnet spends less; the figure of "
             "merit, since on two cores the load generator often limits msgs/s).", ""]
    pairs = [(a, b) for a, b in ECHO_RATIOS if a in servers and b in servers]
    if pairs:
        lines.append("| scenario | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
        lines.append("|---|" + "---:|" * len(pairs))
        for sc in scens:
            cells = []
            for a, b in pairs:
                r = ratio(agg.get((sc, a), {}).get("server_cpu_us_per_msg"),
                          agg.get((sc, b), {}).get("server_cpu_us_per_msg"))
                cells.append(fmt(r, 2))
            lines.append(f"| {scen_cell(sc)} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("The same ratios for msgs/s (above 1.00 ringnet echoed more):")
        lines.append("")
        lines.append("| scenario | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
        lines.append("|---|" + "---:|" * len(pairs))
        for sc in scens:
            cells = [fmt(ratio(agg.get((sc, a), {}).get("msgs_per_s"),
                               agg.get((sc, b), {}).get("msgs_per_s")), 2) for a, b in pairs]
            lines.append(f"| {scen_cell(sc)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["All servers: median (min–max) of the repeats. Server busy % = its CPU time over "
              "the window; under ~100% the load generator was the limit.", "",
              "| scenario | server | msgs/s | MiB/s | p50 µs | p99 µs | p999 µs | "
              "server CPU µs/msg | busy % | failed runs |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sc in scens:
        for sv in servers:
            a = agg.get((sc, sv))
            if a is None:
                continue
            lines.append(f"| {sc} | {sv} | {cell(a['msgs_per_s'])} | "
                         f"{fmt((a['mib_per_s'] or {}).get('median'), 1)} | "
                         f"{fmt((a['p50_us'] or {}).get('median'), 1)} | {cell(a['p99_us'], 1)} | "
                         f"{fmt((a['p999_us'] or {}).get('median'), 1)} | "
                         f"{cell(a['server_cpu_us_per_msg'], 3)} | "
                         f"{fmt((a['busy_pct'] or {}).get('median'))} | {a['failed']} |")
    lines.append("")
    return lines


def scen_cell(sc):
    return f"{sc} ({scenario_label(sc)})"


# ---- peers -------------------------------------------------------------------------------

def aggregate_peers(rows):
    groups = {}
    for r in rows:
        g = groups.setdefault((r["suite"], r["scenario"], r["server"]), {"runs": [], "failed": 0})
        if r["status"] == "ok":
            g["runs"].append(r)
        else:
            g["failed"] += 1
    return {k: {**{m: spread(num(r[m]) for r in g["runs"])
                   for m in ("rps", "p50_ms", "p99_ms", "cpu_us")}, "failed": g["failed"]}
            for k, g in groups.items()}


def peer_tables(agg):
    lines = ["## Protocol servers against their peers", "",
             "resp: samples/resp_server vs redis-server, redis-benchmark -c 50; http: "
             "samples/http_server vs nginx, wrk -c 50 /plaintext. Median (min–max) of the "
             "repeats; ratios are ringnet / peer (req/s: higher is better, CPU: lower).", "",
             "| suite | scenario | server | req/s | p50 ms | p99 ms | server CPU µs/req | "
             "req/s vs peer | CPU/req vs peer | failed runs |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    keys = sorted(agg, key=lambda k: (k[0], k[1]))
    seen = []
    for suite, sc, _ in keys:
        if (suite, sc) in seen:
            continue
        seen.append((suite, sc))
        peer = PEER_OF_SUITE.get(suite)
        p = agg.get((suite, sc, peer))
        names = ordered([k[2] for k in keys if k[:2] == (suite, sc)],
                        ["ringnet-epoll", "ringnet-io_uring", peer])
        for sv in names:
            a = agg[(suite, sc, sv)]
            lines.append(f"| {suite} | {sc} | {sv} | {cell(a['rps'])} | "
                         f"{fmt((a['p50_ms'] or {}).get('median'), 3)} | "
                         f"{fmt((a['p99_ms'] or {}).get('median'), 3)} | "
                         f"{cell(a['cpu_us'], 2)} | "
                         f"{fmt(ratio(a['rps'], p and p['rps']), 2)} | "
                         f"{fmt(ratio(a['cpu_us'], p and p['cpu_us']), 2)} | {a['failed']} |")
    lines.append("")
    return lines


# ---- syscalls, idle RSS, micro -----------------------------------------------------------

def syscall_table(rows):
    scens = sorted({r["scenario"] for r in rows}, key=scenario_key)
    servers = ordered([r["server"] for r in rows], ECHO_ORDER)
    by = {(r["scenario"], r["server"]): r for r in rows}
    lines = ["## Server syscalls per echoed message", "",
             "perf stat -e raw_syscalls:sys_enter on the server over a fixed window, divided "
             "by the messages echoed in it (one run each).", "",
             "| scenario | " + " | ".join(servers) + " |", "|---|" + "---:|" * len(servers)]
    for sc in scens:
        cells = []
        for sv in servers:
            r = by.get((sc, sv))
            cells.append(fmt(num(r["syscalls_per_msg"]), 3) if r and r["status"] == "ok"
                         else "n/a")
        lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def idle_table(rows):
    lines = ["## Server memory per idle connection", "",
             "(VmRSS with N idle connections − VmRSS before) / N; each connection first "
             "echoed the bytes shown (0: it never sent a byte), then went quiet.",
             "", "| server | idle connections | bytes echoed first | bytes per connection |",
             "|---|---:|---:|---:|"]
    order = ordered([x["server"] for x in rows], ECHO_ORDER)
    for r in sorted(rows, key=lambda r: (order.index(r["server"]),
                                         int(r.get("echo_bytes") or 0))):
        v = num(r["bytes_per_conn"]) if r["status"] == "ok" else None
        lines.append(f"| {r['server']} | {r['idle_conns']} | {r.get('echo_bytes') or 0} "
                     f"| {fmt(v)} |")
    lines.append("")
    return lines


def load_micro(raw):
    """[(binary, name, real_time ns, cpu_time ns, items/s or None, bytes/s or None)]"""
    out = []
    for fn in sorted(os.listdir(raw)):
        if not (fn.startswith("micro_") and fn.endswith(".json")):
            continue
        try:
            with open(os.path.join(raw, fn)) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            print(f"report: skipping {fn}: {e}", file=sys.stderr)
            continue
        benches = data.get("benchmarks", [])
        # With repetitions keep the medians, else the single runs.
        medians = [b for b in benches if b.get("aggregate_name") == "median"]
        for b in medians or [b for b in benches if b.get("run_type", "iteration") == "iteration"]:
            scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
            out.append((fn[:-5], b.get("run_name", b["name"]), b["real_time"] * scale,
                        b["cpu_time"] * scale, b.get("items_per_second"),
                        b.get("bytes_per_second")))
    return out


def micro_table(rows):
    lines = ["## Micro-benchmarks", "",
             "Google Benchmark, CPU time per iteration (median of the repetitions when there "
             "were several). Decode/encode benchmarks work on batches of 16 frames: see "
             "items/s for frames per second.", "",
             "| binary | benchmark | CPU ns/iter | items/s | bytes/s |", "|---|---|---:|---:|---:|"]
    for binary, name, _, cpu, items, bytes_ in rows:
        lines.append(f"| {binary} | {name} | {fmt(cpu, 1)} | {fmt(items)} | "
                     f"{fmt(bytes_ / (1 << 20), 0) + ' MiB/s' if bytes_ else ''} |")
    lines.append("")
    return lines


# ---- charts ------------------------------------------------------------------------------

def gnuplot_chart(path_base, title, ylabel, groups, series, values, log=True):
    """A clustered bar chart: one cluster per group (x), one bar per series, with min-max
    error bars. values[(group, series)] = spread or None. Returns the image file or None."""
    data = path_base + ".dat"
    with open(data, "w") as f:
        for g in groups:
            cols = []
            for s in series:
                v = values.get((g, s))
                cols += ([f"{v['median']:.6g}", f"{v['min']:.6g}", f"{v['max']:.6g}"]
                         if v else ["NaN", "NaN", "NaN"])
            label = g.replace('"', "'")
            f.write(f'"{label}" ' + " ".join(cols) + "\n")
    terminal, ext = ("pngcairo size 1400,620 font 'sans,10'", "png")
    if "pngcairo" not in gnuplot_terminals():
        terminal, ext = ("svg size 1400,620 dynamic font 'sans,10'", "svg")
    out = f"{path_base}.{ext}"
    plots = []
    for i, s in enumerate(series):
        c = 2 + 3 * i
        src = f"'{data}'" if i == 0 else "''"
        xt = ":xtic(1)" if i == 0 else ""
        plots.append(f"{src} using {c}:{c + 1}:{c + 2}{xt} title '{s}'")
    script = "\n".join([
        f"set terminal {terminal}", "set termoption noenhanced",  # "_" is not a subscript
        f"set output '{out}'",
        f"set title \"{title}\"", f"set ylabel \"{ylabel}\"",
        "set style data histogram", "set style histogram errorbars gap 2 lw 1",
        "set style fill solid 0.85 border -1", "set boxwidth 0.9",
        "set key outside top center horizontal", "set grid ytics",
        "set xtics rotate by -25 scale 0", "set bmargin 7",
        log_range(values) if log else "set yrange [0:*]",
        "plot " + ", ".join(plots), ""])
    res = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if res.returncode != 0:
        print(f"report: gnuplot failed for {out}: {res.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return out


def log_range(values):
    """Log y axis from the decade below the smallest bar: gnuplot's own range starts at
    the smallest tick, which leaves the smallest bars (1 MiB messages) a few pixels tall."""
    lows = [v["min"] for v in values.values() if v and v["min"] > 0]
    highs = [v["max"] for v in values.values() if v and v["max"] > 0]
    if not lows:
        return "set logscale y"
    lo = 10 ** (math.floor(math.log10(min(lows))) - 1)
    hi = 10 ** math.ceil(math.log10(max(highs) * 1.05))
    return f"set logscale y\nset yrange [{lo:g}:{hi:g}]"


_TERMINALS = None


def gnuplot_terminals():
    global _TERMINALS
    if _TERMINALS is None:
        res = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
        _TERMINALS = res.stdout + res.stderr
    return _TERMINALS


def charts(outdir, echo_agg, peer_agg):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not installed (apt-get install gnuplot-nox): no charts",
              file=sys.stderr)
        return []
    cdir = os.path.join(outdir, "charts")
    os.makedirs(cdir, exist_ok=True)
    made = []
    if echo_agg:
        scens = sorted({s for s, _ in echo_agg}, key=scenario_key)
        servers = ordered([v for _, v in echo_agg], ECHO_ORDER)
        for metric, name, title, ylabel in (
                ("msgs_per_s", "echo-throughput", "Echo throughput per scenario "
                 "(conns x bytes x depth; bars: median, whiskers: min-max)",
                 "messages/s (log)"),
                ("p99_us", "echo-p99", "Echo p99 latency per scenario", "p99 µs (log)"),
                ("server_cpu_us_per_msg", "echo-cpu", "Server CPU time per echoed message",
                 "µs per message (log, lower is better)")):
            vals = {k: v[metric] for k, v in echo_agg.items()}
            made.append(gnuplot_chart(os.path.join(cdir, name), title, ylabel, scens, servers,
                                      vals))
    if peer_agg:
        groups = sorted({f"{k[0]} {k[1]}" for k in peer_agg})
        servers = ordered([k[2] for k in peer_agg],
                          ["ringnet-epoll", "ringnet-io_uring", "redis", "nginx"])
        # One bar per ringnet backend and one "peer" bar (redis or nginx by suite).
        series = [s for s in servers if s.startswith("ringnet")] + ["peer (redis, nginx)"]
        for metric, name, title, ylabel in (
                ("rps", "peers-throughput", "RESP and HTTP: requests per second",
                 "requests/s (log)"),
                ("p99_ms", "peers-p99", "RESP and HTTP: p99 latency", "p99 ms (log)")):
            vals = {}
            for (suite, sc, sv), v in peer_agg.items():
                key = series[-1] if sv == PEER_OF_SUITE.get(suite) else sv
                vals[(f"{suite} {sc}", key)] = v[metric]
            made.append(gnuplot_chart(os.path.join(cdir, name), title, ylabel, groups, series,
                                      vals))
    for f in os.listdir(cdir):
        if f.endswith(".dat"):
            os.remove(os.path.join(cdir, f))
    return [m for m in made if m]


# ---- main --------------------------------------------------------------------------------

def write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def spread_cols(s):
    return [s["median"], s["min"], s["max"]] if s else ["", "", ""]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    raw = os.path.join(outdir, "raw")
    machine = {}
    if os.path.exists(os.path.join(outdir, "machine.json")):
        with open(os.path.join(outdir, "machine.json")) as f:
            machine = json.load(f)
    echo_rows = read_csv(os.path.join(raw, "echo-runs.csv"))
    idle_rows = read_csv(os.path.join(raw, "idle-rss.csv"))
    peer_rows = read_csv(os.path.join(raw, "peers-runs.csv"))
    sys_rows = read_csv(os.path.join(raw, "syscalls.csv"))
    micro = load_micro(raw) if os.path.isdir(raw) else []

    echo_agg = aggregate_echo(echo_rows) if echo_rows else {}
    peer_agg = aggregate_peers(peer_rows) if peer_rows else {}
    made = charts(outdir, echo_agg, peer_agg)

    m = machine
    lines = [f"# ringnet benchmark — {m.get('date', '?')}, profile {m.get('profile', '?')}", "",
             f"- machine: {m.get('cores', '?')} cores, {m.get('cpu_model', '?')}, kernel "
             f"{m.get('kernel', '?')}, {m.get('os', '?')}",
             f"- commit {m.get('commit', '?')}; build {m.get('build_dir', '?')} "
             f"({m.get('buildtype', '?')})",
             f"- placement: {m.get('placement', '?')}",
             f"- echo: {m.get('echo_windows', '?')}; peers: {m.get('peer_windows', '?')}",
             f"- load average at start {m.get('loadavg_start', '?')}, at end "
             f"{m.get('loadavg_end', '?')} (other work on the machine skews results: look "
             "at the spreads)",
             f"- wall time {m.get('elapsed_s', '?')} s", ""]
    for note in m.get("notes", []):
        lines.append(f"> {note}")
    if m.get("notes"):
        lines.append("")
    if made:
        lines += ["Charts: " + ", ".join(f"[{os.path.basename(c)}](charts/{os.path.basename(c)})"
                                         for c in made), ""]
        first = [c for c in made if "echo-cpu" in c] or made
        lines += [f"![{os.path.basename(first[0])}](charts/{os.path.basename(first[0])})", ""]
    sections = 0
    if echo_agg:
        lines += echo_tables(echo_agg)
        sections += 1
    else:
        lines += ["## Echo", "", "Not run (or no results).", ""]
    if peer_agg:
        lines += peer_tables(peer_agg)
        sections += 1
    if sys_rows:
        lines += syscall_table(sys_rows)
        sections += 1
    if idle_rows:
        lines += idle_table(idle_rows)
        sections += 1
    if micro:
        lines += micro_table(micro)
        sections += 1
    pruned = m.get("pruned_scenarios", [])
    if pruned:
        lines += ["## Echo scenarios left out of this profile", "",
                  "| scenario | why |", "|---|---|"]
        lines += [f"| {p['scenario']} | {p['why']} |" for p in pruned]
        lines.append("")
    failures = m.get("failed_parts", [])
    if failures:
        lines += ["**Parts that failed or were skipped: " + ", ".join(failures) +
                  " (see run.log).**", ""]

    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(lines))
    write_rows(os.path.join(outdir, "echo.csv"),
               ["scenario", "server"] + [f"{m_}_{k}" for m_ in ECHO_METRICS
                                         for k in ("median", "min", "max")] + ["failed_runs"],
               [[sc, sv] + sum((spread_cols(a[m_]) for m_ in ECHO_METRICS), []) + [a["failed"]]
                for (sc, sv), a in sorted(echo_agg.items(),
                                          key=lambda kv: (scenario_key(kv[0][0]), kv[0][1]))])
    write_rows(os.path.join(outdir, "peers.csv"),
               ["suite", "scenario", "server"] + [f"{m_}_{k}" for m_ in
                                                  ("rps", "p50_ms", "p99_ms", "cpu_us")
                                                  for k in ("median", "min", "max")]
               + ["failed_runs"],
               [list(k) + sum((spread_cols(a[m_]) for m_ in ("rps", "p50_ms", "p99_ms",
                                                              "cpu_us")), []) + [a["failed"]]
                for k, a in sorted(peer_agg.items())])
    write_rows(os.path.join(outdir, "micro.csv"),
               ["binary", "benchmark", "real_ns", "cpu_ns", "items_per_s", "bytes_per_s"], micro)
    summary = {
        "machine": machine,
        "echo": [{"scenario": sc, "server": sv, **a} for (sc, sv), a in echo_agg.items()],
        "echo_cpu_ratios": [{"scenario": sc, "a": a, "b": b,
                             "cpu_per_msg": ratio(echo_agg.get((sc, a), {}).get(
                                 "server_cpu_us_per_msg"), echo_agg.get((sc, b), {}).get(
                                 "server_cpu_us_per_msg")),
                             "msgs_per_s": ratio(echo_agg.get((sc, a), {}).get("msgs_per_s"),
                                                 echo_agg.get((sc, b), {}).get("msgs_per_s"))}
                            for sc in sorted({s for s, _ in echo_agg}, key=scenario_key)
                            for a, b in ECHO_RATIOS
                            if (sc, a) in echo_agg and (sc, b) in echo_agg],
        "peers": [{"suite": k[0], "scenario": k[1], "server": k[2], **a}
                  for k, a in peer_agg.items()],
        "syscalls": sys_rows or [],
        "idle_rss": idle_rows or [],
        "micro": [dict(zip(["binary", "benchmark", "real_ns", "cpu_ns", "items_per_s",
                            "bytes_per_s"], r)) for r in micro],
        "charts": [os.path.relpath(c, outdir) for c in made],
    }
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"report: {os.path.join(outdir, 'summary.md')} ({sections} sections, "
          f"{len(made)} charts)")
    return 0 if sections else 1


if __name__ == "__main__":
    sys.exit(main())
