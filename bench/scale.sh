#!/usr/bin/env bash
# How gpt-load holds up at scale on this machine, in four sections (each its own gpt-load,
# release build, fresh SQLite file, in front of bench/mock-upstream on 127.0.0.1):
#
#   bench/scale.sh [--keys N] [--streams N] [--seconds N] [--only "keys streams logs cores"] [--no-build]
#
#   keys     one group with --keys keys (default 1,000,000) imported through
#            POST /api/keys/add-async (a .txt upload, the task polled until done) next to a
#            group with 10 keys: RSS before and after the import, then wrk at 64 connections
#            against each group, alternated over two rounds: requests/s and CPU µs/request
#            (target: the big group within 5% of the small one); then a restart on the same
#            database and the RSS with the keys loaded from it (target: at most 150 MB added
#            per million keys).
#   streams  --streams (default 10,000) concurrent `stream: true` chat requests that the mock
#            holds open after the first event (bench/hold_streams.py): how many opened (target:
#            all), gpt-load's RSS and open files idle, holding and after the client closed them,
#            and whether gpt-load still answers afterwards. Raises `ulimit -n` to fit.
#   logs     wrk at 64 connections for --seconds (default 20) with request logging on
#            (request_log_write_interval_minutes = 1, the default), then SIGTERM (gpt-load
#            flushes its log queue on the way out) and the rows of request_logs counted in its
#            SQLite file against every response wrk and the script counted (target: 0 lost).
#   cores    ENGINE_THREADS=1 and 2, and nginx with 1 and 2 workers for reference, each with the
#            whole machine: requests/s and CPU µs/request at 64 connections.
#
# Pinning: keys, streams and logs run gpt-load with ENGINE_THREADS=1 on core 0 and the mock,
# wrk and the stream client on core 1, as bench/compare.sh does. cores pins nothing: the proxy,
# the mock and wrk share both cores, so a proxy using both competes with its own load.
# CPU µs/request = the proxy's utime+stime (/proc/PID/stat, whole process) over a run divided
# by the responses wrk counted. wrk runs: 1 thread, 64 connections, a 2 s warm-up first.
#
# Prints markdown and saves it as bench/results/scale-<UTC date-time>.md. Installs wrk, curl,
# jq, python3 and (for cores) nginx with apt where they are missing; needs taskset; streams
# needs root to raise the open-file limit past its hard limit. Try it small first:
#
#   bench/scale.sh --keys 10000 --streams 500 --seconds 5
#
# --no-build uses the binaries already in the target directory instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="bench/scale.sh${*:+ $(printf '%q ' "$@")}"
KEYS=1000000
STREAMS=10000
RUN_SECONDS=20
ONLY=""
BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --keys) KEYS=$2; shift 2 ;;
    --streams) STREAMS=$2; shift 2 ;;
    --seconds) RUN_SECONDS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
SECTIONS=${ONLY:-keys streams logs cores}
for section in $SECTIONS; do
  case $section in keys|streams|logs|cores) ;; *) echo "--only: unknown section '$section' (keys streams logs cores)" >&2; exit 2 ;; esac
done
for number in "$KEYS" "$STREAMS" "$RUN_SECONDS"; do
  [[ $number =~ ^[1-9][0-9]*$ ]] || { echo "--keys, --streams and --seconds take a positive whole number, not '$number'" >&2; exit 2; }
done
has() { [[ " $SECTIONS " == *" $1 "* ]]; }

. bench/lib.sh # apt_install, tree_pids, cpu_ticks, mem_kib, wait_http, install_nginx, write_nginx_conf
for tool in wrk curl jq python3; do
  apt_install $tool $tool || exit 1
done
NCPU=$(nproc)
[ "$NCPU" -ge 2 ] || { echo "needs 2 cores: the proxy on core 0, mock and load on core 1" >&2; exit 1; }
ALL_CPUS=0-$((NCPU - 1))

# Every held stream is a socket in the client and in the mock, and two in gpt-load (client and
# upstream side), which also keeps ~30 files of its own. Checked before anything runs: a limit
# that does not fit would only show as failed streams at the end.
if has streams; then
  NOFILE=$((2 * STREAMS + 100))
  SOFT=$(ulimit -Sn); HARD=$(ulimit -Hn)
  if [ "$SOFT" != unlimited ] && [ "$SOFT" -lt $NOFILE ]; then
    if [ "$HARD" != unlimited ] && [ "$HARD" -lt $NOFILE ] && ! ulimit -Hn $NOFILE 2>/dev/null; then
      echo "--streams $STREAMS needs 'ulimit -n' of at least $NOFILE (gpt-load holds two sockets a stream);" \
        "the hard limit here is $HARD and raising it needs CAP_SYS_RESOURCE, which this shell lacks." \
        "Lower --streams to $(( (HARD - 100) / 2 )), or run from a shell with a higher hard limit" \
        "(docker: --ulimit nofile=65536)." >&2
      exit 1
    fi
    ulimit -Sn $NOFILE
  fi
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gpt-load-rs/target}
[ "$BUILD" = 1 ] && cargo build --release --locked -p control -p mock-upstream >&2
BIN=$CARGO_TARGET_DIR/release
for bin in gpt-load mock-upstream; do
  [ -x "$BIN/$bin" ] || { echo "no $BIN/$bin: build it (cargo build --release -p control -p mock-upstream)" >&2; exit 1; }
done

WORK=$(mktemp -d)
STARTED=() # every background process, for the exit trap
log() { echo "== $*" >&2; }
die() { echo "scale.sh: $*" >&2; exit 1; }

# A process that exists and is not a zombie (an exited child we have not reaped yet).
alive() { local state; state=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -d' ' -f1); [ -n "$state" ] && [ "$state" != Z ]; }

# Sends `signal`, polls until the process is gone (SIGKILL after `seconds`) and reaps it:
# STOP_STATUS is its exit status, STOP_S how long it took, STOP_KILLED 1 if it needed SIGKILL.
stop_process() { # pid signal seconds
  local pid=$1 start i pids; start=$(date +%s.%N); STOP_KILLED=0
  pids=$(tree_pids "$pid")
  kill -"$2" "$pid" 2>/dev/null || true
  for ((i = 0; i < $3 * 20; i++)); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then STOP_KILLED=1; kill -9 $pids 2>/dev/null || true; fi
  STOP_STATUS=0; wait "$pid" 2>/dev/null || STOP_STATUS=$?
  STOP_S=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
}

cleanup() {
  local pid pids=""
  for pid in "${STARTED[@]}"; do alive "$pid" && pids+=" $(tree_pids "$pid")"; done
  if [ -n "$pids" ]; then
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 60); do
      local left=0; for pid in $pids; do alive "$pid" && left=1; done
      [ $left = 0 ] && break; sleep 0.05
    done
    for pid in $pids; do alive "$pid" && kill -9 "$pid" 2>/dev/null; done
  fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports 194xx: clear of compare.sh (192xx), import.sh (191xx) and quick.sh (190xx).
GW_PORT_KEYS=19401; GW_PORT_STREAMS=19402; GW_PORT_LOGS=19403; GW_PORT_CORES=19404 # and 19405
MOCK_PORT_KEYS=19410; MOCK_PORT_STREAMS=19411; MOCK_PORT_LOGS=19412; MOCK_PORT_CORES=19413
NGINX_PORT=19420 # and 19421
AUTH=sk-bench-admin-Kq2vB7nX4pLw9Tz
CLIENT_KEY=sk-bench-client
UPSTREAM_KEYS=(sk-upstream-aaaaaaaa1 sk-upstream-bbbbbbbb2)
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
CLK_TCK=$(getconf CLK_TCK)
WARMUP_SECONDS=2
CONNS=64

# ---------------------------------------------------------------- processes

start_mock() { # port cpus → MOCK_PID, MOCK_OUT
  MOCK_OUT=$WORK/mock-$1.out
  taskset -c "$2" "$BIN/mock-upstream" --port "$1" > "$MOCK_OUT" 2>&1 &
  MOCK_PID=$!; STARTED+=("$MOCK_PID")
  for _ in $(seq 1 100); do grep -q listening "$MOCK_OUT" && return 0; sleep 0.1; done
  die "mock-upstream did not start on port $1: $(cat "$MOCK_OUT")"
}
# SIGINT makes the mock print how many requests it served: MOCK_SERVED.
stop_mock() {
  stop_process "$MOCK_PID" INT 10
  MOCK_SERVED=$(awk '/served [0-9]+ requests/ {print $(NF-1)}' "$MOCK_OUT")
}

# gpt-load in its own working directory (so its database is $GW_DIR/data/gpt-load.db), with the
# concurrency limit out of the way: 64 connections or 10,000 held streams must not meet a 429.
start_gpt_load() { # name port engine-threads cpus → GW_PID GW_DIR GW_API
  GW_DIR=$WORK/$1; GW_API=http://127.0.0.1:$2
  mkdir -p "$GW_DIR"
  (cd "$GW_DIR" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$2 ENGINE_THREADS=$3 MAX_CONCURRENT_REQUESTS=1000000 \
    LOG_LEVEL=info exec taskset -c "$4" "$BIN/gpt-load" 2> "$GW_DIR/err.log") &
  GW_PID=$!; STARTED+=("$GW_PID")
  wait_http "$GW_API/health" gpt-load "$GW_DIR/err.log" || die "gpt-load ($1) did not start"
  : "${GW_DRIVER:=$(grep -o 'shards* ([a-z_, ]*)' "$GW_DIR/err.log" | head -1 | sed 's/.*(\(.*\))/\1/')}"
}

# nginx as a foreground process with its own prefix, the config bench/compare.sh uses.
start_nginx() { # workers port cpus → NGINX_PID
  local dir=$WORK/nginx-$1
  write_nginx_conf "$dir" "$2" "$MOCK_PORT_CORES" "$1" "${UPSTREAM_KEYS[0]}" "${UPSTREAM_KEYS[1]}"
  taskset -c "$3" nginx -p "$dir" -c "$dir/nginx.conf" > "$dir/stdout.log" 2>&1 &
  NGINX_PID=$!; STARTED+=("$NGINX_PID")
  wait_http "http://127.0.0.1:$2/" nginx "$dir/error.log" || die "nginx did not start"
}

open_files() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }

# ---------------------------------------------------------------- admin API and requests

api() { # method path [curl args...] → the answer's body; dies with it unless 2xx
  local method=$1 path=$2 out status; shift 2
  out=$(curl -s -w '\n%{http_code}' -X "$method" "$GW_API$path" -H "Authorization: Bearer $AUTH" "$@") \
    || die "$method $path: gpt-load did not answer; its log: $(tail -5 "$GW_DIR/err.log")"
  status=${out##*$'\n'}; out=${out%$'\n'*}
  [[ $status == 2* ]] || die "$method $path: HTTP $status: $out"
  printf '%s' "$out"
}

create_group() { # name mock-port → the group's id
  api POST /api/groups -H 'Content-Type: application/json' -d '{"name":"'"$1"'","channel_type":"openai",
    "test_model":"gpt-4o-mini","upstreams":[{"url":"http://127.0.0.1:'"$2"'","weight":1}],
    "proxy_keys":"'"$CLIENT_KEY"'"}' | jq -er .data.id
}

add_keys() { # group-id key...
  local id=$1; shift
  api POST /api/keys/add-multiple -H 'Content-Type: application/json' \
    -d "$(jq -n --argjson g "$id" --arg t "$(printf '%s\n' "$@")" '{group_id: $g, keys_text: $t}')" >/dev/null
}

key_count() { # group-id → keys stored for it
  api GET "/api/keys?group_id=$1&page=1&page_size=1" | jq -er .data.pagination.total_items
}

# One chat request: 0 if it answered 200, else PROBE_ANSWER says what it answered. PROXIED
# counts them for the logs section.
PROXIED=0
probe() { # url
  local status
  status=$(curl -s -o "$WORK/probe.out" -w '%{http_code}' "$1" -H "Authorization: Bearer $CLIENT_KEY" \
    -H 'Content-Type: application/json' -d "$BODY") || status=000
  PROXIED=$((PROXIED + 1))
  PROBE_ANSWER="$status $(head -c 300 "$WORK/probe.out")"
  [ "$status" = 200 ]
}
must_probe() { probe "$1" || die "probe $1 answered $PROBE_ANSWER"; }

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $CLIENT_KEY"
LUA

# wrk with 1 thread and CONNS connections: W_RPS, W_REQS (responses counted), W_NON2XX,
# W_SOCKET (connect/read/write/timeout errors).
run_wrk() { # cpus seconds url
  local out
  out=$(taskset -c "$1" wrk -t1 -c$CONNS -d"$2s" -s "$WORK/post.lua" "$3" 2>&1) || true
  echo "$out" >> "$WORK/wrk.log"
  W_RPS=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  W_REQS=$(awk '/requests in/ {print $1}' <<<"$out")
  W_NON2XX=$(awk '/Non-2xx/ {n += $NF} END {print n + 0}' <<<"$out")
  W_SOCKET=$(awk '/Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
  : "${W_RPS:=0}" "${W_REQS:=0}"
  [ "$W_REQS" -gt 0 ] || die "wrk counted no responses from $3: $out"
}

# A warm-up, then a measured run with the proxy's CPU time: the W_* of the measured run plus
# CPU_US (µs per request), BUSY (% of one core) and WARM_REQS (responses of the warm-up).
measured_load() { # proxy-pid wrk-cpus url
  local t0 t1
  run_wrk "$2" $WARMUP_SECONDS "$3"; WARM_REQS=$W_REQS
  t0=$(cpu_ticks "$1")
  run_wrk "$2" "$RUN_SECONDS" "$3"
  t1=$(cpu_ticks "$1")
  CPU_US=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$W_REQS" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
  BUSY=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$RUN_SECONDS" 'BEGIN {printf "%d", d / hz / s * 100}')
}

pass() { # condition-result (0 = met) → a mark for the report
  [ "$1" = 0 ] && echo "✅ met" || echo "❌ missed"
}

REPORT=$WORK/report.md
: > "$REPORT"
say() { echo "$*" >> "$REPORT"; }

# ---------------------------------------------------------------- keys

section_keys() {
  log "keys: $KEYS keys in one group, against a 10-key group"
  start_mock $MOCK_PORT_KEYS 1
  start_gpt_load keys $GW_PORT_KEYS 1 0
  local small big i small_keys=() rss_before rss_after rss_loaded rss_restart hwm status import_s added per_key
  small=$(create_group small $MOCK_PORT_KEYS)
  for i in $(seq 1 10); do small_keys+=("$(printf 'sk-small-%040d' "$i")"); done
  add_keys "$small" "${small_keys[@]}"
  big=$(create_group big $MOCK_PORT_KEYS)
  must_probe "$GW_API/proxy/small/v1/chat/completions"
  rss_before=$(mem_kib "$GW_PID" VmRSS)

  # ~51 bytes a line, as real provider keys are (bench/import.sh's keys).
  awk -v n="$KEYS" 'BEGIN { for (i = 0; i < n; i++) printf "sk-bench-%041d\n", i }' > "$WORK/keys.txt"
  { echo 5 > "/proc/$GW_PID/clear_refs"; } 2>/dev/null || true # VmHWM from here: the import's peak
  local start; start=$(date +%s.%N)
  api POST /api/keys/add-async -F "group_id=$big" -F "file=@$WORK/keys.txt;type=text/plain" >/dev/null
  while :; do
    status=$(api GET /api/tasks/status)
    jq -e '.data.is_running == true' <<<"$status" >/dev/null || break
    sleep 0.2
  done
  import_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  jq -e '.data.error == null' <<<"$status" >/dev/null || die "the import failed: $status"
  added=$(key_count "$big")
  [ "$added" = "$KEYS" ] || die "the big group holds $added keys after importing $KEYS: $status"
  rss_after=$(mem_kib "$GW_PID" VmRSS)
  hwm=$(mem_kib "$GW_PID" VmHWM)
  rm -f "$WORK/keys.txt"
  must_probe "$GW_API/proxy/big/v1/chat/completions"

  declare -A rps cpu
  local round group rows=""
  for round in 1 2; do
    for group in small big; do
      log "keys: round $round, group $group"
      measured_load "$GW_PID" 1 "$GW_API/proxy/$group/v1/chat/completions"
      rps[$group.$round]=$W_RPS; cpu[$group.$round]=$CPU_US
      rows+="| $group ($([ $group = small ] && echo 10 || thousands "$KEYS") keys) | $round | $(thousands "$W_RPS") | $CPU_US | ${BUSY}% | $W_NON2XX / $W_SOCKET |"$'\n'
    done
  done
  rss_loaded=$(mem_kib "$GW_PID" VmRSS)
  stop_process "$GW_PID" TERM 30
  # What the keys cost once loaded, without the import's transient memory: the same database
  # at a fresh start (the keys read from it), one request through the big group, then idle.
  start_gpt_load keys $GW_PORT_KEYS 1 0
  must_probe "$GW_API/proxy/big/v1/chat/completions"
  rss_restart=$(mem_kib "$GW_PID" VmRSS)
  stop_process "$GW_PID" TERM 30
  stop_mock

  local mean_small mean_big cpu_small cpu_big ratio cpu_ratio ratio_ok mem_ok per_key_restart
  mean_small=$(( (${rps[small.1]} + ${rps[small.2]}) / 2 )); mean_big=$(( (${rps[big.1]} + ${rps[big.2]}) / 2 ))
  cpu_small=$(awk -v a="${cpu[small.1]}" -v b="${cpu[small.2]}" 'BEGIN {printf "%.1f", (a + b) / 2}')
  cpu_big=$(awk -v a="${cpu[big.1]}" -v b="${cpu[big.2]}" 'BEGIN {printf "%.1f", (a + b) / 2}')
  ratio=$(awk -v a=$mean_big -v b=$mean_small 'BEGIN {printf "%.3f", a / b}')
  cpu_ratio=$(awk -v a="$cpu_big" -v b="$cpu_small" 'BEGIN {printf "%.3f", a / b}')
  ratio_ok=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.95) ? 0 : 1}')
  # 150 MB per million keys = 150 bytes a key: judged on the keys as loaded at start, against
  # the RSS before the import (the same process with the small group, one request served).
  per_key=$(awk -v k=$((rss_after - rss_before)) -v n="$KEYS" 'BEGIN {printf "%.0f", k * 1024 / n}')
  per_key_restart=$(awk -v k=$((rss_restart - rss_before)) -v n="$KEYS" 'BEGIN {printf "%.0f", k * 1024 / n}')
  mem_ok=$(awk -v b="$per_key_restart" 'BEGIN {print (b <= 150) ? 0 : 1}')

  say "## $(thousands "$KEYS") keys in one group"
  say
  say "gpt-load (ENGINE_THREADS=1) on core 0; the mock and wrk on core 1. Two groups on the same mock: \`small\` (10 keys, \`add-multiple\`) and \`big\` ($(thousands "$KEYS") keys, one \`.txt\` upload to \`POST /api/keys/add-async\`, the task polled until done)."
  say
  say "| memory | value | target |"
  say "|---|---|---|"
  say "| import, upload to task done | ${import_s} s, $(thousands "$added") keys stored | |"
  say "| RSS before the import | $(mib "$rss_before") MiB | |"
  say "| RSS after the import | $(mib "$rss_after") MiB | |"
  say "| RSS added by the import (right after it) | $(mib $((rss_after - rss_before))) MiB, $per_key bytes/key | |"
  say "| RSS after a restart with the keys in the database | $(mib "$rss_restart") MiB | |"
  say "| RSS added by the keys (after the restart, over before the import) | $(mib $((rss_restart - rss_before))) MiB, $per_key_restart bytes/key | ≤ 150 MB per million keys (150 bytes/key): $(pass "$mem_ok") |"
  [ "$KEYS" -lt 1000000 ] && say "| | at $(thousands "$KEYS") keys, fixed costs of an import (the upload, SQLite's cache, allocator arenas) weigh on bytes/key; the target is for a million | |"
  say "| peak RSS during the import (VmHWM) | $(mib "$hwm") MiB | |"
  say "| RSS after the load runs below | $(mib "$rss_loaded") MiB | |"
  say
  say "wrk, 1 thread, $CONNS connections, ${RUN_SECONDS} s per run after a ${WARMUP_SECONDS} s warm-up; the groups alternated over two rounds."
  say
  say "| group | round | req/s @$CONNS | CPU µs/req | gpt-load CPU busy | non-2xx / socket errors |"
  say "|---|---|---|---|---|---|"
  printf '%s' "$rows" >> "$REPORT"
  say
  say "| mean of both rounds | req/s @$CONNS | CPU µs/req |"
  say "|---|---|---|"
  say "| small (10 keys) | $(thousands $mean_small) | $cpu_small |"
  say "| big ($(thousands "$KEYS") keys) | $(thousands $mean_big) | $cpu_big |"
  say "| big / small | **$ratio** | $cpu_ratio |"
  say
  say "Target: the big group's requests/s within 5% of the small group's (ratio ≥ 0.95): $(pass "$ratio_ok")."
  say
}

# ---------------------------------------------------------------- streams

# Polls bench/hold_streams.py's output until it has printed line `n`: HOLD_LINE.
hold_line() { # n pid
  local running
  while :; do
    alive "$2" && running=1 || running=0 # before reading: a line printed just before exiting counts
    [ "$(wc -l < "$WORK/hold.out")" -ge "$1" ] && break
    [ $running = 1 ] || die "bench/hold_streams.py stopped early: $(tail -5 "$WORK/hold.err")"
    sleep 0.1
  done
  HOLD_LINE=$(sed -n "${1}p" "$WORK/hold.out")
}

section_streams() {
  log "streams: $STREAMS concurrent idle SSE streams (open files limit $(ulimit -n))"
  start_mock $MOCK_PORT_STREAMS 1
  start_gpt_load streams $GW_PORT_STREAMS 1 0
  local group rss_idle fds_idle rss_held hwm_held fds_held mock_fds rss_closed fds_closed
  local released_s="" stream_status non_stream="✅ 200" stream="❌"
  group=$(create_group held $MOCK_PORT_STREAMS)
  add_keys "$group" "${UPSTREAM_KEYS[@]}"
  must_probe "$GW_API/proxy/held/v1/chat/completions"
  rss_idle=$(mem_kib "$GW_PID" VmRSS); fds_idle=$(open_files "$GW_PID")

  # The client prints a line once every stream is open (or failed), holds them until its stdin
  # (a FIFO we hold open) sees a line, then closes them and prints a second line.
  mkfifo "$WORK/hold.in"; : > "$WORK/hold.out"
  taskset -c 1 python3 bench/hold_streams.py "$GW_API/proxy/held/v1/chat/completions" \
    --streams "$STREAMS" --key "$CLIENT_KEY" < "$WORK/hold.in" > "$WORK/hold.out" 2> "$WORK/hold.err" &
  local hold_pid=$! hold_in
  STARTED+=("$hold_pid")
  exec {hold_in}> "$WORK/hold.in"
  hold_line 1 "$hold_pid"
  local opened failed open_s first_event_p50_ms first_event_p99_ms errors dropped closed field
  for field in $HOLD_LINE; do printf -v "${field%%=*}" '%s' "${field#*=}"; done
  log "streams: $HOLD_LINE"
  rss_held=$(mem_kib "$GW_PID" VmRSS); hwm_held=$(mem_kib "$GW_PID" VmHWM)
  fds_held=$(open_files "$GW_PID"); mock_fds=$(open_files "$MOCK_PID")

  echo close >&$hold_in
  exec {hold_in}>&-
  hold_line 2 "$hold_pid"
  for field in $HOLD_LINE; do printf -v "${field%%=*}" '%s' "${field#*=}"; done
  stop_process "$hold_pid" TERM 10

  # The client is gone: gpt-load should let go of both sides of every stream. Polled for up to
  # 10 s; "released" means back within 100 open files of idle (pooled upstream connections).
  local start i; start=$(date +%s.%N)
  for ((i = 0; i < 100; i++)); do
    fds_closed=$(open_files "$GW_PID")
    if [ "$fds_closed" -le $((fds_idle + 100)) ]; then
      released_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'); break
    fi
    sleep 0.1
  done
  rss_closed=$(mem_kib "$GW_PID" VmRSS)

  # Still answering: a whole reply and a short stream to its end.
  probe "$GW_API/proxy/held/v1/chat/completions" || non_stream="❌ $PROBE_ANSWER"
  stream_status=$(curl -s -o "$WORK/stream.out" -w '%{http_code}' "$GW_API/proxy/held/v1/chat/completions" \
    -H "Authorization: Bearer $CLIENT_KEY" -H 'Content-Type: application/json' -H 'x-mock-chunks: 3' \
    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}') || stream_status=000
  grep -q 'data: \[DONE\]' "$WORK/stream.out" && [ "$stream_status" = 200 ] && stream="✅ 200, to [DONE]" \
    || stream="❌ $stream_status: $(head -c 200 "$WORK/stream.out")"
  stop_process "$GW_PID" TERM 30
  stop_mock

  local per_stream all_ok=1
  per_stream=$(awk -v k=$((rss_held - rss_idle)) -v n="$opened" 'BEGIN {if (n > 0) printf "%.1f", k / n; else print "—"}')
  [ "$opened" = "$STREAMS" ] && [ "$failed" = 0 ] && [ "$dropped" = 0 ] && all_ok=0

  say "## $(thousands "$STREAMS") concurrent idle SSE streams"
  say
  say "gpt-load (ENGINE_THREADS=1) on core 0; the mock and the client (\`bench/hold_streams.py\`) on core 1. Each stream is a \`stream: true\` chat request; the mock sends the head and the first event, then nothing (\`x-mock-chunk-delay-ms: 3600000\`). The client opens them 200 at a time, reads each one's head and first event, and holds them all idle; open files limit $(ulimit -n)."
  say
  say "| | value |"
  say "|---|---|"
  say "| streams opened / failed (target: all / 0) | $(thousands "$opened") / $failed of $(thousands "$STREAMS") ($errors): $(pass $all_ok) |"
  say "| time to open them all | $open_s s (first event p50 / p99 $first_event_p50_ms / $first_event_p99_ms ms) |"
  say "| streams ended by gpt-load while held | $dropped |"
  say "| gpt-load RSS idle / holding them / after they closed | $(mib "$rss_idle") / $(mib "$rss_held") / $(mib "$rss_closed") MiB (peak $(mib "$hwm_held") MiB) |"
  say "| RSS per held stream | $per_stream KiB |"
  say "| gpt-load open files idle / holding / after they closed | $fds_idle / $fds_held / $fds_closed (mock: $mock_fds while holding) |"
  if [ -n "$released_s" ]; then
    say "| connections released after the client closed | yes, within $released_s s |"
  else
    say "| connections released after the client closed | ❌ not within 10 s: $fds_closed files still open (released by the next upstream chunk or \`stream_idle_timeout\`) |"
  fi
  say "| afterwards: a whole reply / a short stream | $non_stream / $stream |"
  say
}

# ---------------------------------------------------------------- logs

section_logs() {
  log "logs: every proxied request logged, ${RUN_SECONDS} s at $CONNS connections"
  start_mock $MOCK_PORT_LOGS 1
  start_gpt_load logs $GW_PORT_LOGS 1 0
  PROXIED=0
  local group interval url warm main rps socket non2xx counted
  group=$(create_group logged $MOCK_PORT_LOGS)
  add_keys "$group" "${UPSTREAM_KEYS[@]}"
  interval=$(api GET /api/settings | jq -r '[.data[].settings[] | select(.key == "request_log_write_interval_minutes")][0].value')
  if [ "$interval" != 1 ]; then
    api PUT /api/settings -H 'Content-Type: application/json' -d '{"request_log_write_interval_minutes": 1}' >/dev/null
    interval="1 (set; it was $interval)"
  fi
  url=$GW_API/proxy/logged/v1/chat/completions
  must_probe "$url"
  measured_load "$GW_PID" 1 "$url"
  warm=$WARM_REQS; main=$W_REQS; rps=$W_RPS; socket=$W_SOCKET; non2xx=$W_NON2XX
  counted=$((PROXIED + warm + main))

  stop_process "$GW_PID" TERM 120
  local exit_status=$STOP_STATUS shutdown_s=$STOP_S killed=$STOP_KILLED
  stop_mock
  local upstream=${MOCK_SERVED:-?} dropped_line
  dropped_line=$(grep -i 'dropped' "$GW_DIR/err.log" | tail -1 || true)
  local rows by_status by_type key_requests
  read -r rows by_status by_type key_requests < <(python3 - "$GW_DIR/data/gpt-load.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
one = lambda sql: db.execute(sql).fetchone()[0]
rows = one("SELECT COUNT(*) FROM request_logs")
by_status = ",".join(f"{s}:{n}" for s, n in db.execute(
    "SELECT status_code, COUNT(*) FROM request_logs GROUP BY status_code ORDER BY 2 DESC"))
by_type = ",".join(f"{t}:{n}" for t, n in db.execute(
    "SELECT request_type, COUNT(*) FROM request_logs GROUP BY request_type ORDER BY 2 DESC"))
print(rows, by_status or "-", by_type or "-", one("SELECT COALESCE(SUM(request_count), 0) FROM api_keys"))
PY
  )
  [[ $rows =~ ^[0-9]+$ ]] || die "could not count request_logs in $GW_DIR/data/gpt-load.db"
  local lost=$((counted > rows ? counted - rows : 0)) extra=$((rows > counted ? rows - counted : 0))
  local bound=$((2 * CONNS)) ok=1
  [ $lost = 0 ] && [ $extra -le $bound ] && ok=0

  say "## Request logs at full load"
  say
  say "gpt-load (ENGINE_THREADS=1) on core 0, request logging on (\`request_log_write_interval_minutes\` = $interval); the mock and wrk on core 1. After the load, SIGTERM: gpt-load finishes requests in flight and flushes its log queue before it exits; then \`request_logs\` is counted in its SQLite file."
  say
  say "| | count |"
  say "|---|---|"
  say "| probe requests (curl) | $PROXIED |"
  say "| wrk warm-up, ${WARMUP_SECONDS} s @$CONNS, responses counted | $(thousands "$warm") |"
  say "| wrk run, ${RUN_SECONDS} s @$CONNS, responses counted | $(thousands "$main") ($(thousands "$rps") req/s; $non2xx non-2xx, $socket socket errors) |"
  say "| **sent and answered, in all** | **$(thousands $counted)** |"
  say "| rows in \`request_logs\` after the shutdown | $(thousands "$rows") (status $by_status; type $by_type) |"
  say "| requests the mock received | $(thousands "$upstream") |"
  say "| sum of \`api_keys.request_count\` | $(thousands "$key_requests") |"
  say "| **lost** (answered but not logged) | **$lost** |"
  say "| logged beyond the responses counted | $extra (requests in flight when a wrk run stopped: at most $CONNS per run, $bound here) |"
  say "| gpt-load shutdown | exit status $exit_status after $shutdown_s s$([ "$killed" = 1 ] && echo ", ❌ needed SIGKILL")${dropped_line:+; log: \`$dropped_line\`} |"
  say
  say "Target: 0 lost, and no more rows than responses plus what was in flight: $(pass $ok). wrk counts only completed responses; a request in flight when wrk closed its connections may still be answered upstream and logged (as 200, or 499 when gpt-load saw the client go)."
  say
}

# ---------------------------------------------------------------- cores

section_cores() {
  log "cores: ENGINE_THREADS=1 and 2, nginx 1 and 2 workers, unpinned"
  install_nginx || die "cores needs nginx"
  start_mock $MOCK_PORT_CORES "$ALL_CPUS"
  local rows="" name pid url rss busy threads workers group
  declare -A rps
  for name in direct nginx-1 nginx-2 gpt-load-1 gpt-load-2; do
    log "cores: $name"
    case $name in
      direct) pid=""; url=http://127.0.0.1:$MOCK_PORT_CORES/v1/chat/completions ;;
      nginx-*)
        # A port per run: the last one's connections may still sit in TIME_WAIT on its port.
        workers=${name#nginx-}
        start_nginx "$workers" $((NGINX_PORT + workers - 1)) "$ALL_CPUS"; pid=$NGINX_PID
        url=http://127.0.0.1:$((NGINX_PORT + workers - 1))/v1/chat/completions ;;
      gpt-load-*)
        threads=${name#gpt-load-}
        start_gpt_load "$name" $((GW_PORT_CORES + threads - 1)) "$threads" "$ALL_CPUS"; pid=$GW_PID
        group=$(create_group bench $MOCK_PORT_CORES)
        add_keys "$group" "${UPSTREAM_KEYS[@]}"
        url=$GW_API/proxy/bench/v1/chat/completions ;;
    esac
    must_probe "$url"
    if [ -n "$pid" ]; then
      measured_load "$pid" "$ALL_CPUS" "$url"
      rss=$(mib "$(mem_kib "$pid" VmHWM)"); busy="$BUSY%"
      stop_process "$pid" TERM 30
    else
      run_wrk "$ALL_CPUS" $WARMUP_SECONDS "$url"; run_wrk "$ALL_CPUS" "$RUN_SECONDS" "$url"
      CPU_US="—"; busy="—"; rss="—"
    fi
    rps[$name]=$W_RPS
    local label=$name
    case $name in
      direct) label="direct to the mock" ;;
      nginx-1) label="nginx, 1 worker" ;; nginx-2) label="nginx, 2 workers" ;;
      gpt-load-*) label="**gpt-load, ENGINE_THREADS=${name#gpt-load-}**" ;;
    esac
    rows+="| $label | $(thousands "$W_RPS") | $CPU_US | $busy | $rss | $W_NON2XX / $W_SOCKET |"$'\n'
  done
  stop_mock

  say "## Multi-core"
  say
  say "Nothing pinned: the proxy, the mock (1 thread) and wrk (1 thread, $CONNS connections) share all $NCPU cores, so a proxy using both cores competes with its own load generator and upstream; the \`direct\` row is wrk and the mock alone. ${RUN_SECONDS} s per run after a ${WARMUP_SECONDS} s warm-up. nginx runs the config of \`bench/compare.sh\` (access log on, upstream keepalive) with 1 and 2 workers."
  say
  say "| contender | req/s @$CONNS | CPU µs/req | proxy CPU busy (100% = one core) | peak RSS (MiB) | non-2xx / socket errors |"
  say "|---|---|---|---|---|---|"
  printf '%s' "$rows" >> "$REPORT"
  say
  say "Two over one: gpt-load $(awk -v a="${rps[gpt-load-2]}" -v b="${rps[gpt-load-1]}" 'BEGIN {printf "%.2f", a / b}')×, nginx $(awk -v a="${rps[nginx-2]}" -v b="${rps[nginx-1]}" 'BEGIN {printf "%.2f", a / b}')×. gpt-load 2 shards / nginx 2 workers: $(awk -v a="${rps[gpt-load-2]}" -v b="${rps[nginx-2]}" 'BEGIN {printf "%.2f", a / b}')×."
  say
}

# ---------------------------------------------------------------- run

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
for section in $SECTIONS; do "section_$section"; done

OUT=bench/results/scale-$STAMP.md
mkdir -p bench/results
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(git -C "$ROOT" status --porcelain -- engine control store 2>/dev/null)" ] && REV+=" with uncommitted changes"
{
  echo "# gpt-load at scale, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $NCPU cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r)."
  echo "gpt-load $REV, release build (engine driver: ${GW_DRIVER:-?}), fresh SQLite file per section, in front of \`bench/mock-upstream\` (1 thread, answers at once) on 127.0.0.1."
  echo "Run: \`${COMMAND% }\` (keys $KEYS, streams $STREAMS, ${RUN_SECONDS} s runs)."
  echo
  cat "$REPORT"
} > "$OUT"
cat "$OUT"
echo
echo "saved to $OUT"
