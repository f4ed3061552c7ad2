#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and reports what each did; exits non-zero if any
# target found a crash (a panic, a failed assertion, a sanitizer report or a hang).
#
# Usage: fuzz/run.sh [seconds-per-target=60]
#
# Not part of CI (three minutes of fuzzing per run by default). What libFuzzer finds is kept in
# fuzz/corpus/<target>/ (ignored by git, except the seed-* files) so later runs start from it;
# a crashing input lands in fuzz/artifacts/<target>/ and is minimized before the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
targets=(failover_codes proxy_key request_head)
log_dir=fuzz/target/run-logs

# cargo-fuzz builds with nightly-only rustc flags (-Zsanitizer=address and the sancov passes).
# The machines have only a stable toolchain; RUSTC_BOOTSTRAP=1 makes stable rustc accept them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi

mkdir -p "$log_dir"
echo "fuzz: building ${targets[*]}"
cargo fuzz build --fuzz-dir fuzz >"$log_dir/build.log" 2>&1 || {
  tail -n 40 "$log_dir/build.log" >&2
  echo "fuzz: build failed (whole log: $log_dir/build.log)" >&2
  exit 2
}

# The value of `stat::<name>:` in a libFuzzer log (printed by -print_final_stats=1).
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

# cov/ft/corp from libFuzzer's last status line (`#N DONE cov: .. ft: .. corp: ..`).
coverage() {
  grep -E '^#[0-9]+' "$1" | tail -n 1 |
    sed -E 's/.*(cov: [0-9]+).*(ft: [0-9]+).*(corp: [^ ]+).*/\1 \2 \3/'
}

# Shrinks a crashing input and prints it, so the report can quote it.
minimize() { # target, artifact
  local target=$1 artifact=$2
  cargo fuzz tmin --fuzz-dir fuzz "$target" "$artifact" >"$log_dir/$target.tmin.log" 2>&1 || true
  local minimized
  minimized=$(ls -t "fuzz/artifacts/$target"/minimized-from-* 2>/dev/null | head -n 1 || true)
  [[ -n $minimized ]] || minimized=$artifact
  echo "  input ($minimized), as a Rust byte string:"
  python3 -c 'import sys; print("    b" + repr(open(sys.argv[1], "rb").read())[1:])' "$minimized" ||
    od -c "$minimized" | sed 's/^/    /'
}

failed=0
printf '\nfuzz: %s s per target\n' "$secs"
for target in "${targets[@]}"; do
  log=$log_dir/$target.log
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  started=$(date +%s)
  # -timeout: an input taking 10 s is a hang (libFuzzer's default waits 20 minutes).
  set +e
  cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(stat number_of_executed_units "$log")
  rate=$(stat average_exec_per_sec "$log")
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  printf '%-15s %ss  execs %s  exec/s %s  %s  crashes %s\n' "$target" \
    "$(($(date +%s) - started))" "${execs:-?}" "${rate:-?}" "$(coverage "$log")" \
    "$([[ $rc -eq 0 ]] && echo 0 || echo 1)"
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "  exit $rc; log: $log"
    { grep -m 1 -A 1 "panicked at" "$log" ||
      grep -m 1 -E "ERROR: (libFuzzer|AddressSanitizer)" "$log"; } | sed 's/^/  /' || true
    if [[ -n $artifact ]]; then
      minimize "$target" "$artifact"
    fi
  fi
done

if [[ $failed -ne 0 ]]; then
  echo "fuzz: a target crashed; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <input>" >&2
  exit 1
fi
echo "fuzz: no crash"
