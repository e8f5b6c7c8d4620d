#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# echo_compare.sh: ringnet's echo server (epoll and io_uring backends) against the
# hand-written bare epoll and liburing loops and the Boost.Asio and libuv peers, in one run.
#
# Builds build-release/ (release, no tests) if needed, then for each scenario runs every
# server interleaved A B C A B C A B C: the server pinned to CPU 0 (taskset -c 0), the load
# generator to CPU 1 with --server-pid, so "server CPU per message" is the server alone.
# Prints a Markdown table (medians of the repeats with min-max spread, and ringnet/bare,
# ringnet/asio, ringnet/libuv ratios) and writes it to bench/results/echo-<timestamp>.md and
# bench/results/latest-echo.md.
#
#   bench/echo_compare.sh                     # 50x64B pipeline 1 and 16, 5 s windows
#   bench/echo_compare.sh --quick             # 2 s windows, for a smoke run
#   bench/echo_compare.sh --idle-rss          # RSS per idle connection (10,000 conns)
#   bench/echo_compare.sh --all               # both
#   bench/echo_compare.sh --scenarios 50x64x1,1000x64x1,10x1048576x1 --repeats 5
#   bench/echo_compare.sh --out-dir DIR       # echo.md, echo-runs.csv, idle-rss.csv in DIR
#                                             # (instead of bench/results/; for bench/run)
#
# Scenario = CONNSxSIZExPIPELINE. Environment overrides: SCENARIOS, DURATION, WARMUP,
# REPEATS, IDLE_CONNS, IDLE_ECHO, PORT_BASE, RINGNET_LOOPS, BUILD_DIR, SERVER_CPU, LOADGEN_CPU,
# SERVERS (default "ringnet-epoll ringnet-uring bare bare-uring asio libuv"; the io_uring
# ones are dropped with a message where the kernel refuses io_uring, asio and libuv where
# they were not built (libboost-dev, libuv1-dev missing); ringnet-uring-nobundle is
# ringnet-uring without receive bundles, ringnet-uring-noregring without its ring fd
# registered, ringnet-uring-nofixed with plain fds instead of the fixed file table,
# ringnet-uring-inc with incremental buffer consumption,
# ringnet-uring-fullring with all provided buffers offered at start (no growth); bare-uring-zc
# is bare-uring sending with IORING_OP_SEND_ZC;
# ringnet-{epoll,uring}-nometrics run with --no-metrics (no loop histograms)
# and ringnet-{epoll,uring}-admin with an admin listener, to measure what metrics cost),
# PEER_THREADS (asio/libuv --threads, default RINGNET_LOOPS), LOADGEN_THREADS (loadgen
# --threads, default 1), OUT_DIR, SKIP_BUILD=1 (use BUILD_DIR as it is), BASE_ECHO (an
# echo_server binary built from another commit: servers ringnet-{epoll,uring}-base run it,
# for a before/after of a change in one run),
# BARE_FLAGS (e.g. "--short-read" for the baseline that skips the EAGAIN read),
# CLIENT_BACKEND (loadgen --backend: epoll by default, or io_uring / auto).
# Everything listens and connects on 127.0.0.1 only. Exit status is non-zero if any run
# failed (load generator errors, a server that did not start).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
SCENARIOS=${SCENARIOS:-50x64x1,50x64x16}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_ECHO=${IDLE_ECHO:-16}  # bytes each "echoed" idle connection carries before going quiet
PORT_BASE=${PORT_BASE:-19000}
RINGNET_LOOPS=${RINGNET_LOOPS:-1}
BARE_FLAGS=${BARE_FLAGS:-}
SERVERS=${SERVERS:-ringnet-epoll ringnet-uring bare bare-uring asio libuv}
CLIENT_BACKEND=${CLIENT_BACKEND:-epoll}
PEER_THREADS=${PEER_THREADS:-}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
OUT_DIR=${OUT_DIR:-}
BASE_ECHO=${BASE_ECHO:-}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
DO_THROUGHPUT=1
DO_IDLE=0

usage() {  # prints the comment block at the top of this file
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) DURATION=2; WARMUP=0.5 ;;
    --idle-rss) DO_THROUGHPUT=0; DO_IDLE=1 ;;
    --all) DO_THROUGHPUT=1; DO_IDLE=1 ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --idle-conns) IDLE_CONNS=$2; shift ;;
    --port-base) PORT_BASE=$2; shift ;;
    --loops) RINGNET_LOOPS=$2; shift ;;
    --bare-flags) BARE_FLAGS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --client-backend) CLIENT_BACKEND=$2; shift ;;
    --peer-threads) PEER_THREADS=$2; shift ;;
    --loadgen-threads) LOADGEN_THREADS=$2; shift ;;
    --out-dir) OUT_DIR=$2; shift ;;
    -h|--help) usage 0 ;;
    *) echo "echo_compare: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done

PEER_THREADS=${PEER_THREADS:-$RINGNET_LOOPS}
LOADGEN=$BUILD_DIR/bench/loadgen
BARE=$BUILD_DIR/bench/bare_epoll_echo
RINGNET=$BUILD_DIR/samples/echo_server
ASIO=$BUILD_DIR/bench/asio_echo
LIBUV=$BUILD_DIR/bench/libuv_echo
WORK=$(mktemp -d /tmp/echo_compare.XXXXXX)
SERVER_PID=""
LOADGEN_PID=""
FAILURES=0
NEXT_PORT=$PORT_BASE

# ---- process hygiene: whatever happens, nothing we started outlives the script ----------

# shellcheck source=compare_lib.sh
source "$ROOT/bench/compare_lib.sh"

cleanup() {
  exec 9>&-
  stop_pid "$LOADGEN_PID"
  stop_pid "$SERVER_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "echo_compare: $*" >&2; }

# ---- build -------------------------------------------------------------------------------

build() {
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then  # bench/run builds once, before every script
    if [[ ! -f $BUILD_DIR/build.ninja ]]; then
      meson setup "$BUILD_DIR" "$ROOT" --buildtype=release -Dtests=disabled >&2
    fi
    ninja -C "$BUILD_DIR" >&2
  fi
  for bin in "$LOADGEN" "$BARE" "$RINGNET"; do
    [[ -x $bin ]] || { log "missing $bin after build"; exit 1; }
  done
}

# ---- servers -----------------------------------------------------------------------------

# start_server ringnet-epoll|ringnet-uring|bare: sets SERVER_PID and PORT, returns once
# the port accepts.
start_server() {
  next_free_port
  local cmd
  case $1 in
    ringnet-epoll) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend epoll) ;;
    ringnet-uring) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring) ;;
    ringnet-uring-nobundle) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --no-uring-bundle) ;;
    ringnet-uring-inc) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --uring-buffer-inc) ;;
    ringnet-uring-fullring) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --uring-buffers-initial 0) ;;
    ringnet-uring-noregring) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --no-uring-register-ring) ;;
    ringnet-uring-nofixed) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --no-uring-fixed-files) ;;
    ringnet-epoll-nometrics) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend epoll --no-metrics) ;;
    ringnet-uring-nometrics) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --no-metrics) ;;
    ringnet-epoll-admin) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend epoll --admin-port 0) ;;
    ringnet-uring-admin) cmd=("$RINGNET" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring --admin-port 0) ;;
    ringnet-epoll-base) cmd=("$BASE_ECHO" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend epoll) ;;
    ringnet-uring-base) cmd=("$BASE_ECHO" --port "$PORT" --loops "$RINGNET_LOOPS" --pin --backend io_uring) ;;
    bare) read -r -a cmd <<<"$BARE --port $PORT $BARE_FLAGS" ;;
    bare-uring) cmd=("$BUILD_DIR/bench/bare_uring_echo" --port "$PORT") ;;
    bare-uring-zc) cmd=("$BUILD_DIR/bench/bare_uring_echo" --port "$PORT" --zc-min 1) ;;
    asio) cmd=("$ASIO" --port "$PORT" --threads "$PEER_THREADS") ;;
    libuv) cmd=("$LIBUV" --port "$PORT" --threads "$PEER_THREADS") ;;
    *) log "unknown server '$1'"; return 1 ;;
  esac
  launch_server "$1" "${cmd[@]}"
}

# True when echo_server can start on the io_uring backend here.
uring_works() {
  start_server ringnet-uring 2>/dev/null || { stop_server; return 1; }
  stop_server
}

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# ---- statistics --------------------------------------------------------------------------

declare -A RATE P99 CPU BUSY IDLE_RSS  # keyed "scenario:server" (IDLE_RSS: server)

# Machine-readable copies of every run (--out-dir): one row per run / per idle measurement.
RUNS_CSV=$WORK/runs.csv
IDLE_CSV=$WORK/idle.csv
# The loadgen --csv columns without the first (target: its port changes every run).
LOADGEN_COLUMNS="window_s,messages,msgs_per_s,mib_per_s,p50_us,p99_us,p999_us,max_us,\
verify_errors,conn_errors,server_cpu_s,server_cpu_us_per_msg,client_cpu_us_per_msg,\
client_backend"
echo "scenario,server,repeat,status,conns,size,pipeline,$LOADGEN_COLUMNS" >"$RUNS_CSV"
echo "server,idle_conns,echo_bytes,rss_before_kib,rss_after_kib,bytes_per_conn,status" >"$IDLE_CSV"

# One measured run: loadgen CSV -> appends msgs/s, p99 us, server CPU us/msg.
measure_once() {
  local server=$1 scen=$2 repeat=${3:-1} conns size depth
  IFS=x read -r conns size depth <<<"$scen"
  local row_head="$scen,$server,$repeat"
  start_server "$server" || {
    FAILURES=$((FAILURES + 1)); stop_server
    echo "$row_head,server-failed,$conns,$size,$depth" >>"$RUNS_CSV"
    return
  }
  local line threads=$LOADGEN_THREADS
  (( threads <= conns )) || threads=$conns  # a loadgen thread without connections idles
  if line=$(taskset -c "$LOADGEN_CPU" "$LOADGEN" --port "$PORT" --conns "$conns" \
              --size "$size" --pipeline "$depth" --duration "$DURATION" --warmup "$WARMUP" \
              --threads "$threads" --backend "$CLIENT_BACKEND" \
              --server-pid "$SERVER_PID" --csv 2>"$WORK/loadgen.err"); then
    echo "$row_head,ok,$conns,$size,$depth,$(cut -d, -f6- <<<"$line")" >>"$RUNS_CSV"
    local window rate p99 cpu_s cpu
    IFS=, read -r _ _ _ _ _ window _ rate _ _ p99 _ _ _ _ cpu_s cpu _ <<<"$line"
    RATE[$scen:$server]+="$rate "
    BUSY[$scen:$server]+="$(awk -v c="$cpu_s" -v w="$window" \
                              'BEGIN { printf "%.1f", 100 * c / w }') "
    P99[$scen:$server]+="$p99 "
    CPU[$scen:$server]+="$cpu "
    log "$scen $server: $rate msgs/s, p99 $p99 us, $cpu us/msg"
  else
    FAILURES=$((FAILURES + 1))
    log "$scen $server: loadgen failed: $(head -3 "$WORK/loadgen.err")"
    echo "$row_head,loadgen-failed,$conns,$size,$depth" >>"$RUNS_CSV"
  fi
  stop_server
}

# ---- reports -----------------------------------------------------------------------------

throughput_report() {
  echo "### Echo throughput and CPU per message"
  echo
  echo "Scenario = connections x message bytes x pipeline depth. Median of $REPEATS" \
       "interleaved runs (min–max); ${DURATION} s windows after ${WARMUP} s warm-up."
  echo
  echo "| scenario | server | msgs/s | p99 µs | server CPU µs/msg | server busy % |"
  echo "|---|---|---|---|---|---|"
  local scen server
  for scen in ${SCENARIOS//,/ }; do
    for server in $SERVERS; do
      echo "| $scen | $server | $(fmt_cell %.0f "${RATE[$scen:$server]:-}") |" \
           "$(fmt_cell %.0f "${P99[$scen:$server]:-}") |" \
           "$(fmt_cell %.3f "${CPU[$scen:$server]:-}") |" \
           "$(fmt_cell %.0f "${BUSY[$scen:$server]:-}") |"
    done
  done
  echo
  echo "Server busy % is its CPU time over the window: under ~100% the load generator (one"
  echo "core) was the limit, so compare CPU per message rather than msgs/s."
  echo
  echo "Ratios of medians (CPU per message: lower is better; msgs/s: higher is better)."
  echo
  echo "| scenario | compared | CPU per msg | msgs/s |"
  echo "|---|---|---|---|"
  local a b
  for scen in ${SCENARIOS//,/ }; do
    for pair in ringnet-epoll/bare ringnet-uring/bare-uring ringnet-uring/bare \
                ringnet-uring/ringnet-epoll ringnet-uring/ringnet-uring-nobundle \
                ringnet-uring/ringnet-uring-noregring ringnet-uring-noregring/ringnet-uring-base \
                ringnet-uring/ringnet-uring-nofixed \
                ringnet-uring-inc/ringnet-uring \
                bare-uring-zc/bare-uring \
                ringnet-epoll/ringnet-epoll-base ringnet-uring/ringnet-uring-base \
                ringnet-epoll/asio ringnet-epoll/libuv ringnet-uring/asio ringnet-uring/libuv; do
      a=${pair%/*} b=${pair#*/}
      [[ " $SERVERS " == *" $a "* && " $SERVERS " == *" $b "* ]] || continue
      echo "| $scen | $a / $b | $(ratio "${CPU[$scen:$a]:-}" "${CPU[$scen:$b]:-}") |" \
           "$(ratio "${RATE[$scen:$a]:-}" "${RATE[$scen:$b]:-}") |"
    done
  done
  echo
}

run_throughput() {
  local scen server repeat
  for scen in ${SCENARIOS//,/ }; do
    for repeat in $(seq "$REPEATS"); do
      for server in $SERVERS; do measure_once "$server" "$scen" "$repeat"; done
    done
  done
}

# ---- idle RSS ----------------------------------------------------------------------------

# Bytes of server RSS per idle connection: VmRSS before and after IDLE_CONNS connections
# that, before going quiet, echoed $2 bytes each (0: never sent a byte). Waits until the
# server holds the fds (accepted, not just queued). Sets IDLE_RSS[server:echo]; runs in
# the main shell (not $(...)) so the EXIT trap sees its pids.
idle_rss_once() {
  local server=$1 echo_bytes=$2
  local key="$server:$echo_bytes"
  IDLE_RSS[$key]="n/a"
  start_server "$server" || {
    FAILURES=$((FAILURES + 1)); stop_server
    echo "$server,$IDLE_CONNS,$echo_bytes,,,,server-failed" >>"$IDLE_CSV"
    return
  }
  sleep 0.2
  local before fds0 after
  before=$(vmrss_kib "$SERVER_PID")
  fds0=$(fd_count "$SERVER_PID")
  mkfifo "$WORK/hold"
  taskset -c "$LOADGEN_CPU" "$LOADGEN" --port "$PORT" --conns "$IDLE_CONNS" --idle \
    --idle-echo "$echo_bytes" <"$WORK/hold" >"$WORK/idle.out" 2>"$WORK/idle.err" &
  LOADGEN_PID=$!
  exec 9>"$WORK/hold"  # loadgen holds its connections until this closes
  local ok=0
  for _ in $(seq 300); do
    if grep -q "IDLE READY" "$WORK/idle.out" &&
       (( $(fd_count "$SERVER_PID") >= fds0 + IDLE_CONNS )); then ok=1; break; fi
    kill -0 "$LOADGEN_PID" 2>/dev/null || break
    sleep 0.1
  done
  sleep 0.5  # let the server finish whatever per-connection setup follows accept
  after=$(vmrss_kib "$SERVER_PID")
  exec 9>&-
  wait "$LOADGEN_PID" || ok=0
  LOADGEN_PID=""
  rm -f "$WORK/hold"
  stop_server
  if (( ok )); then
    log "$server idle (echoed $echo_bytes B): VmRSS $before kB -> $after kB for $IDLE_CONNS connections"
    IDLE_RSS[$key]=$(awk -v b="$before" -v a="$after" -v n="$IDLE_CONNS" \
                       'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
    echo "$server,$IDLE_CONNS,$echo_bytes,$before,$after,${IDLE_RSS[$key]},ok" >>"$IDLE_CSV"
  else
    FAILURES=$((FAILURES + 1))
    log "$server idle run failed: $(head -3 "$WORK/idle.err")"
    echo "$server,$IDLE_CONNS,$echo_bytes,$before,$after,,failed" >>"$IDLE_CSV"
  fi
}

idle_report() {
  echo "### Server RSS per idle connection"
  echo
  echo "(VmRSS after − before) / $IDLE_CONNS idle connections: silent ones never sent a"
  echo "byte; echoed ones each echoed $IDLE_ECHO bytes once, then went quiet."
  echo
  echo "| server | bytes per silent connection | bytes per echoed connection |"
  echo "|---|---|---|"
  local server
  for server in $SERVERS; do
    echo "| $server | ${IDLE_RSS[$server:0]} | ${IDLE_RSS[$server:$IDLE_ECHO]} |"
  done
  echo
}

# ---- main --------------------------------------------------------------------------------

header() {
  local commit
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
  git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit+=" (+ local changes)"
  local others=""
  [[ " $SERVERS " == *" bare "* || " $SERVERS " == *" bare-uring "* ]] && others+=", bare loops"
  [[ " $SERVERS " == *" asio "* ]] && others+=", Boost.Asio"
  [[ " $SERVERS " == *" libuv "* ]] && others+=", libuv"
  echo "## ringnet echo (epoll, io_uring) vs ${others#, } — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- commit $commit," \
       "release build, kernel $(uname -r), $(nproc) CPUs:" \
       "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- server on CPU $SERVER_CPU (ringnet: $RINGNET_LOOPS loop(s), --pin, --backend per row;" \
       "bare: ${BARE_FLAGS:-default flags}; asio, libuv: $PEER_THREADS thread(s))," \
       "loadgen ($CLIENT_BACKEND client) on CPU $LOADGEN_CPU, $LOADGEN_THREADS loadgen" \
       "thread(s), TCP over 127.0.0.1"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine" \
       "skews results: look at the spreads)"
  echo
}

main() {
  local scen
  for scen in ${SCENARIOS//,/ }; do
    [[ $scen =~ ^[0-9]+x[0-9]+x[0-9]+$ ]] && continue
    log "bad scenario '$scen' (want CONNSxSIZExDEPTH)"
    exit 2
  done
  build
  if [[ " $SERVERS " == *uring* ]] && ! uring_works; then
    log "io_uring unavailable here: dropping ringnet-uring* and bare-uring"
    local kept="" s
    for s in $SERVERS; do [[ $s == *uring* ]] || kept+="$s "; done
    SERVERS=$kept
  fi
  # The peers are optional build targets (bench/meson.build): skip, do not fail.
  local peer bin
  for peer in asio libuv; do
    [[ " $SERVERS " == *" $peer "* ]] || continue
    bin=$ASIO; [[ $peer == libuv ]] && bin=$LIBUV
    [[ -x $bin ]] && continue
    log "$peer peer not built ($bin missing; bash scripts/deps.sh libboost-dev libuv1-dev," \
        "then rebuild): skipping it"
    SERVERS=$(tr ' ' '\n' <<<"$SERVERS" | grep -vx "$peer" | tr '\n' ' ')
  done
  [[ -n ${SERVERS// /} ]] || { log "no server left to run"; exit 1; }
  local report="$WORK/report.md"
  header >"$report"
  if (( DO_THROUGHPUT )); then
    run_throughput
    throughput_report >>"$report"
  fi
  if (( DO_IDLE )); then
    local server
    for server in $SERVERS; do idle_rss_once "$server" 0; idle_rss_once "$server" "$IDLE_ECHO"; done
    idle_report >>"$report"
  fi
  (( FAILURES == 0 )) || echo "**$FAILURES run(s) failed; see stderr.**" >>"$report"
  if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp "$report" "$OUT_DIR/echo.md"
    (( DO_THROUGHPUT )) && cp "$RUNS_CSV" "$OUT_DIR/echo-runs.csv"
    (( DO_IDLE )) && cp "$IDLE_CSV" "$OUT_DIR/idle-rss.csv"
    cat "$report"
    log "written to $OUT_DIR"
    (( FAILURES == 0 ))
    return
  fi
  local results="$ROOT/bench/results" stamp
  stamp=$(date -u +%Y%m%d-%H%M%S)
  mkdir -p "$results"
  cp "$report" "$results/echo-$stamp.md"
  cp "$report" "$results/latest-echo.md"
  cat "$report"
  log "written to bench/results/echo-$stamp.md and bench/results/latest-echo.md"
  (( FAILURES == 0 ))
}

main
