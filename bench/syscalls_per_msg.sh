#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# syscalls_per_msg.sh: how many system calls the echo server makes per echoed message, for
# each ringnet backend, the bare epoll and liburing loops and the Asio and libuv peers.
#
# The server runs pinned to CPU 0, the load generator to CPU 1. While the load runs,
# `perf stat -e raw_syscalls:sys_enter` counts the server's syscalls over a fixed window
# (a tracepoint counter: it does not slow the server the way strace does); syscalls per
# second divided by the load generator's messages per second is the figure.
#
#   bench/syscalls_per_msg.sh                       # 50x64x1 and 50x64x16
#   bench/syscalls_per_msg.sh --scenarios 50x16384x1 --duration 3
#
# Needs perf (Debian: linux-perf); installs it when missing. Prints a Markdown table and
# writes it to bench/results/latest-syscalls.md, or with --out-dir DIR (OUT_DIR) writes
# syscalls.md and syscalls.csv to DIR instead. asio/libuv are skipped with a message when
# not built. Environment: BUILD_DIR, SERVERS (also ringnet-uring-noregring,
# ringnet-uring-nofixed, and
# ringnet-uring-base: the echo_server binary BASE_ECHO names, built from another commit),
# SCENARIOS, DURATION, SERVER_CPU (0), LOADGEN_CPU (1), SKIP_BUILD=1 (use BUILD_DIR as it
# is). Exit status 1 if a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
SCENARIOS=${SCENARIOS:-50x64x1,50x64x16}
SERVERS=${SERVERS:-ringnet-epoll ringnet-uring bare bare-uring asio libuv}
DURATION=${DURATION:-3}
PORT=${PORT:-19400}
OUT_DIR=${OUT_DIR:-}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
FAILURES=0

while [[ $# -gt 0 ]]; do
  case $1 in
    --scenarios) SCENARIOS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --out-dir) OUT_DIR=$2; shift ;;
    *) echo "syscalls_per_msg: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

command -v perf >/dev/null || bash "$ROOT/scripts/deps.sh" linux-perf
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    meson setup "$BUILD_DIR" "$ROOT" --buildtype=release -Dtests=disabled >&2
  fi
  ninja -C "$BUILD_DIR" >&2
fi

# The peers are optional build targets: skip one that was not built, with a message.
for peer in asio libuv; do
  [[ " $SERVERS " == *" $peer "* && ! -x $BUILD_DIR/bench/${peer}_echo ]] || continue
  echo "syscalls_per_msg: $peer peer not built ($BUILD_DIR/bench/${peer}_echo): skipping it" >&2
  SERVERS=$(tr ' ' '\n' <<<"$SERVERS" | grep -vx "$peer" | tr '\n' ' ')
done

WORK=$(mktemp -d /tmp/syscalls.XXXXXX)
SERVER_PID=""
load_pid=""
cleanup() {
  local pid
  for pid in $load_pid $SERVER_PID; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {
  PORT=$((PORT + 1))
  local cmd
  case $1 in
    ringnet-epoll) cmd=("$BUILD_DIR/samples/echo_server" --port "$PORT" --loops 1 --backend epoll) ;;
    ringnet-uring) cmd=("$BUILD_DIR/samples/echo_server" --port "$PORT" --loops 1 --backend io_uring) ;;
    ringnet-uring-noregring) cmd=("$BUILD_DIR/samples/echo_server" --port "$PORT" --loops 1 --backend io_uring --no-uring-register-ring) ;;
    ringnet-uring-nofixed) cmd=("$BUILD_DIR/samples/echo_server" --port "$PORT" --loops 1 --backend io_uring --no-uring-fixed-files) ;;
    ringnet-uring-base) cmd=("$BASE_ECHO" --port "$PORT" --loops 1 --backend io_uring) ;;
    bare) cmd=("$BUILD_DIR/bench/bare_epoll_echo" --port "$PORT") ;;
    bare-uring) cmd=("$BUILD_DIR/bench/bare_uring_echo" --port "$PORT") ;;
    asio) cmd=("$BUILD_DIR/bench/asio_echo" --port "$PORT") ;;
    libuv) cmd=("$BUILD_DIR/bench/libuv_echo" --port "$PORT") ;;
    *) echo "unknown server $1" >"$WORK/server.err"; return 1 ;;
  esac
  taskset -c "$SERVER_CPU" "${cmd[@]}" >/dev/null 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

report="$WORK/report.md"
csv="$WORK/syscalls.csv"
echo "scenario,server,status,msgs_per_s,syscalls_per_s,syscalls_per_msg" >"$csv"
{
  echo "## Server syscalls per echoed message — $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r)"
  echo
  echo "| scenario | server | msgs/s | syscalls/s | syscalls per message |"
  echo "|---|---|---|---|---|"
} >"$report"

for scen in ${SCENARIOS//,/ }; do
  IFS=x read -r conns size depth <<<"$scen"
  for server in $SERVERS; do
    if ! start_server "$server"; then
      echo "| $scen | $server | n/a (did not start: $(head -c 80 "$WORK/server.err")) | | |" >>"$report"
      echo "$scen,$server,server-failed,,," >>"$csv"
      kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
      SERVER_PID=""
      FAILURES=$((FAILURES + 1))
      continue
    fi
    taskset -c "$LOADGEN_CPU" "$BUILD_DIR/bench/loadgen" --port "$PORT" --conns "$conns" \
      --size "$size" --pipeline "$depth" --warmup 1 --duration $((DURATION + 1)) --csv \
      >"$WORK/load.csv" 2>"$WORK/load.err" &
    load_pid=$!
    sleep 1.5  # past the warm-up, inside the measured window
    perf_ok=1
    perf stat -x, -e raw_syscalls:sys_enter -p "$SERVER_PID" -- sleep "$DURATION" \
      2>"$WORK/perf.csv" >/dev/null || perf_ok=0
    load_ok=1
    wait "$load_pid" || load_ok=0
    load_pid=""
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    rate=$(cut -d, -f8 "$WORK/load.csv")
    calls=$(awk -F, '/raw_syscalls/ { print $1 }' "$WORK/perf.csv")
    if (( ! load_ok || ! perf_ok )) || ! [[ $calls =~ ^[0-9]+$ && -n $rate ]]; then
      why="loadgen: $(head -c 100 "$WORK/load.err")"
      (( perf_ok )) && [[ $calls =~ ^[0-9]+$ ]] || why="perf: $(head -c 100 "$WORK/perf.csv")"
      echo "syscalls_per_msg: $scen $server failed: $why" >&2
      echo "| $scen | $server | n/a (failed: ${why//|/ }) | | |" >>"$report"
      echo "$scen,$server,failed,,," >>"$csv"
      FAILURES=$((FAILURES + 1))
      continue
    fi
    awk -v s="$scen" -v n="$server" -v r="$rate" -v c="$calls" -v d="$DURATION" \
      'BEGIN { printf "| %s | %s | %.0f | %.0f | %.3f |\n", s, n, r, c / d, (c / d) / r }' >>"$report"
    awk -v s="$scen" -v n="$server" -v r="$rate" -v c="$calls" -v d="$DURATION" \
      'BEGIN { printf "%s,%s,ok,%.1f,%.1f,%.4f\n", s, n, r, c / d, (c / d) / r }' >>"$csv"
  done
done

if [[ -n $OUT_DIR ]]; then
  mkdir -p "$OUT_DIR"
  cp "$report" "$OUT_DIR/syscalls.md"
  cp "$csv" "$OUT_DIR/syscalls.csv"
else
  mkdir -p "$ROOT/bench/results"
  cp "$report" "$ROOT/bench/results/latest-syscalls.md"
fi
cat "$report"
(( FAILURES == 0 ))
