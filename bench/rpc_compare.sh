#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# rpc_compare.sh: ringnet's unary RPC (the binary RPC frame) against gRPC C++, closed loop,
# one core each.
#
# Builds build-release/ (release, bench on, no tests) unless SKIP_BUILD=1, then runs
# REPEATS interleaved rounds; each round runs, for each size, ringnet then gRPC, every run
# on a freshly started server:
#   server     pinned with taskset -c SERVER_CPU (default 0)
#     ringnet      RINGNET_RPC_SERVER + " --port N" (default: bench/rpc_server_bench
#                  --loops 1, an RpcServer with an inline echo),
#     ringnet-raw  RAW_RPC_SERVER + " --port N" (default: samples/rpc_echo --loops 1, the
#                  same frames answered by a FramedHandler, no framework),
#              called on method RINGNET_RPC_METHOD (default 1, echo)
#     grpc     bench/grpc_echo_server --port N --api GRPC_API --threads GRPC_THREADS
#              (default async, 1: one completion queue, one thread; see its file comment)
#   load       bench/rpc_load pinned with taskset -c LOAD_CPU (default 1): CONNS callers
#              (default 50), one call in flight each, SIZE-byte bodies, WARMUP s then a
#              DURATION s window; for gRPC GRPC_CHANNELS channels (default 0 = one per
#              caller, so both servers see CONNS TCP connections with one call each)
# Per run: calls/s, server CPU per call (the server's utime+stime over exactly the load's
# measured window, read by rpc_load at the window's two ends, / calls, in µs), p50/p99
# latency, server and client busy % (CPU time / window). Every answer is checked; a run
# with errors fails.
#
#   bench/rpc_compare.sh                          # 5 rounds x sizes 64 4096, 5 s windows
#   REPEATS=1 DURATION=2 bench/rpc_compare.sh     # a smoke run
#   SKIP_BUILD=1 RINGNET_RPC_SERVER="build-release/samples/rpc_server --loops 1" \
#     RINGNET_RPC_METHOD=1 bench/rpc_compare.sh   # another ringnet server (takes --port N)
#   bench/rpc_compare.sh --out-dir DIR            # rpc.md and rpc-runs.csv in DIR
#
# Writes the summary (medians of the rounds with min–max, ratios ringnet/gRPC of server CPU
# per call and of calls/s) and the per-run CSV to bench/results/rpc-<timestamp>.md / .csv
# and bench/results/latest-rpc.md, or with --out-dir (OUT_DIR) to DIR/rpc.md and
# DIR/rpc-runs.csv. Environment: REPEATS (5), DURATION (5), WARMUP (1), SIZES ("64 4096"),
# CONNS (50), TARGETS ("ringnet ringnet-raw grpc"), RINGNET_RPC_SERVER, RAW_RPC_SERVER, RINGNET_RPC_METHOD (1),
# GRPC_API (async|callback|sync), GRPC_THREADS (1), GRPC_CHANNELS (0), SERVER_CPU (0),
# LOAD_CPU (1), PORT_BASE (19400), BUILD_DIR (build-release), SKIP_BUILD, OUT_DIR.
# gRPC is optional in the build: without libgrpc++-dev / protobuf-compiler-grpc the gRPC
# target is dropped with a message. Everything listens and connects on 127.0.0.1 only.
# Exit status is non-zero if any run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
REPEATS=${REPEATS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-64 4096}
CONNS=${CONNS:-50}
TARGETS=${TARGETS:-ringnet ringnet-raw grpc}
RINGNET_RPC_SERVER=${RINGNET_RPC_SERVER:-$BUILD_DIR/bench/rpc_server_bench --loops 1}
# The same frames without the framework: a FramedHandler that answers in place.
RAW_RPC_SERVER=${RAW_RPC_SERVER:-$BUILD_DIR/samples/rpc_echo --loops 1}
RINGNET_RPC_METHOD=${RINGNET_RPC_METHOD:-1}
GRPC_API=${GRPC_API:-async}
GRPC_THREADS=${GRPC_THREADS:-1}
GRPC_CHANNELS=${GRPC_CHANNELS:-0}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-19400}
OUT_DIR=${OUT_DIR:-}

usage() {  # prints the comment block at the top of this file
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --out-dir) OUT_DIR=$2; shift ;;
    -h|--help) usage 0 ;;
    *) echo "rpc_compare: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done

RPC_LOAD=$BUILD_DIR/bench/rpc_load
GRPC_SERVER=$BUILD_DIR/bench/grpc_echo_server
WORK=$(mktemp -d /tmp/rpc_compare.XXXXXX)
SERVER_PID=""
FAILURES=0
NEXT_PORT=$PORT_BASE

# ---- process hygiene: nothing we started outlives the script ---------------------------

# shellcheck source=compare_lib.sh
source "$ROOT/bench/compare_lib.sh"

cleanup() {
  stop_pid "$SERVER_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "rpc_compare: $*" >&2; }

# ---- build -------------------------------------------------------------------------------

build() {
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    if [[ ! -f $BUILD_DIR/build.ninja ]]; then
      meson setup "$BUILD_DIR" "$ROOT" --buildtype=release -Dtests=disabled -Dbench=enabled >&2
    fi
    ninja -C "$BUILD_DIR" >&2
  fi
  [[ -x $RPC_LOAD ]] || { log "missing $RPC_LOAD (build with -Dbench=enabled)"; exit 1; }
  local ringnet_bin
  read -r ringnet_bin _ <<<"$RINGNET_RPC_SERVER"
  if [[ " $TARGETS " == *" ringnet "* && ! -x $ringnet_bin ]]; then
    log "missing $ringnet_bin (RINGNET_RPC_SERVER)"
    exit 1
  fi
  if [[ " $TARGETS " == *" grpc "* && ! -x $GRPC_SERVER ]]; then
    log "gRPC peer not built ($GRPC_SERVER missing; apt-get install libgrpc++-dev" \
        "protobuf-compiler-grpc libprotobuf-dev protobuf-compiler, then meson setup" \
        "--reconfigure $BUILD_DIR): running ringnet only"
    TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -vx grpc | tr '\n' ' ')
  fi
  [[ -n ${TARGETS// /} ]] || { log "no target left to run"; exit 1; }
}

# ---- servers -----------------------------------------------------------------------------

# start_server ringnet|grpc: sets SERVER_PID and PORT, returns once the port accepts.
start_server() {
  next_free_port
  local -a cmd
  case $1 in
    ringnet) read -r -a cmd <<<"$RINGNET_RPC_SERVER"; cmd+=(--port "$PORT") ;;
    ringnet-raw) read -r -a cmd <<<"$RAW_RPC_SERVER"; cmd+=(--port "$PORT") ;;
    grpc) cmd=("$GRPC_SERVER" --port "$PORT" --api "$GRPC_API" --threads "$GRPC_THREADS") ;;
    *) log "unknown target '$1'"; return 1 ;;
  esac
  launch_server "$1" "${cmd[@]}"
}

# ---- runs --------------------------------------------------------------------------------

# rpc_load's key=value fields, in the order of the CSV (after round,size,target,status).
FIELDS="calls seconds calls_per_s p50_us p99_us p999_us errors server_cpu_s \
server_cpu_us_per_call server_busy_pct client_cpu_s client_cpu_us_per_call client_busy_pct"
RUNS_CSV=$WORK/rpc-runs.csv
echo "round,size,target,status,${FIELDS// /,}" >"$RUNS_CSV"

declare -A RATE CPU P50 P99 SBUSY CBUSY  # keyed "size:target", space-separated values

measure_once() {
  local round=$1 size=$2 target=$3
  local row_head="$round,$size,$target"
  start_server "$target" || {
    FAILURES=$((FAILURES + 1)); stop_server
    echo "$row_head,server-failed" >>"$RUNS_CSV"
    return
  }
  local -a extra=()
  [[ $target == ringnet* ]] && extra=(--method "$RINGNET_RPC_METHOD")
  [[ $target == grpc ]] && extra=(--channels "$GRPC_CHANNELS")
  local line status=ok
  if ! line=$(taskset -c "$LOAD_CPU" "$RPC_LOAD" --target "${target%-raw}" --port "$PORT" \
                --conns "$CONNS" --size "$size" --duration "$DURATION" --warmup "$WARMUP" \
                --server-pid "$SERVER_PID" "${extra[@]}" 2>"$WORK/load.err"); then
    status=load-failed
    FAILURES=$((FAILURES + 1))
    log "round $round size $size $target: rpc_load failed: $(head -3 "$WORK/load.err")"
  fi
  stop_server
  local -A field=()
  local kv
  for kv in $line; do [[ $kv == *=* ]] && field[${kv%%=*}]=${kv#*=}; done
  local row="$row_head,$status" name
  for name in $FIELDS; do row+=",${field[$name]:-}"; done
  echo "$row" >>"$RUNS_CSV"
  [[ $status == ok ]] || return 0
  local key="$size:$target"
  RATE[$key]+="${field[calls_per_s]} "
  CPU[$key]+="${field[server_cpu_us_per_call]} "
  P50[$key]+="${field[p50_us]} "
  P99[$key]+="${field[p99_us]} "
  SBUSY[$key]+="${field[server_busy_pct]} "
  CBUSY[$key]+="${field[client_busy_pct]} "
  log "round $round size $size $target: ${field[calls_per_s]} calls/s," \
      "server ${field[server_cpu_us_per_call]} us/call (busy ${field[server_busy_pct]}%)," \
      "p50 ${field[p50_us]} us, p99 ${field[p99_us]} us, client busy ${field[client_busy_pct]}%"
}

# ---- report ------------------------------------------------------------------------------

report() {
  local commit
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
  git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit+=" (+ local changes)"
  echo "## ringnet RPC vs gRPC C++, unary echo — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- commit $commit, kernel $(uname -r), $(nproc) CPUs:" \
       "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- servers on CPU $SERVER_CPU: ringnet \`${RINGNET_RPC_SERVER#"$ROOT/"}\`" \
       "(method $RINGNET_RPC_METHOD); gRPC \`grpc_echo_server --api $GRPC_API" \
       "--threads $GRPC_THREADS\`"
  local channels="one per caller"
  [[ $GRPC_CHANNELS == 0 ]] || channels="$GRPC_CHANNELS shared by the callers"
  echo "- rpc_load on CPU $LOAD_CPU: $CONNS callers, one call in flight each (closed loop);" \
       "gRPC channels: $channels; TCP over 127.0.0.1"
  echo "- median of $REPEATS interleaved rounds (min–max); ${DURATION} s windows after" \
       "${WARMUP} s warm-up; a fresh server per run"
  echo "- load average at start: $LOADAVG_START (other work on the machine skews results)"
  echo
  echo "| size B | server | calls/s | server CPU µs/call | p50 µs | p99 µs | server busy % | client busy % |"
  echo "|---|---|---|---|---|---|---|---|"
  local size target key
  for size in $SIZES; do
    for target in $TARGETS; do
      key="$size:$target"
      echo "| $size | $target | $(fmt_cell %.0f "${RATE[$key]:-}") |" \
           "$(fmt_cell %.2f "${CPU[$key]:-}") | $(fmt_cell %.0f "${P50[$key]:-}") |" \
           "$(fmt_cell %.0f "${P99[$key]:-}") | $(fmt_cell %.0f "${SBUSY[$key]:-}") |" \
           "$(fmt_cell %.0f "${CBUSY[$key]:-}") |"
    done
  done
  echo
  if [[ " $TARGETS " == *" ringnet "* && " $TARGETS " == *" grpc "* ]]; then
    echo "Ratios of medians, ringnet / gRPC (server CPU per call: below 1 = ringnet spends"
    echo "less; calls/s: above 1 = ringnet served more)."
    echo
    echo "| size B | server CPU per call | calls/s |"
    echo "|---|---|---|"
    for size in $SIZES; do
      echo "| $size | $(ratio "${CPU[$size:ringnet]:-}" "${CPU[$size:grpc]:-}") |" \
           "$(ratio "${RATE[$size:ringnet]:-}" "${RATE[$size:grpc]:-}") |"
    done
    echo
  fi
  if [[ " $TARGETS " == *" ringnet "* && " $TARGETS " == *" ringnet-raw "* ]]; then
    echo "The framework's own cost, RpcServer / rpc_echo (the same frames answered by a"
    echo "FramedHandler in place): server CPU per call and calls/s."
    echo
    echo "| size B | server CPU per call | calls/s |"
    echo "|---|---|---|"
    for size in $SIZES; do
      echo "| $size | $(ratio "${CPU[$size:ringnet]:-}" "${CPU[$size:ringnet-raw]:-}") |" \
           "$(ratio "${RATE[$size:ringnet]:-}" "${RATE[$size:ringnet-raw]:-}") |"
    done
    echo
  fi
  echo "Busy % = CPU time over the window. A server under ~100% busy was not the limit:"
  echo "a client near 100% (one core) capped calls/s, so compare server CPU per call then."
  (( FAILURES == 0 )) || { echo; echo "**$FAILURES run(s) failed; see stderr.**"; }
}

# ---- main --------------------------------------------------------------------------------

main() {
  local size
  for size in $SIZES; do
    [[ $size =~ ^[0-9]+$ && $size -gt 0 ]] || { log "bad size '$size'"; exit 2; }
  done
  build
  LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
  local round target
  for round in $(seq "$REPEATS"); do
    for size in $SIZES; do
      for target in $TARGETS; do measure_once "$round" "$size" "$target"; done
    done
  done
  local md=$WORK/rpc.md
  report >"$md"
  if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp "$md" "$OUT_DIR/rpc.md"
    cp "$RUNS_CSV" "$OUT_DIR/rpc-runs.csv"
    cat "$md"
    log "written to $OUT_DIR/rpc.md and $OUT_DIR/rpc-runs.csv"
  else
    local results="$ROOT/bench/results" stamp
    stamp=$(date -u +%Y%m%d-%H%M%S)
    mkdir -p "$results"
    cp "$md" "$results/rpc-$stamp.md"
    cp "$RUNS_CSV" "$results/rpc-$stamp.csv"
    cp "$md" "$results/latest-rpc.md"
    cat "$md"
    log "written to bench/results/rpc-$stamp.md (.csv) and bench/results/latest-rpc.md"
  fi
  (( FAILURES == 0 ))
}

main
