#!/usr/bin/env bash
# gpt-load against other proxies in front of the same mock provider, in one run, with the
# direct-to-mock baseline re-measured in that same run.
#
#   bench/compare.sh [--seconds N] [--repeat N] [--llm-gateways] [--only "direct nginx gpt-load"]
#                    [--measure "rps c1 c16 sse"]
#
# --measure picks the measurements (all four by default): `--measure c1 --repeat 12` is the
# one-connection latency alone, over enough rounds for its p99 to mean something.
#
# `--only "direct nginx gpt-load gpt-load-no-rows"` adds the engine built with the
# bench-no-log-rows feature (its log writer drops each record instead of writing the row): the
# difference between the two gpt-load rows is what the SQLite row per request costs.
#
# --repeat N measures every contender N times, in turn (direct, nginx, gpt-load, direct, ...),
# and reports each figure's median over the N; the ratios' per-round values are listed too. On
# a VM whose neighbours move figures by a third from one minute to the next, one round is one
# sample.
#
# Contenders: `direct` (wrk straight at the mock), `nginx` (1 worker, upstream keepalive, two
# upstream keys alternated by split_clients, access log on, proxy_buffering off), `gpt-load`
# (release, ENGINE_THREADS=1, request logging on as by default). --llm-gateways also tries
# LiteLLM's proxy (pip, bench/.venv), Portkey's gateway (npm) and TensorZero's gateway (PyPI);
# one that cannot be installed or started is reported and skipped.
#
# Pinning: the proxy under test runs on core 0 (`taskset -c 0`); the mock, wrk and the SSE
# client share core 1. So the direct row is wrk and the mock sharing one core, and a proxied row
# can be limited by core 1 too: "proxy core busy" says how much of core 0 the proxy used.
#
# For each contender:
#   - requests/s at 64 connections, 0 ms mock (wrk, N s, after a 2 s warm-up);
#   - latency p50/p99 at 1 and 16 connections (wrk --latency, N s each; wrk corrects for
#     coordinated omission, so a p99 counts a run's few long stalls many times over), each
#     started once the proxy is idle (since 2026-12-05; before, a proxy still writing the
#     last run's log rows was measured doing so);
#   - SSE: 100 concurrent streams x 10 rounds (so a p99 is the tenth-slowest of 1,000 streams,
#     not one outlier; 3 rounds until 2026-12-04), 20 chunks 20 ms apart, each round's streams started
#     over 200 ms (sse-client, bench/mock-upstream/src/bin/sse-client.rs; started all at once they
#     queue at the mock's one thread, and that queue, ~4 ms even direct, hid what a proxy adds):
#     time to the first event and to [DONE], p50/p99, and the largest pause within a stream
#     (p99 over streams; the mock pauses 20 ms, so the excess is the inter-chunk delay added);
#   - CPU time per request: the proxy's utime+stime (/proc/PID/stat, whole process tree) over
#     the 64-connection run and until the proxy is idle after it (log rows still queued are
#     that run's work), divided by the requests wrk counted;
#   - RSS idle (VmRSS before any load) and peak (VmHWM after all load), process tree summed.
# "added" = contender - direct from this run. Every request goes to 127.0.0.1.
#
# Prints markdown and saves it as bench/results/compare-<UTC date-time>.md.
# Installs wrk and nginx (and curl, python3) with apt where they are missing; needs taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_RUN=10
SSE_ROUNDS=10 # of 100 streams each
LLM_GATEWAYS=0
ONLY=""
REPEAT=1
MEASURE="rps c1 c16 sse"
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --llm-gateways) LLM_GATEWAYS=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
CONTENDERS="direct nginx gpt-load"
[ "$LLM_GATEWAYS" = 1 ] && CONTENDERS="$CONTENDERS litellm portkey tensorzero"
[ -n "$ONLY" ] && CONTENDERS=$ONLY
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "--repeat takes a positive number, not '$REPEAT'" >&2; exit 2; }
for m in $MEASURE; do
  case $m in rps|c1|c16|sse) ;; *) echo "--measure takes rps, c1, c16 and sse, not '$m'" >&2; exit 2 ;; esac
done
measuring() { [[ " $MEASURE " == *" $1 "* ]]; }

. bench/lib.sh # apt_install, tree_pids, cpu_ticks, mem_kib, wait_http, install_nginx, write_nginx_conf
for tool in wrk curl python3; do
  apt_install $tool $tool || exit 1
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: the proxy on core 0, mock and load on core 1" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.3; rm -rf "$WORK"' EXIT
if [[ " $CONTENDERS " == *" gpt-load-no-rows "* ]]; then
  # Built first and set aside: the build below puts the shipped binary back in $BIN.
  cargo build --release --locked -p control --features bench-no-log-rows >&2
  cp "$BIN/gpt-load" "$WORK/gpt-load-no-rows"
fi
cargo build --release --locked -p control -p mock-upstream >&2
log() { echo "== $*" >&2; }

MOCK_PORT=19290; NGINX_PORT=19291; GW_PORT=19292; LITELLM_PORT=19293; PORTKEY_PORT=19294 # TensorZero picks its own
AUTH=sk-bench-admin-Kq2vB7nX4pLw9Tz
CLIENT_KEY=sk-bench-client
UPSTREAM_KEYS=(sk-upstream-aaaaaaaa1 sk-upstream-bbbbbbbb2)
CLK_TCK=$(getconf CLK_TCK)


# ---------------------------------------------------------------- load

# The wrk script for the contender about to be measured: the same body and client key for all,
# plus PROXY_HEADERS ("Name: value" each) for a gateway that is configured per request.
PROXY_HEADERS=(); PROXY_MODEL=gpt-4o-mini; PROXY_SSE_MODEL=gpt-4o-mini
body() { echo '{"model":"'"$PROXY_MODEL"'","messages":[{"role":"user","content":"hi"}]}'; }
write_lua() {
  {
    echo 'wrk.method = "POST"'
    echo "wrk.body = '$(body)'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    echo "wrk.headers[\"Authorization\"] = \"Bearer $CLIENT_KEY\""
    local header
    for header in "${PROXY_HEADERS[@]}"; do
      echo "wrk.headers[ [==[${header%%:*}]==] ] = [==[${header#*: }]==]"
    done
  } > "$WORK/post.lua"
}

# wrk prints latencies as 812.00us, 1.23ms or 1.02s; micro-seconds as an integer.
to_us() { awk '{v=$1; if (v ~ /us$/) m=1; else if (v ~ /ms$/) m=1000; else if (v ~ /s$/) m=1000000; else m=1; sub(/[a-z]+$/, "", v); printf "%d\n", v*m}' <<<"$1"; }

# Runs wrk on core 1; sets W_RPS W_REQS W_P50 W_P99 (us) W_BAD (non-2xx + socket errors).
run_wrk() { # connections seconds url
  local out
  out=$(taskset -c 1 wrk -t1 -c"$1" -d"$2s" --latency -s "$WORK/post.lua" "$3" 2>&1) || true
  echo "$out" >> "$WORK/wrk.log"
  W_RPS=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  W_REQS=$(awk '/requests in/ {print $1}' <<<"$out")
  W_P50=$(to_us "$(awk '$1=="50%" {print $2}' <<<"$out")")
  W_P99=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
  W_BAD=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' <<<"$out")
  : "${W_RPS:=0}" "${W_REQS:=0}" "${W_P50:=0}" "${W_P99:=0}"
}

# Waits (up to 10 s) until the proxy has finished the work a run left it, such as log rows
# still queued: it used at most one clock tick of CPU in 0.3 s. The CPU a run costs is read
# after this, and the next run starts from a quiet proxy instead of measuring the last one's
# leftovers.
settle() { # pid
  local before after
  for _ in $(seq 1 33); do
    before=$(cpu_ticks "$1"); sleep 0.3; after=$(cpu_ticks "$1")
    [ $((after - before)) -le 1 ] && return 0
  done
  log "the proxy was still busy 10 s after the run"
}

declare -A R # R[contender.metric]
VERSIONS="" # ", name version (how it ran)" for each gateway started, for the report

# Measures one running contender. pid is the proxy's root process ("" for direct).
measure() { # name url pid
  local name=$1 url=$2 pid=$3 t0 t1 sse header curl_headers=() sse_headers=()
  log "$name: $url"
  write_lua
  for header in "${PROXY_HEADERS[@]}"; do curl_headers+=(-H "$header"); sse_headers+=(--header "$header"); done
  [ -n "$pid" ] && R[$name.rss_idle]=$(mem_kib "$pid" VmRSS)
  # A contender that cannot answer one request is skipped, not measured as zeros.
  if ! curl -sf -o "$WORK/probe.json" "$url" -H "Authorization: Bearer $CLIENT_KEY" "${curl_headers[@]}" \
      -H 'Content-Type: application/json' -d "$(body)"; then
    echo "$name: a probe request to $url failed; skipped. Answer:" >&2
    curl -s "$url" -H "Authorization: Bearer $CLIENT_KEY" "${curl_headers[@]}" -H 'Content-Type: application/json' \
      -d "$(body)" >&2 || true
    R[$name.skipped]="probe request failed"
    return 0
  fi
  run_wrk 64 2 "$url" # warm-up: connection pools, JITs, allocator arenas
  R[$name.bad]=0
  if measuring rps; then
    [ -n "$pid" ] && { settle "$pid"; t0=$(cpu_ticks "$pid"); }
    run_wrk 64 "$SECONDS_PER_RUN" "$url"
    [ -n "$pid" ] && { settle "$pid"; t1=$(cpu_ticks "$pid"); }
    R[$name.rps]=$W_RPS; R[$name.bad]=$W_BAD
    if [ -n "$pid" ] && [ "$W_REQS" -gt 0 ]; then
      R[$name.cpu_us]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$W_REQS" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
      R[$name.busy]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$SECONDS_PER_RUN" 'BEGIN {printf "%d", d / hz / s * 100}')
    fi
  fi
  local c
  for c in 1 16; do
    measuring "c$c" || continue
    [ -n "$pid" ] && settle "$pid"
    run_wrk $c "$SECONDS_PER_RUN" "$url"
    R[$name.c${c}_p50]=$W_P50; R[$name.c${c}_p99]=$W_P99; R[$name.bad]=$((${R[$name.bad]} + W_BAD))
  done
  [ -n "$pid" ] && settle "$pid"
  measuring sse || { [ -n "$pid" ] && R[$name.rss_peak]=$(mem_kib "$pid" VmHWM); return 0; }
  sse=$(taskset -c 1 "$BIN/sse-client" "$url" --key "$CLIENT_KEY" --streams 100 --rounds $SSE_ROUNDS --spread-ms 200 \
    --model "$PROXY_SSE_MODEL" --chunks 20 --chunk-delay-ms 20 "${sse_headers[@]}" 2>>"$WORK/sse.err" || true)
  [ -s "$WORK/sse.err" ] && { echo "$name SSE errors:" >&2; head -3 "$WORK/sse.err" >&2; : > "$WORK/sse.err"; }
  log "$name SSE: $sse"
  for field in $sse; do R[$name.sse_${field%%=*}]=${field#*=}; done
  [ -n "$pid" ] && R[$name.rss_peak]=$(mem_kib "$pid" VmHWM)
  return 0
}

# ---------------------------------------------------------------- contenders

start_mock() {
  taskset -c 1 "$BIN/mock-upstream" --port $MOCK_PORT > "$WORK/mock.out" 2>&1 &
  MOCK_PID=$!
  for _ in $(seq 1 100); do grep -q listening "$WORK/mock.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "mock-upstream did not start:" >&2; cat "$WORK/mock.out" >&2; exit 1
}

# nginx as a foreground process with its own config and prefix; two upstream keys alternated,
# as a gateway with a two-key pool would.
start_nginx() {
  install_nginx || return 1
  local dir=$WORK/nginx
  write_nginx_conf "$dir" $NGINX_PORT $MOCK_PORT 1 "${UPSTREAM_KEYS[0]}" "${UPSTREAM_KEYS[1]}"
  taskset -c 0 nginx -p "$dir" -c "$dir/nginx.conf" > "$dir/stdout.log" 2>&1 &
  PROXY_PID=$!
  wait_http "http://127.0.0.1:$NGINX_PORT/" nginx "$dir/error.log" || return 1
  VERSIONS+=" nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (1 worker, access log on, proxy_buffering off),"
  PROXY_URL=http://127.0.0.1:$NGINX_PORT/v1/chat/completions
}

start_gpt_load() { start_gpt_load_binary "$BIN/gpt-load"; }
# The same engine with the bench-no-log-rows feature: every request's record is built and sent
# to the log writer, which drops it instead of writing the row. Not a configuration a user can
# choose; it shows what the SQLite row costs (named in --only only).
start_gpt_load_no_rows() { start_gpt_load_binary "$WORK/gpt-load-no-rows"; }

start_gpt_load_binary() { # path
  rm -rf "$WORK/gpt-load" # a fresh database each round
  mkdir -p "$WORK/gpt-load"
  (cd "$WORK/gpt-load" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$GW_PORT ENGINE_THREADS=1 \
    MAX_CONCURRENT_REQUESTS=100000 LOG_LEVEL=info exec taskset -c 0 "$1" 2> "$WORK/gpt-load/err.log") &
  PROXY_PID=$!
  wait_http "http://127.0.0.1:$GW_PORT/health" gpt-load "$WORK/gpt-load/err.log" || return 1
  local api="http://127.0.0.1:$GW_PORT"
  curl -sf "$api/api/groups" -H "Authorization: Bearer $AUTH" -o /dev/null -d '{"name":"bench","channel_type":"openai","test_model":"m","upstreams":[{"url":"http://127.0.0.1:'$MOCK_PORT'","weight":1}],"proxy_keys":"'$CLIENT_KEY'"}' \
    || { echo "gpt-load: creating the group failed" >&2; return 1; }
  curl -sf "$api/api/keys/add-multiple" -H "Authorization: Bearer $AUTH" -o /dev/null \
    -d '{"group_id":1,"keys_text":"'"${UPSTREAM_KEYS[0]}\\n${UPSTREAM_KEYS[1]}"'"}' \
    || { echo "gpt-load: adding the keys failed" >&2; return 1; }
  PROXY_URL=$api/proxy/bench/v1/chat/completions
}

stop_proxy() {
  [ -n "${PROXY_PID:-}" ] || return 0
  local pids; pids=$(tree_pids "$PROXY_PID")
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=""
}

# Optional contenders live in bench/compare-gateways.sh (sourced when present): each defines
# start_<name> that sets PROXY_PID and PROXY_URL, or returns non-zero after saying why.
[ -f bench/compare-gateways.sh ] && . bench/compare-gateways.sh

# ---------------------------------------------------------------- run

start_mock
log "mock-upstream on core 1 (pid $MOCK_PID); proxies on core 0; wrk and the SSE client on core 1"
measure_all() {
  local name starter
  for name in $CONTENDERS; do
    PROXY_PID=""; PROXY_URL=""; PROXY_HEADERS=(); SKIP_REASON=""
    PROXY_MODEL=gpt-4o-mini; PROXY_SSE_MODEL=gpt-4o-mini
    if [ "$name" = direct ]; then
      measure direct "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" ""
      continue
    fi
    starter=start_${name//-/_}
    if ! declare -F "$starter" >/dev/null; then
      R[$name.skipped]="no $starter in this script"; continue
    fi
    if "$starter"; then
      sleep 1 # let start-up work (migrations, JIT, imports) settle before the idle RSS reading
      measure "$name" "$PROXY_URL" "$PROXY_PID"
    else
      R[$name.skipped]=${SKIP_REASON:-"did not start (see messages above)"}
    fi
    stop_proxy
  done
}

# Each round's figures are kept as ROUND[name.metric] = "v1 v2 ...", then R holds their medians
# (errors are summed instead).
declare -A ROUND
# The middle value (the lower of the two middle ones for an even count: always a measured value,
# and an integer where the figures are, as the "added" arithmetic needs).
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR + 1) / 2)]}'; }
for round in $(seq 1 "$REPEAT"); do
  [ "$REPEAT" -gt 1 ] && log "round $round of $REPEAT"
  for key in "${!R[@]}"; do [[ $key == *.skipped ]] || unset "R[$key]"; done
  measure_all
  for key in "${!R[@]}"; do [[ $key == *.skipped ]] || ROUND[$key]+="${R[$key]} "; done
  [ "$round" = 1 ] && FIRST_VERSIONS=$VERSIONS
done
VERSIONS=$FIRST_VERSIONS # each start appends its version; keep one round's
for key in "${!ROUND[@]}"; do
  case $key in
    *.bad|*.sse_failed) R[$key]=$(tr ' ' '\n' | awk '{n+=$1} END {print n+0}' <<<"${ROUND[$key]}") ;;
    *) R[$key]=$(median <<<"${ROUND[$key]}") ;;
  esac
done

# ---------------------------------------------------------------- report

num() { echo "${R[$1]:-}"; }
ms() { awk -v v="$1" 'BEGIN {if (v == "") print "—"; else printf "%.2f", v / 1000}'; }
us() { [ -n "$1" ] && echo "$1" || echo "—"; }
mib() { awk -v v="$1" 'BEGIN {if (v == "") print "—"; else printf "%.1f", v / 1024}'; }
added() { # name metric → contender - direct, in us
  local a b; a=$(num "$1.$2"); b=$(num "direct.$2")
  [ -n "$a" ] && [ -n "$b" ] && echo $((a - b)) || echo ""
}
ratio() { # ours theirs → ours/theirs, 3 significant digits; "n/a" when either is missing or theirs <= 0
  awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b + 0 <= 0) print "n/a"; else printf "%.3g", a / b}'
}
or_dash() { [ -n "$1" ] && echo "$1" || echo "—"; }

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=bench/results/compare-$STAMP.md
mkdir -p bench/results
{
  echo "# gpt-load vs other proxies, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r)."
  echo "The proxy under test is pinned to core 0; the mock (1 thread), wrk (1 thread) and the SSE client share core 1."
  [ "$REPEAT" -gt 1 ] && echo "Each figure is the median of $REPEAT rounds, the contenders measured in turn in each; errors are summed."
  [ "$MEASURE" != "rps c1 c16 sse" ] && echo "Measured: $MEASURE only."
  echo "wrk runs of ${SECONDS_PER_RUN}s; mock answers at once (0 ms). SSE: 100 concurrent streams x $SSE_ROUNDS rounds (each round's started over 200 ms), 20 chunks 20 ms apart."
  echo "Versions: gpt-load $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (ENGINE_THREADS=1, request logging on),${VERSIONS%,}."
  echo
  echo "## Measured"
  echo
  echo "| contender | req/s @64 | proxy core busy | CPU µs/req | c=1 p50 / p99 (µs) | c=16 p50 / p99 (µs) | SSE first event p50 / p99 (ms) | SSE whole stream p50 / p99 (ms) | SSE largest gap p99 (ms) | RSS idle / peak (MiB) | errors (wrk, SSE) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for n in $CONTENDERS; do
    if [ -n "${R[$n.skipped]:-}" ]; then echo "| $n | skipped: ${R[$n.skipped]} ||||||||||"; continue; fi
    echo "| $n | $(or_dash "$(num $n.rps)") | $(or_dash "$(num $n.busy)")${R[$n.busy]:+%} | $(or_dash "$(num $n.cpu_us)") \
| $(us "$(num $n.c1_p50)") / $(us "$(num $n.c1_p99)") | $(us "$(num $n.c16_p50)") / $(us "$(num $n.c16_p99)") \
| $(ms "$(num $n.sse_ttfb_p50)") / $(ms "$(num $n.sse_ttfb_p99)") | $(ms "$(num $n.sse_total_p50)") / $(ms "$(num $n.sse_total_p99)") | $(ms "$(num $n.sse_gap_p99)") \
| $(mib "$(num $n.rss_idle)") / $(mib "$(num $n.rss_peak)") | $(num $n.bad) non-2xx or socket, $(or_dash "$(num $n.sse_failed)") SSE failed |"
  done
  echo
  echo "## Added over direct (same run)"
  echo
  echo "| contender | req/s, % of direct | c=1 p50 / p99 (µs) | c=16 p50 / p99 (µs) | SSE first event p50 / p99 (ms) | SSE whole stream p50 / p99 (ms) | SSE largest gap p99 (ms) |"
  echo "|---|---|---|---|---|---|---|"
  for n in $CONTENDERS; do
    [ "$n" = direct ] && continue
    [ -n "${R[$n.skipped]:-}" ] && continue
    echo "| $n | $(awk -v a="$(num $n.rps)" -v b="$(num direct.rps)" 'BEGIN {if (b > 0) printf "%d%%", a * 100 / b; else print "—"}') \
| $(us "$(added $n c1_p50)") / $(us "$(added $n c1_p99)") | $(us "$(added $n c16_p50)") / $(us "$(added $n c16_p99)") \
| $(ms "$(added $n sse_ttfb_p50)") / $(ms "$(added $n sse_ttfb_p99)") | $(ms "$(added $n sse_total_p50)") / $(ms "$(added $n sse_total_p99)") | $(ms "$(added $n sse_gap_p99)") |"
  done
  echo
  echo "## Ratios, ours / theirs"
  echo
  echo "Above 1 is better for req/s; below 1 is better for everything else. Added latency ratios are n/a when theirs is ≤ 0 (within noise of direct)."
  echo
  echo "| ratio | req/s @64 | CPU µs/req | added c=1 p50 / p99 | added c=16 p50 / p99 | added SSE first event p50 / p99 | RSS idle / peak |"
  echo "|---|---|---|---|---|---|---|"
  ratio_row() { # label ours theirs
    local ours=$2 n=$3
    echo "| $1 | $(ratio "$(num $ours.rps)" "$(num $n.rps)") | $(ratio "$(num $ours.cpu_us)" "$(num $n.cpu_us)") \
| $(ratio "$(added $ours c1_p50)" "$(added $n c1_p50)") / $(ratio "$(added $ours c1_p99)" "$(added $n c1_p99)") \
| $(ratio "$(added $ours c16_p50)" "$(added $n c16_p50)") / $(ratio "$(added $ours c16_p99)" "$(added $n c16_p99)") \
| $(ratio "$(added $ours sse_ttfb_p50)" "$(added $n sse_ttfb_p50)") / $(ratio "$(added $ours sse_ttfb_p99)" "$(added $n sse_ttfb_p99)") \
| $(ratio "$(num $ours.rss_idle)" "$(num $n.rss_idle)") / $(ratio "$(num $ours.rss_peak)" "$(num $n.rss_peak)") |"
  }
  measured() { [[ " $CONTENDERS " == *" $1 "* ]] && [ -z "${R[$1.skipped]:-}" ]; }
  ours=gpt-load
  for n in $CONTENDERS; do
    case $n in direct|"$ours") continue ;; esac
    measured "$n" && measured "$ours" && ratio_row "ours / $n" "$ours" "$n"
  done
  if measured gpt-load-no-rows && measured nginx; then
    ratio_row "gpt-load-no-rows / nginx" gpt-load-no-rows nginx
  fi
  if [ "$REPEAT" -gt 1 ] && [ -z "${R[$ours.skipped]:-}" ]; then
    echo
    echo "Per round (ours / theirs, req/s @64 and CPU µs/req):"
    echo
    for n in $CONTENDERS; do
      case $n in direct|"$ours") continue ;; esac
      [ -n "${R[$n.skipped]:-}" ] && continue
      echo "- $n: req/s $(paste -d/ <(tr ' ' '\n' <<<"${ROUND[$ours.rps]:-}") <(tr ' ' '\n' <<<"${ROUND[$n.rps]:-}") \
        | awk -F/ 'NF == 2 && $2 > 0 {printf "%s%.3g", sep, $1 / $2; sep=", "}'); CPU $(paste -d/ <(tr ' ' '\n' <<<"${ROUND[$ours.cpu_us]:-}") <(tr ' ' '\n' <<<"${ROUND[$n.cpu_us]:-}") \
        | awk -F/ 'NF == 2 && $2 > 0 {printf "%s%.3g", sep, $1 / $2; sep=", "}')"
    done
  fi
} > "$OUT"
cat "$OUT"
echo
echo "saved to $OUT"
