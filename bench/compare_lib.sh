# SPDX-License-Identifier: MIT
# Shared by bench/echo_compare.sh and bench/rpc_compare.sh (sourced): starting and stopping
# pinned servers on fresh ports, and the medians, cells and ratios of their reports.
# The sourcing script defines log() and sets WORK, SERVER_CPU and NEXT_PORT.

stop_pid() {  # SIGTERM, then SIGKILL after 3 s
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A fresh port per server start: no TIME_WAIT or half-dead listener from the last run.
next_free_port() {
  while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  PORT=$NEXT_PORT
  NEXT_PORT=$((NEXT_PORT + 1))
}

# launch_server NAME CMD...: runs CMD pinned to SERVER_CPU (output in $WORK/server.*),
# sets SERVER_PID, returns once PORT accepts (fails after 5 s or if it exits).
launch_server() {
  local name=$1
  shift
  taskset -c "$SERVER_CPU" "$@" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "$name server exited at start: $(cat "$WORK/server.err")"
      SERVER_PID=""
      return 1
    fi
    port_in_use "$PORT" && return 0
    sleep 0.05
  done
  log "$name server did not accept on port $PORT within 5 s"
  return 1
}

stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=""; }

# "median min max" of a space-separated list of numbers.
median_min_max() {
  local -a v
  read -r -a v <<<"$1"
  [[ ${#v[@]} -gt 0 ]] || { echo "nan nan nan"; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) { print "nan nan nan"; exit }
          m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          print m, v[1], v[NR] }'
}

fmt_cell() {  # fmt_cell FORMAT "LIST": "median (min–max)"; just the median for one value
  local f=$1 m lo hi
  read -r m lo hi <<<"$(median_min_max "$2")"
  [[ $m == nan ]] && { echo "n/a"; return; }
  # shellcheck disable=SC2059  # the format is ours
  if [[ $(wc -w <<<"$2") -gt 1 ]]; then printf "$f ($f–$f)" "$m" "$lo" "$hi"
  else printf "$f" "$m"; fi
}

ratio() {  # median(a)/median(b) for two lists
  local a b
  a=$(median_min_max "$1" | cut -d' ' -f1)
  b=$(median_min_max "$2" | cut -d' ' -f1)
  awk -v a="$a" -v b="$b" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a";
                                   else printf "%.2f", a / b }'
}
