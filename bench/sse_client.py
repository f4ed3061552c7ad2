#!/usr/bin/env python3
"""Opens N concurrent OpenAI-style chat streams against one URL and reports how long the first
SSE event and the whole stream took, as the client saw them.

    bench/sse_client.py URL [--streams 100] [--rounds 3] [--chunks 20] [--chunk-delay-ms 20]
                            [--key sk-bench-client] [--model gpt-4o-mini] [--timeout 30] [--header 'Name: value']...

Prints one line of `key=value` pairs (microseconds), for bench/compare.sh to read:

    ok=300 failed=0 ttfb_p50=812 ttfb_p99=2411 total_p50=382100 total_p99=385900 gap_p99=21400

- ttfb: from just before the request is written to the first byte of the first `data:` event
  (not the response head: a proxy that flushes its head early but buffers events would hide its
  cost behind a head-only figure).
- total: from the same start to the `data: [DONE]` event.
- gap: the largest pause between two reads of the same stream; the mock waits
  `chunk-delay-ms` between events, so anything above that is what the path in between added.

Standard library only (asyncio raw sockets), plain HTTP/1.1 to 127.0.0.1: this is a loopback
benchmark client, not an HTTP library. It does not decode chunked framing; it looks for the
event markers in the raw bytes, which the framing cannot split into false positives because the
markers are searched across the whole buffer received so far.
"""

import argparse
import asyncio
import math
import sys
import time
import urllib.parse

FIRST_EVENT = b"data: "
DONE = b"data: [DONE]"


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted, non-empty list."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def request_bytes(url, key, model, chunks, chunk_delay_ms, headers):
    body = (
        '{"model":"%s","stream":true,"messages":[{"role":"user","content":"hi"}]}' % model
    ).encode()
    head = (
        f"POST {url.path or '/'} HTTP/1.1\r\n"
        f"Host: {url.hostname}:{url.port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"x-mock-chunks: {chunks}\r\n"
        f"x-mock-chunk-delay-ms: {chunk_delay_ms}\r\n"
        + "".join(f"{header}\r\n" for header in headers)
        + f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def one_stream(url, payload, timeout):
    """Returns (ttfb_s, total_s, max_gap_s), or raises on a failed or non-200 stream."""
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        start = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        received = bytearray()
        head_end = -1
        ttfb = None
        last_read = start
        max_gap = 0.0
        deadline = start + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"stream not done after {timeout}s")
            data = await asyncio.wait_for(reader.read(65536), remaining)
            now = time.perf_counter()
            if not data:
                raise ConnectionError(f"connection closed before [DONE]: {bytes(received[:200])!r}")
            if ttfb is not None:
                max_gap = max(max_gap, now - last_read)
            last_read = now
            received += data
            if head_end < 0:
                head_end = received.find(b"\r\n\r\n")
                if head_end >= 0 and not received.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(f"not 200: {bytes(received[:200])!r}")
            if head_end >= 0 and ttfb is None and received.find(FIRST_EVENT, head_end) >= 0:
                ttfb = now - start
            if head_end >= 0 and received.find(DONE, head_end) >= 0:
                return ttfb, now - start, max_gap
    finally:
        writer.close()


async def run(args):
    url = urllib.parse.urlsplit(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"{args.url}: this client only targets loopback addresses")
    payload = request_bytes(url, args.key, args.model, args.chunks, args.chunk_delay_ms, args.header)
    ttfbs, totals, gaps, failures = [], [], [], []
    for _ in range(args.rounds):
        results = await asyncio.gather(
            *(one_stream(url, payload, args.timeout) for _ in range(args.streams)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                failures.append(result)
            else:
                ttfbs.append(result[0])
                totals.append(result[1])
                gaps.append(result[2])
    for failure in failures[:3]:
        print(f"sse_client: {type(failure).__name__}: {failure}", file=sys.stderr)
    fields = {"ok": len(totals), "failed": len(failures)}
    if totals:
        ttfbs.sort(), totals.sort(), gaps.sort()
        micros = lambda seconds: int(seconds * 1e6)
        fields.update(
            ttfb_p50=micros(percentile(ttfbs, 0.50)),
            ttfb_p99=micros(percentile(ttfbs, 0.99)),
            total_p50=micros(percentile(totals, 0.50)),
            total_p99=micros(percentile(totals, 0.99)),
            gap_p99=micros(percentile(gaps, 0.99)),
        )
    print(" ".join(f"{name}={value}" for name, value in fields.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay-ms", type=int, default=20)
    parser.add_argument("--key", default="sk-bench-client")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
