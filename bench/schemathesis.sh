#!/usr/bin/env bash
# Property-based checks of the admin API against its own OpenAPI document (not part of CI):
# gpt-load (debug build) on a fresh SQLite file with one group and a few keys, then schemathesis
# generates requests from GET /api/openapi.json and checks the answers: no 5xx, statuses and
# bodies as documented, invalid input refused. Destructive operations (deletes, clears) run too,
# on the throwaway database.
#
#   bench/schemathesis.sh [max seconds=120] [extra st run options...]
#
# Needs curl, jq and schemathesis 4 (`pip install schemathesis`; the `st` command, or set ST).
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_TIME=${1:-120}
ST=${ST:-st}
for tool in curl jq "$ST"; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --locked -p control >&2
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

PORT=19291; AUTH=sk-schemathesis-admin-Vb7qL2xN9kPw4
(cd "$WORK" && AUTH_KEY=$AUTH HOST=127.0.0.1 PORT=$PORT DATABASE_DSN=$WORK/gpt-load.db \
  LOG_LEVEL=warn exec "$CARGO_TARGET_DIR/debug/gpt-load" 2> "$WORK/gw.err") &
for _ in $(seq 1 100); do curl -sf "localhost:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -sf "localhost:$PORT/health" >/dev/null || { cat "$WORK/gw.err" >&2; exit 1; }

api() { curl -sf "localhost:$PORT$1" -H "Authorization: Bearer $AUTH" "${@:2}"; }
api /api/groups -d '{"name":"example-group","channel_type":"openai","test_model":"m","upstreams":[{"url":"http://127.0.0.1:9","weight":1}]}' >/dev/null
api /api/keys/add-multiple -d '{"group_id":1,"keys_text":"sk-example-1\nsk-example-2"}' >/dev/null
api /api/openapi.json > "$WORK/openapi.json"

# Run from $WORK: schemathesis keeps its replay files in ./.schemathesis.
(cd "$WORK" && "$ST" run "$WORK/openapi.json" --url "http://127.0.0.1:$PORT" \
  --header "Authorization: Bearer $AUTH" --max-time "$MAX_TIME" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
  "${@:2}") || status=$?
if grep -qi panic "$WORK/gw.err"; then echo "gpt-load panicked:" >&2; cat "$WORK/gw.err" >&2; exit 1; fi
exit "${status:-0}"
