#!/usr/bin/env bash
# How long the request log writer holds the core it shares with a shard, and how long the shard
# waits for it: the part of the tail latency that logging costs. With the process pinned to one
# core (as the comparison pins every proxy), the writer's flush and the shard take turns, and
# the kernel only takes the core back from the writer at a scheduler tick unless the writer
# offers it; a request that arrives while the writer has the core waits out its turn.
#
#   bench/writer-turns.sh [seconds=3] [connections=16]
#
# gpt-load on core 0 (ENGINE_THREADS=1, logging on as by default), the mock and wrk on core 1;
# `perf sched record` on core 0 during the load, then `perf sched timehist`:
#   - each writer thread's turns on the core (`log-writer`, `log-catchup`: on-CPU stretches),
#     p50/p90/p99/max, and its CPU share;
#   - the shard's waits between two of its turns, p99/max (preempted or asleep), and the part
#     of them it was runnable but off the core (woken and not yet run, or preempted), with
#     what held the core during those of 0.2 ms or more;
#   - what else ran on the core (other processes of the machine are noise here).
# Run it twice per build and alternate builds (GPT_LOAD=path runs that binary instead of this
# checkout's): the VM's neighbours move these figures too.
# Needs root, tracefs for the sched tracepoints and python3; installs perf (linux-perf) and wrk
# with apt where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh # add_bench_group, write_chat_lua, wait_http
SECONDS_RUN=${1:-3}
CONNS=${2:-16}
apt_install perf linux-perf && apt_install wrk wrk || exit 1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p control -p mock-upstream >&2
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT

MOCK_PORT=19590; GW_PORT=19591; AUTH=sk-bench-admin-Kq2vB7nX4pLw9Tz
taskset -c 1 "$BIN/mock-upstream" --port $MOCK_PORT > "$WORK/mock.out" 2>&1 &
(cd "$WORK" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$GW_PORT ENGINE_THREADS=1 MAX_CONCURRENT_REQUESTS=100000 \
  LOG_LEVEL=warn exec taskset -c 0 "${GPT_LOAD:-$BIN/gpt-load}" 2> "$WORK/gw.err") &
wait_http "http://127.0.0.1:$GW_PORT/health" gpt-load "$WORK/gw.err"
add_bench_group $GW_PORT $MOCK_PORT $AUTH

write_chat_lua "$WORK/post.lua"
URL=http://127.0.0.1:$GW_PORT/proxy/bench/v1/chat/completions
taskset -c 1 wrk -t1 -c"$CONNS" -d$((SECONDS_RUN + 2))s -s "$WORK/post.lua" "$URL" > "$WORK/wrk.out" &
WRK=$!
sleep 1 # past the first flush of a fresh database
perf sched record -C 0 -o "$WORK/sched.data" -- sleep "$SECONDS_RUN" > /dev/null 2> "$WORK/perf.err" \
  || { echo "perf sched record failed (root? tracefs?):" >&2; tail -3 "$WORK/perf.err" >&2; exit 1; }
wait $WRK
perf sched timehist --state -i "$WORK/sched.data" > "$WORK/timehist" 2> /dev/null

echo "load: $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out") req/s at $CONNS connections, ${SECONDS_RUN} s recorded on core 0"
# timehist columns: time, cpu, task[tid/pid], wait time, sch delay, run time (ms).
python3 - "$WORK/timehist" "$SECONDS_RUN" <<'PY'
import re, sys
rows = []  # (end s, task, wait ms, scheduling delay ms, run ms), in order on core 0
states = []  # the task's state when it left the core: R preempted, S/D asleep
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)\s+\[\d+\]\s+(.+?)\[[\d/]+\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)", line)
    if m:
        rows.append((float(m.group(1)), m.group(2).strip(), float(m.group(3)), float(m.group(4)),
                     float(m.group(5))))
        states.append(m.group(6))
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else 0.0
def line(label, values, share=None):
    extra = f", {share:.0%} of the core" if share is not None else ""
    print(f"{label}: {len(values)} turns, p50 {pct(values, .5):.2f} / p90 {pct(values, .9):.2f} / "
          f"p99 {pct(values, .99):.2f} / max {max(values, default=0):.2f} ms{extra}")
seconds = float(sys.argv[2])
writers = ("log-writer", "log-catchup")
for name in writers:
    turns = [run for _, task, _, _, run in rows if task == name]
    line(f"{name}, time on the core per turn", turns, sum(turns) / 1000 / seconds)
# A shard's time kept from the core before a turn: all of its wait if it had been preempted,
# else the delay from its wake-up.
shard, preempted = [], False
for (end, task, wait, delay, run), state in zip(rows, states):
    if task.startswith("shard-"):
        shard.append((end, wait, wait if preempted else delay, run))
        preempted = state == "R"
print(f"shard, wait between turns: p99 {pct([w for _, w, _, _ in shard], .99):.2f} / "
      f"max {max((w for _, w, _, _ in shard), default=0):.2f} ms")
# Runnable but kept off the core: who had it meanwhile.
delays = [d for _, _, d, _ in shard]
print(f"shard, runnable (woken or preempted) but off the core: p50 {pct(delays, .5):.3f} / p99 {pct(delays, .99):.3f} / "
      f"max {max(delays, default=0):.3f} ms")
held = {}
for end, _, delay, run in shard:
    if delay < 0.2:
        continue
    start = end - run / 1000
    woken = start - delay / 1000
    for other_end, task, _, _, other_run in rows:
        other_start = other_end - other_run / 1000
        overlap = min(other_end, start) - max(other_start, woken)
        if overlap > 0 and not task.startswith("shard-"):
            held[task] = held.get(task, 0) + overlap * 1000
print("while the shard waited 0.2 ms or more for the core: " +
      (", ".join(f"{t} {ms:.1f} ms" for t, ms in sorted(held.items(), key=lambda kv: -kv[1])[:4]) or "nothing"))
others = {}
for _, task, _, _, run in rows:
    if not (task in writers or task.startswith("shard-") or task == "<idle>"):
        others[task] = others.get(task, 0) + run
top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
print("also on the core: " + (", ".join(f"{t} {ms:.0f} ms" for t, ms in top) or "nothing"))
PY
