#!/usr/bin/env python3
"""Hosts TensorZero's gateway from its PyPI wheel as an HTTP server, for bench/compare.sh.

    tensorzero_gateway.py CONFIG.toml SECONDS

The wheel embeds the Rust gateway in a Python extension; `_start_http_gateway` (what its patched
OpenAI client uses) starts it on a free 127.0.0.1 port in its own tokio runtime. This process
only prints `listening on BASE_URL` and then sleeps SECONDS (bounded, so a forgotten run ends
itself); the requests never touch Python. No ClickHouse or Postgres: observability is off.
"""

import sys
import time

import tensorzero


def main():
    config_file, seconds = sys.argv[1], float(sys.argv[2])
    gateway = tensorzero._start_http_gateway(
        config_file=config_file,
        clickhouse_url=None,
        postgres_url=None,
        valkey_url=None,
        async_setup=False,
    )
    print(f"listening on {gateway.base_url}", flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
