# Sourced by bench/compare.sh (not run alone): the LLM gateways it compares against with
# --llm-gateways. Each start_<name> installs what it needs through the package registry's own
# client (pip into bench/.venv, npm into bench/.node), starts the gateway on core 0 against the
# mock with the two upstream keys, and sets PROXY_PID, PROXY_URL and, where the gateway is
# configured per request, PROXY_HEADERS / PROXY_MODEL. On failure it sets SKIP_REASON, says why
# on stderr and returns 1; compare.sh then reports the contender as skipped and goes on.
#
# Uses from compare.sh: WORK ROOT MOCK_PORT *_PORT CLIENT_KEY UPSTREAM_KEYS log wait_http.

VENV=$ROOT/bench/.venv
NODE_PREFIX=$ROOT/bench/.node

skip() { SKIP_REASON=$1; echo "skipping: $1" >&2; return 1; }

# A venv of our own, so nothing lands in the system or pyenv interpreter.
ensure_venv() {
  [ -x "$VENV/bin/pip" ] && return 0
  python3 -m venv "$VENV" > "$WORK/venv.log" 2>&1 || { tail -3 "$WORK/venv.log" >&2; return 1; }
}

pip_install() { # package-spec log-name
  ensure_venv || return 1
  log "pip install $1 into bench/.venv"
  timeout 600 "$VENV/bin/pip" install -q "$1" > "$WORK/pip-$2.log" 2>&1 \
    || { echo "pip install $1 failed (or took over 10 min):" >&2; tail -5 "$WORK/pip-$2.log" >&2; return 1; }
}

# ---------------------------------------------------------------- LiteLLM

# LiteLLM's proxy (`litellm[proxy]`), one uvicorn worker, two deployments of one model name (the
# router spreads requests across them), client headers forwarded so the mock's x-mock-* controls
# reach it. It refuses to start without a master key, so the client key is the master key.
start_litellm() {
  [ -x "$VENV/bin/litellm" ] || pip_install 'litellm[proxy]' litellm || { skip "litellm: pip install failed"; return 1; }
  local dir=$WORK/litellm
  mkdir -p "$dir"
  cat > "$dir/config.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$MOCK_PORT/v1", api_key: ${UPSTREAM_KEYS[0]}}
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$MOCK_PORT/v1", api_key: ${UPSTREAM_KEYS[1]}}
general_settings:
  master_key: $CLIENT_KEY
  forward_client_headers_to_llm_api: true
litellm_settings:
  telemetry: false
YAML
  (cd "$dir" && exec taskset -c 0 "$VENV/bin/litellm" --config config.yaml --host 127.0.0.1 \
    --port "$LITELLM_PORT" --num_workers 1 > "$dir/out.log" 2>&1) &
  PROXY_PID=$!
  wait_http "http://127.0.0.1:$LITELLM_PORT/health/liveliness" litellm "$dir/out.log" \
    || { skip "litellm: did not start"; return 1; }
  VERSIONS+=" litellm $("$VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}') (1 uvicorn worker),"
  PROXY_URL=http://127.0.0.1:$LITELLM_PORT/v1/chat/completions
}

# ---------------------------------------------------------------- Portkey

# Portkey's open-source gateway (npm `@portkey-ai/gateway`, Node), headless. It keeps no
# provider config of its own: the client sends it in `x-portkey-config`, here a load-balance
# over two targets (one per key), with the mock's x-mock-* headers forwarded.
# Seen with 1.15.2 on node 20.20: every streamed request answers 500 ("TypeError: immutable" in
# its updateHeaders, appending to a fetch Response's headers), with or without the load-balance
# strategy and forwarded headers, so its SSE columns stay empty and its SSE failures are counted.
start_portkey() {
  local server=$NODE_PREFIX/node_modules/@portkey-ai/gateway/build/start-server.js
  command -v node >/dev/null || { skip "portkey: needs node and npm (apt-get install nodejs npm)"; return 1; }
  if [ ! -f "$server" ]; then
    log "npm install @portkey-ai/gateway into bench/.node"
    mkdir -p "$NODE_PREFIX"
    timeout 600 npm install --no-audit --no-fund --prefix "$NODE_PREFIX" @portkey-ai/gateway \
      > "$WORK/npm-portkey.log" 2>&1 || { tail -5 "$WORK/npm-portkey.log" >&2; skip "portkey: npm install failed"; return 1; }
  fi
  local dir=$WORK/portkey
  mkdir -p "$dir"
  (cd "$dir" && NODE_ENV=production exec taskset -c 0 node "$server" --port="$PORTKEY_PORT" --headless \
    > "$dir/out.log" 2>&1) &
  PROXY_PID=$!
  wait_http "http://127.0.0.1:$PORTKEY_PORT/" portkey "$dir/out.log" || { skip "portkey: did not start"; return 1; }
  VERSIONS+=" portkey $(awk -F'"' '/"version"/ {print $4; exit}' "$NODE_PREFIX/node_modules/@portkey-ai/gateway/package.json") (node $(node --version)),"
  local target='"provider":"openai","custom_host":"http://127.0.0.1:'$MOCK_PORT'/v1","weight":1'
  PROXY_HEADERS=(
    'x-portkey-config: {"strategy":{"mode":"loadbalance"},"forward_headers":["x-mock-chunks","x-mock-chunk-delay-ms"],"targets":[{'"$target"',"api_key":"'"${UPSTREAM_KEYS[0]}"'"},{'"$target"',"api_key":"'"${UPSTREAM_KEYS[1]}"'"}]}'
  )
  PROXY_URL=http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions
}

# ---------------------------------------------------------------- TensorZero

# TensorZero publishes its gateway as a Rust binary and a Docker image, neither reachable from
# here; its PyPI wheel (`tensorzero`) embeds the same gateway in a Python extension and can start
# it as a real HTTP server in-process (`_start_http_gateway`, what its patched OpenAI client
# uses). We run that: a Python process that only hosts the Rust gateway's own tokio runtime.
start_tensorzero() {
  "$VENV/bin/python" -c 'import tensorzero' 2>/dev/null || pip_install tensorzero tensorzero \
    || { skip "tensorzero: pip install failed"; return 1; }
  start_tensorzero_embedded
}

# Two functions of two weighted variants each, one variant per upstream key: `bench` for plain
# requests, `bench_sse` whose providers add the mock's x-mock-* stream controls (TensorZero does
# not forward client headers; extra_headers in its config is the documented way).
tensorzero_config() { # file
  local fn variant model key headers
  : > "$1"
  for fn in bench bench_sse; do
    headers=""
    [ "$fn" = bench_sse ] && headers='extra_headers = [{ name = "x-mock-chunks", value = "20" }, { name = "x-mock-chunk-delay-ms", value = "20" }]'
    for variant in a b; do
      model=${fn}_$variant
      [ $variant = a ] && key=MOCK_KEY_A || key=MOCK_KEY_B
      cat >> "$1" <<TOML
[models.$model]
routing = ["mock"]
[models.$model.providers.mock]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "http://127.0.0.1:$MOCK_PORT/v1/"
api_key_location = "env::$key"
$headers

TOML
    done
    cat >> "$1" <<TOML
[functions.$fn]
type = "chat"
[functions.$fn.variants.a]
type = "chat_completion"
model = "${fn}_a"
weight = 0.5
[functions.$fn.variants.b]
type = "chat_completion"
model = "${fn}_b"
weight = 0.5

TOML
  done
}

start_tensorzero_embedded() {
  local dir=$WORK/tensorzero base
  mkdir -p "$dir"
  tensorzero_config "$dir/tensorzero.toml"
  (cd "$dir" && MOCK_KEY_A=${UPSTREAM_KEYS[0]} MOCK_KEY_B=${UPSTREAM_KEYS[1]} exec taskset -c 0 \
    "$VENV/bin/python" "$ROOT/bench/tensorzero_gateway.py" tensorzero.toml 3600 > "$dir/out.log" 2>&1) &
  PROXY_PID=$!
  for _ in $(seq 1 300); do grep -q '^listening on' "$dir/out.log" 2>/dev/null && break; sleep 0.1; done
  base=$(awk '/^listening on/ {print $3}' "$dir/out.log")
  [ -n "$base" ] || { tail -5 "$dir/out.log" >&2; skip "tensorzero: embedded gateway did not start"; return 1; }
  VERSIONS+=" tensorzero $("$VENV/bin/pip" show tensorzero 2>/dev/null | awk '/^Version/ {print $2}') (wheel's embedded gateway, observability off),"
  PROXY_URL=$base/chat/completions
  PROXY_MODEL=tensorzero::function_name::bench
  PROXY_SSE_MODEL=tensorzero::function_name::bench_sse
}
