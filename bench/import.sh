#!/usr/bin/env bash
# A million-key import on this machine: gpt-load (release) on a fresh SQLite file takes
# 1,000,000 generated keys through POST /api/keys/add-async as a multipart .txt upload (what
# the console sends), and we time the upload and the background task until /api/tasks/status
# says it is done; then the key list (first page, page 5000, a key_value search) and the export
# of the whole group. Meanwhile a probe sends proxy requests to the same group at a steady
# 200/s, and their latency before, during and after the import is printed.
#
#   bench/import.sh [keys=1000000]
#
# Installs curl, jq, bc and python3 with apt where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-1000000}
. bench/lib.sh # apt_install
for tool in curl jq bc python3; do
  apt_install $tool $tool || exit 1
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p control -p mock-upstream >&2
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

MOCK_PORT=19190; GW_PORT=19191; AUTH=sk-bench-admin-Kq2vB7nX4pLw9Tz
"$BIN/mock-upstream" --port $MOCK_PORT > "$WORK/mock.out" &
(cd "$WORK" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$GW_PORT DATABASE_DSN=$WORK/gpt-load.db \
  MAX_CONCURRENT_REQUESTS=100000 LOG_LEVEL=warn exec "$BIN/gpt-load" 2> "$WORK/gw.err") &
GW_PID=$!
for _ in $(seq 1 100); do curl -sf "localhost:$GW_PORT/health" >/dev/null && break; sleep 0.1; done
curl -sf "localhost:$GW_PORT/health" >/dev/null || { echo "gpt-load did not start:" >&2; cat "$WORK/gw.err" >&2; exit 1; }

api() { curl -sf "localhost:$GW_PORT$1" -H "Authorization: Bearer $AUTH" "${@:2}"; }
GROUP=$(api /api/groups -d '{"name":"bench","channel_type":"openai","test_model":"m","upstreams":[{"url":"http://127.0.0.1:'$MOCK_PORT'","weight":1}],"proxy_keys":"sk-bench-client"}' | jq .data.id)
api /api/keys/add-multiple -d '{"group_id":'"$GROUP"',"keys_text":"sk-upstream-seed-1"}' >/dev/null

# ~51 bytes a line, as real provider keys are.
awk -v n="$KEYS" 'BEGIN { for (i = 0; i < n; i++) printf "sk-bench-%041d\n", i }' > "$WORK/keys.txt"
SIZE_MB=$(du -m "$WORK/keys.txt" | cut -f1)

# The proxy probe: one keep-alive connection sending a chat request to the group being imported
# into every 5 ms (200/s, light enough not to starve the import on a small machine), logging
# wall-clock time, status and latency of each.
cat > "$WORK/probe.py" <<'PY'
import http.client, json, os, sys, time
port, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-client"}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
with open(out, "w") as f:
    next_at = time.monotonic()
    while not os.path.exists(stop):
        t0 = time.monotonic()
        try:
            conn.request("POST", "/proxy/bench/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except Exception:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = 0
        f.write(f"{time.time():.6f} {status} {(time.monotonic() - t0) * 1000:.3f}\n")
        next_at += 0.005
        time.sleep(max(0.0, next_at - time.monotonic()))
PY
python3 "$WORK/probe.py" $GW_PORT "$WORK/probe.log" "$WORK/probe.stop" &
sleep 3

task_running() { api /api/tasks/status | jq -e '.data.is_running == true' >/dev/null; }
START=$(date +%s.%N)
api /api/keys/add-async -F "group_id=$GROUP" -F "file=@$WORK/keys.txt;type=text/plain" > "$WORK/started.json"
UPLOADED=$(date +%s.%N)
while task_running; do sleep 0.05; done
DONE=$(date +%s.%N)
STATUS=$(api /api/tasks/status)
sleep 3
touch "$WORK/probe.stop"; sleep 0.5

echo "| proxy probe (200 requests/s, one connection) | requests | non-200 | latency p50 / p99 / max |"
echo "|---|---|---|---|"
python3 - "$WORK/probe.log" "$START" "$DONE" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
start, done = float(sys.argv[2]), float(sys.argv[3])
phases = {"before the import": [], "during the import": [], "after the import": []}
for t, status, ms in rows:
    t = float(t)
    key = "before the import" if t < start else "during the import" if t <= done else "after the import"
    phases[key].append((int(status), float(ms)))
for name, got in phases.items():
    lat = sorted(ms for _, ms in got) or [0.0]
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    bad = sum(1 for status, _ in got if status != 200)
    print(f"| {name} | {len(got)} | {bad} | {pick(0.5):.2f} / {pick(0.99):.2f} / {lat[-1]:.2f} ms |")
slow = sorted(((float(ms), float(t) - start) for t, _, ms in rows), reverse=True)[:3]
print("\nslowest probe requests: " + ", ".join(f"{ms:.0f} ms at {at:+.2f} s" for ms, at in slow)
      + " (from the start of the upload)")
PY

median_time() { # path: median of 5 timed GETs, in ms
  for _ in 1 2 3 4 5; do
    curl -sf -o /dev/null -w '%{time_total}\n' "localhost:$GW_PORT$1" -H "Authorization: Bearer $AUTH"
  done | sort -n | sed -n 3p | awk '{printf "%.1f ms", $1 * 1000}'
}
SEARCH=$(printf 'sk-bench-%041d' $((KEYS / 2)))
echo
echo "| step ($KEYS keys, ${SIZE_MB} MB file) | time |"
echo "|---|---|"
printf '| upload answered (TaskStatus) | %.2f s |\n' "$(echo "$UPLOADED - $START" | bc)"
printf '| import done (upload to is_running=false) | %.2f s |\n' "$(echo "$DONE - $START" | bc)"
echo "| GET /api/keys page 1 (page_size 100) | $(median_time "/api/keys?group_id=$GROUP&page=1&page_size=100") |"
echo "| GET /api/keys page 5000 (page_size 100) | $(median_time "/api/keys?group_id=$GROUP&page=5000&page_size=100") |"
echo "| GET /api/keys key_value search | $(median_time "/api/keys?group_id=$GROUP&key_value=$SEARCH") |"
EXPORT_START=$(date +%s.%N)
LINES=$(curl -sf "localhost:$GW_PORT/api/keys/export?group_id=$GROUP&key=$AUTH" | wc -l)
printf '| GET /api/keys/export (%s lines) | %.2f s |\n' "$LINES" "$(echo "$(date +%s.%N) - $EXPORT_START" | bc)"
echo
echo "task: $(jq -c '.data | {processed, total, result, duration_seconds}' <<<"$STATUS")"
echo "gpt-load RSS after the import: $(awk '/VmRSS/ {print $2" "$3}' /proc/$GW_PID/status), peak $(awk '/VmHWM/ {print $2" "$3}' /proc/$GW_PID/status)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
