#!/usr/bin/env bash
# What the engine's own code costs a proxied request, exactly: instructions per request inside
# the shard's task polls (routing, auth, parsing, building the upstream request, relaying the
# answer, the log event), counted by callgrind over a fixed number of requests. Like
# bench/log-rows.sh, the count repeats whatever else the machine is doing, so a change of a few
# percent shows; wall-clock benchmarks on a shared VM cannot show that.
#
#   bench/shard-instructions.sh [requests=4000]
#
# CALLGRIND_OUT=file keeps the shard's callgrind profile, for callgrind_annotate --tree=caller.
# PART=writer counts the request log writer's thread instead (taking each record off the queue
# and the flushes, store included): what logging a request costs, beside what serving it does.
# With fewer than a few batches (2,000 records each) the first batch's one-off costs show.
#
# valgrind cannot run io_uring, so the shard must fall back to epoll: the script sets
# kernel.io_uring_disabled=2 for the run (root; the previous value is restored on exit). The
# kernel's share and the io driver's own code are therefore not in the count; everything the
# engine does per request is. Installs valgrind with apt if it is missing; needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh # add_bench_group
REQUESTS=${1:-4000}
apt_install valgrind valgrind || exit 1
[ -w /proc/sys/kernel/io_uring_disabled ] || { echo "needs root, to set kernel.io_uring_disabled" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p control -p mock-upstream >&2
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
PREVIOUS=$(cat /proc/sys/kernel/io_uring_disabled)
trap 'echo "$PREVIOUS" > /proc/sys/kernel/io_uring_disabled; kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
echo 2 > /proc/sys/kernel/io_uring_disabled

if [ "${PART:-shard}" = writer ]; then
  TOGGLES=(--toggle-collect='gpt_load::logs::Writer::take' --toggle-collect='gpt_load::logs::Writer::flush')
  LABEL="in the log writer"; SHOWN='gpt_load::|store::|sqlite3|memcpy|malloc|free|uuid|chrono'
else
  TOGGLES=(--toggle-collect='monoio::task::raw::poll')
  LABEL="in the shard (callgrind, epoll driver)"; SHOWN='engine::|memcpy|memchr|malloc|free|httparse|serde_json'
fi
MOCK_PORT=19490; GW_PORT=19491; AUTH=sk-bench-admin-Kq2vB7nX4pLw9Tz
"$BIN/mock-upstream" --port $MOCK_PORT > "$WORK/mock.out" 2>&1 &
(cd "$WORK" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$GW_PORT ENGINE_THREADS=1 LOG_LEVEL=warn \
  exec valgrind --tool=callgrind --separate-threads=yes --collect-atstart=no \
  "${TOGGLES[@]}" --callgrind-out-file="$WORK/cg.%p" "$BIN/gpt-load" \
  2> "$WORK/gw.err") &
GW_PID=$!
# Starting under valgrind takes a minute or two on two cores.
for _ in $(seq 1 1800); do curl -sf "localhost:$GW_PORT/health" >/dev/null && break; sleep 0.2; done
curl -sf "localhost:$GW_PORT/health" >/dev/null || { echo "gpt-load did not start:" >&2; tail "$WORK/gw.err" >&2; exit 1; }
add_bench_group $GW_PORT $MOCK_PORT $AUTH
python3 bench/fixed_requests.py $GW_PORT "$REQUESTS" 16
kill -TERM $GW_PID; wait $GW_PID 2>/dev/null || true

# One file per thread; the counted thread's is the one that counted anything.
SHARD=$(for f in "$WORK"/cg.*; do echo "$(awk '/^summary:/ {print $2}' "$f") $f"; done | sort -n | tail -1)
IR=${SHARD%% *}
[ -n "$IR" ] && [ "$IR" -gt 0 ] || { echo "callgrind counted nothing" >&2; exit 1; }
echo "instructions per request $LABEL: $((IR / REQUESTS))"
[ -z "${CALLGRIND_OUT:-}" ] || cp "${SHARD#* }" "$CALLGRIND_OUT"
echo "largest inclusive costs per request (function, where the time is attributed):"
callgrind_annotate --inclusive=yes "${SHARD#* }" 2>/dev/null | grep -E '^ *[0-9,]+ ' \
  | grep -E "$SHOWN" | head -30 \
  | awk -v n="$REQUESTS" '{c=$1; gsub(",", "", c); sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "");
      sub(/ \[.*\]$/, ""); sub(/^.*(registry\/src\/[^\/]+\/|\/rustc\/[0-9a-f]+\/|engine\/src\/)/, "");
      printf "%8d  %s\n", c / n, substr($0, 1, 130)}'
