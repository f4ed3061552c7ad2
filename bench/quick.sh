#!/usr/bin/env bash
# A first rough throughput figure for /proxy on this machine: wrk against the mock directly,
# then through gpt-load, in one run. Not the comparison harness (that also runs nginx,
# TensorZero, LiteLLM and Portkey); just enough to see where the engine stands.
#
#   bench/quick.sh [seconds=10] [connections=64]
#
# Pinning: gpt-load on core 0 (ENGINE_THREADS=1), the mock and wrk on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh # add_bench_group, write_chat_lua, wait_http
DURATION=${1:-10}
CONNS=${2:-64}
apt_install wrk wrk || exit 1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p control -p mock-upstream >&2
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

MOCK_PORT=19090; GW_PORT=19091; AUTH=sk-bench-admin-Kq2vB7nX4pLw9Tz
taskset -c 1 "$BIN/mock-upstream" --port $MOCK_PORT > "$WORK/mock.out" &
(cd "$WORK" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$GW_PORT ENGINE_THREADS=1 MAX_CONCURRENT_REQUESTS=100000 \
  LOG_LEVEL=info exec taskset -c 0 "$BIN/gpt-load" 2> "$WORK/gw.err") &
GW_PID=$!
wait_http "http://127.0.0.1:$GW_PORT/health" gpt-load "$WORK/gw.err"

add_bench_group $GW_PORT $MOCK_PORT $AUTH
# Logs are written once a minute by default; keep it that way (the v1 default).

write_chat_lua "$WORK/post.lua"

run() { # label url
  local out rps lat
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  lat=$(awk '$1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print p50" / "p99}' <<<"$out")
  printf '| %s | %s | %s |\n' "$1" "$rps" "$lat"
}
echo "| path ($CONNS connections, ${DURATION}s) | requests/s | latency p50 / p99 |"
echo "|---|---|---|"
IDLE_RSS=$(awk '/VmRSS/ {print $2" "$3}' /proc/$GW_PID/status)
run "mock direct" "http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
run "through gpt-load (1 shard)" "http://127.0.0.1:$GW_PORT/proxy/bench/v1/chat/completions"
echo
echo "gpt-load RSS idle before load: $IDLE_RSS"
echo "gpt-load RSS after load: $(awk '/VmRSS/ {print $2" "$3}' /proc/$GW_PID/status), peak $(awk '/VmHWM/ {print $2" "$3}' /proc/$GW_PID/status)"
grep -o 'with [0-9]* shards ([a-z_, ]*)' "$WORK/gw.err" || grep -i listening "$WORK/gw.err" || true
