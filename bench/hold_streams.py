#!/usr/bin/env python3
"""Opens N concurrent OpenAI-style chat streams against one URL, reads each one's response
head and first SSE event, then holds them all open and idle until told to close them.

    bench/hold_streams.py URL [--streams 10000] [--key sk-bench-client] [--model gpt-4o-mini]
                              [--opening 200] [--timeout 60]

For bench/scale.sh, which runs it as a coprocess and talks to it line by line:

1. once every stream is open or has failed, it prints one line of `key=value` pairs:

       opened=9998 failed=2 open_s=3.41 first_event_p50_ms=1.20 first_event_p99_ms=25.31 errors=ConnectionResetError:2

   (`errors` is `-` when there were none; failed streams were closed at once.)
2. it then waits for a line (or end of input) on stdin; meanwhile the caller measures the
   server holding the streams;
3. it closes every stream and prints `dropped=N closed=M`: `dropped` counts streams the server
   ended (closed or sent more data to) while they were held, which it should not have done since
   the mock was told to stay silent.

The upstream is expected to be bench/mock-upstream: each request asks it (`x-mock-chunks: 2`,
`x-mock-chunk-delay-ms: 3600000`) to send the head and the first event, then nothing for an hour.

Standard library only (asyncio raw sockets), plain HTTP/1.1 to 127.0.0.1. Raise `ulimit -n` to
more than N before starting it: each stream is one socket.
"""

import argparse
import asyncio
import sys
import time
import urllib.parse
from collections import Counter

import sse_client  # bench/, next to this script

FIRST_EVENT = b"data: "
# What the mock is asked for: the first event, then a second one an hour later.
HOLD_MS = 3_600_000


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list; 0 when it is empty."""
    return sse_client.percentile(sorted_values, fraction) if sorted_values else 0.0


def request_bytes(url, key, model):
    """A stream the mock holds open after its first event: 2 chunks, HOLD_MS apart."""
    return sse_client.request_bytes(url, key, model, 2, HOLD_MS, [])


async def open_stream(url, payload, timeout):
    """Opens one stream up to its first event; returns (reader, writer, seconds to first event)."""
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        start = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        received = bytearray()
        deadline = start + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no first event after {timeout}s")
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if not data:
                raise ConnectionError(f"closed before the first event: {bytes(received[:120])!r}")
            received += data
            head_end = received.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            status_line = bytes(received[: received.find(b"\r\n")])
            if b" 200 " not in status_line + b" ":
                raise ConnectionError(f"status {status_line.decode(errors='replace')}")
            if received.find(FIRST_EVENT, head_end) >= 0:
                return reader, writer, time.perf_counter() - start
    except BaseException:
        writer.close()
        raise


async def watch(reader, dropped):
    """Waits on a held stream; any data or end of stream while held means the server dropped it."""
    try:
        await reader.read(1)
    except (ConnectionError, OSError):
        pass
    dropped.add(id(reader))


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--key", default="sk-bench-client")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument(
        "--opening", type=int, default=200,
        help="streams being opened at once (keeps the listen backlog from overflowing)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to the first event")
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    payload = request_bytes(url, args.key, args.model)

    gate = asyncio.Semaphore(args.opening)
    held, first_events, errors = [], [], Counter()

    async def one():
        async with gate:
            try:
                reader, writer, seconds = await open_stream(url, payload, args.timeout)
            except Exception as e:  # every failure is counted and reported, none is fatal
                errors[type(e).__name__] += 1
                if sum(errors.values()) <= 3:
                    print(f"stream failed: {type(e).__name__}: {e}", file=sys.stderr)
                return
        held.append((reader, writer))
        first_events.append(seconds)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(args.streams)))
    open_s = time.perf_counter() - start

    dropped = set()
    watchers = [asyncio.ensure_future(watch(reader, dropped)) for reader, _ in held]
    first_events.sort()
    summary = ",".join(f"{name}:{count}" for name, count in errors.most_common()) or "-"
    print(
        f"opened={len(held)} failed={sum(errors.values())} open_s={open_s:.2f} "
        f"first_event_p50_ms={percentile(first_events, 0.5) * 1000:.2f} "
        f"first_event_p99_ms={percentile(first_events, 0.99) * 1000:.2f} errors={summary}",
        flush=True,
    )

    # Hold until the caller has measured: a line or end of input on stdin.
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    await stdin.readline()

    held_dropped = len(dropped)
    for watcher in watchers:
        watcher.cancel()
    for _, writer in held:
        writer.close()
    await asyncio.gather(*watchers, return_exceptions=True)
    print(f"dropped={held_dropped} closed={len(held)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
