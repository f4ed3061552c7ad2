# Shell functions shared by the benchmark scripts (sourced, not run): installing what a script
# needs, process measurements from /proc, waiting for a port to answer, and nginx as a
# reference proxy.

# ---------------------------------------------------------------- tools

# Installs a missing command from Debian's archive, trying the packages in turn (needs root).
# A script calls it for each tool it runs, so that a fresh machine needs no step of its own.
apt_install() { # command package...
  local cmd=$1 pkg out
  shift
  command -v "$cmd" >/dev/null && return 0
  echo "== installing $cmd (apt-get install $1)" >&2
  out=$(mktemp)
  apt-get update -qq > "$out" 2>&1 || true
  for pkg in "$@"; do
    if apt-get install -y -qq "$pkg" >> "$out" 2>&1 && command -v "$cmd" >/dev/null; then
      rm -f "$out"
      return 0
    fi
  done
  echo "installing $cmd failed (apt-get needs root and Debian's archive):" >&2
  tail -5 "$out" >&2
  rm -f "$out"
  return 1
}

# ---------------------------------------------------------------- process measurements

# The root PID and all its descendants (nginx workers, uvicorn workers, node children).
tree_pids() {
  local pending=("$1") pid children all=()
  for _ in $(seq 1 64); do # bounded: no proxy here has more than a handful of levels
    [ ${#pending[@]} -eq 0 ] && break
    pid=${pending[0]}; pending=("${pending[@]:1}")
    [ -d /proc/$pid ] || continue
    all+=("$pid")
    children=$(pgrep -P "$pid" 2>/dev/null || true)
    for c in $children; do pending+=("$c"); done
  done
  echo "${all[@]}"
}
# utime+stime in clock ticks, summed over the tree. Fields 14 and 15 of stat; the command name
# (field 2) may hold spaces, so count from after its closing parenthesis.
cpu_ticks() {
  local total=0 pid
  for pid in $(tree_pids "$1"); do
    total=$((total + $(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo $total
}
# VmRSS or VmHWM in KiB, summed over the tree.
mem_kib() { # root-pid VmRSS|VmHWM
  local total=0 pid v
  for pid in $(tree_pids "$1"); do
    v=$(awk -v f="$2:" '$1==f {print $2}' /proc/$pid/status 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo $total
}

wait_http() { # url what log-file
  for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "$2 did not answer on $1 within 30 s; its log:" >&2; tail -20 "$3" >&2 || true; return 1
}

# ---------------------------------------------------------------- gpt-load

# The benchmark group on a running gpt-load: `bench`, one upstream (the mock), client key
# sk-bench-client, two upstream keys. Returns non-zero (after saying which step) on failure.
add_bench_group() { # gateway-port mock-port admin-key
  local api="http://127.0.0.1:$1"
  curl -sf "$api/api/groups" -H "Authorization: Bearer $3" -o /dev/null -d '{"name":"bench","channel_type":"openai","test_model":"m","upstreams":[{"url":"http://127.0.0.1:'"$2"'","weight":1}],"proxy_keys":"sk-bench-client"}' \
    || { echo "gpt-load: creating the group failed" >&2; return 1; }
  curl -sf "$api/api/keys/add-multiple" -H "Authorization: Bearer $3" -o /dev/null \
    -d '{"group_id":1,"keys_text":"sk-upstream-aaaaaaaa1\nsk-upstream-bbbbbbbb2"}' \
    || { echo "gpt-load: adding the keys failed" >&2; return 1; }
}

# The wrk script every throughput run sends: a small chat completion with the bench group's
# client key, as a POST.
write_chat_lua() { # file
  cat > "$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-client"
LUA
}

# ---------------------------------------------------------------- nginx

# The scripts start nginx in the foreground with their own config; the system service that
# Debian's package may start is not used.
install_nginx() { apt_install nginx nginx-light nginx; }

# The reference nginx config, for a foreground nginx with its own prefix `dir`: upstream
# keepalive, two upstream keys alternated by split_clients (as a gateway with a two-key pool
# would), access log on, proxy_buffering off.
write_nginx_conf() { # dir listen-port mock-port workers key1 key2
  local dir=$1
  mkdir -p "$dir/tmp"
  cat > "$dir/nginx.conf" <<NGINX
daemon off;
user root;
worker_processes $4;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log $dir/access.log;
  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
  split_clients "\${msec}\${connection}\${connection_requests}" \$upstream_key {
    50% "Bearer $5";
    *   "Bearer $6";
  }
  upstream mock { server 127.0.0.1:$3; keepalive 128; }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization \$upstream_key;
      proxy_buffering off;
    }
  }
}
NGINX
}
