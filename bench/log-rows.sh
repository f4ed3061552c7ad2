#!/usr/bin/env bash
# What one request log row costs the SQLite store, measured two ways:
#   - instructions per row under callgrind (exact and repeatable on a busy machine: the same
#     binary and input give the same count), counted inside the flush only;
#   - user and system CPU per row natively (rough: moves with the machine's load).
#
#   bench/log-rows.sh [rows=50000]
#
# Rows are written as the log writer writes them (store/examples/log_rows.rs: batches of 2,000,
# one transaction each, a fresh database in a temporary directory). Installs valgrind
# with apt if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-50000}
. bench/lib.sh # apt_install
apt_install valgrind valgrind || exit 1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p store --example log_rows >&2
BIN=$CARGO_TARGET_DIR/release/examples/log_rows
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$WORK/cg" --collect-atstart=no \
  --toggle-collect='store::sqlite::logs::write_batch' "$BIN" "$ROWS" "$WORK/db" > /dev/null 2> "$WORK/vg"
IR=$(awk '/I[ ]+refs:/ {gsub(",", "", $NF); print $NF}' "$WORK/vg")
[ -n "$IR" ] && [ "$IR" -gt 0 ] || { echo "callgrind counted nothing:" >&2; cat "$WORK/vg" >&2; exit 1; }
echo "instructions per row (callgrind, inside the flush): $((IR / ROWS))"

N=$((ROWS * 4))
TIMEFORMAT='%U %S'
{ time "$BIN" "$N" "$WORK/db" > "$WORK/out"; } 2> "$WORK/time"
cat "$WORK/out"
awk -v n="$N" '{printf "CPU per row (native, rough): user %.2f µs, system %.2f µs\n", $1*1e6/n, $2*1e6/n}' "$WORK/time"
