#!/usr/bin/env python3
"""Sends exactly N chat-completion POSTs through gpt-load's /proxy/bench route over CONNS
keep-alive connections, and prints how many came back 200. For a profiler that needs a fixed
amount of work rather than a duration (bench/shard-instructions.sh).

    bench/fixed_requests.py PORT N CONNS
"""
import asyncio, sys
port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
req = (b"POST /proxy/bench/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
       b"Authorization: Bearer sk-bench-client\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
done = 0; bad = 0
async def worker(count):
    global done, bad
    r, w = await asyncio.open_connection('127.0.0.1', port)
    for _ in range(count):
        w.write(req); await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"): bad += 1
        cl = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"): cl = int(line.split(b":")[1])
        await r.readexactly(cl)
        done += 1
    w.close()
async def main():
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    await asyncio.gather(*(worker(c) for c in per))
asyncio.run(main())
print(f"done={done} bad={bad}")
