"""The soak benchmark's load generator: a lean HTTP/1.1 client on asyncio, in its own process.

``bench/soak_bench.py`` runs it as a subprocess::

    python bench/soak_load.py MIX.json OUT --base http://127.0.0.1:PORT \\
        (--closed SECONDS | --rate R --seconds S) --connections C

``MIX.json`` (written by :func:`soak_mix.write_mix`) lists the request kinds: a name, a group
(``valid``, ``invalid``, ``oversized``), a path, a content type, a weight and a few prepared
bodies. Each request picks its kind by weight and one of that kind's bodies at random (seeded).

- **Open loop** (``--rate``): request *i* is due at ``start + i / rate`` whatever the server
  does; a due request is sent at once on a free connection of the pool (at most
  ``--connections``) or waits for one. Its latency counts from when it was *due*, so a slow
  server cannot hide its queue by slowing the client down (no coordinated omission).
- **Closed loop** (``--closed``): ``--connections`` workers each send their next request as
  soon as the last one is answered; the completions per second are the server's capacity
  for this mix.

The client is :class:`Pool`: keep-alive connections writing prepared request bytes and
reading the status line, the headers and a ``Content-Length`` or chunked body, on uvloop when
installed. Profiled, its Python work is a small part of its CPU, the rest being the socket
calls any client makes; ``soak_bench.py`` prints the cores it used and how late it sent.

It writes ``OUT.npz`` (per request: kind, due time, latency, status, ``-1`` for a connection
error and ``-2`` for a timeout, and how late the client sent it) and ``OUT.json`` (start
time, the kinds, its own CPU time) and prints nothing on success.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

#: ``status`` of a request that got no HTTP answer.
CONNECTION_ERROR = -1
TIMEOUT = -2
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Pool:
    """At most ``size`` keep-alive HTTP/1.1 connections to ``host:port``, opened on demand."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.free: list[Connection] = []
        self.slots = asyncio.Semaphore(size)

    async def post(self, request: bytes) -> int:
        """Send ``request`` (complete, head and body) and return the answer's status."""
        async with self.slots:
            # The most recently used first; one the server closed while idle is dropped.
            while self.free and self.free[-1][0].at_eof():
                self.free.pop()[1].close()
            if self.free:
                connection = self.free.pop()
            else:
                connection = await asyncio.open_connection(self.host, self.port)
            reader, writer = connection
            try:
                writer.write(request)
                # Refused mid-body (a 413 closes the connection): the answer is still there.
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                status, keep = await _answer(reader)
            except BaseException:
                writer.close()
                raise
            if keep:
                self.free.append(connection)
            else:
                writer.close()
            return status

    def close(self) -> None:
        """Close the idle connections."""
        for _, writer in self.free:
            writer.close()
        self.free.clear()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response: (status, whether the connection stays open)."""
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep, chunked = 0, True, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value != b"close"
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
    if not chunked:
        await reader.readexactly(length)
        return status, keep
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        await reader.readexactly(size + 2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailers
    return status, keep


def _request(path: str, content_type: str, body: str, host: str) -> bytes:
    """A complete HTTP/1.1 POST."""
    data = body.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode("latin-1") + data


class Load:
    """One run's requests and what became of them."""

    def __init__(self, mix: dict[str, Any], count: int, seed: int, host: str, timeout: float):
        self.kinds = mix["kinds"]
        self.timeout = timeout
        self.requests = [
            [_request(kind["path"], kind["content_type"], body, host) for body in kind["bodies"]]
            for kind in self.kinds
        ]
        weights = np.array([kind["weight"] for kind in self.kinds], dtype=float)
        rng = np.random.default_rng(seed)
        self.kind = rng.choice(len(self.kinds), size=count, p=weights / weights.sum())
        self.body = rng.integers(0, 1 << 30, size=count)
        self.due = np.full(count, np.nan)
        self.latency = np.full(count, np.nan)
        self.status = np.zeros(count, dtype=np.int16)
        self.late = np.full(count, np.nan)  # how long after it was due it was sent (s)

    async def send(self, pool: Pool, i: int, due: float) -> None:
        """Send request ``i`` (due at loop time ``due``) and record its answer."""
        requests = self.requests[int(self.kind[i])]
        loop = asyncio.get_running_loop()
        self.late[i] = loop.time() - due
        self.due[i] = due
        try:
            async with asyncio.timeout(self.timeout):
                self.status[i] = await pool.post(requests[int(self.body[i]) % len(requests)])
        except TimeoutError:
            self.status[i] = TIMEOUT
        except (OSError, EOFError, ValueError, IndexError, asyncio.LimitOverrunError):
            self.status[i] = CONNECTION_ERROR  # reset, closed early, or not HTTP
        self.latency[i] = loop.time() - due

    def used(self, count: int) -> dict[str, np.ndarray]:
        """The first ``count`` requests' records."""
        return {
            "kind": self.kind[:count],
            "due": self.due[:count],
            "latency": self.latency[:count],
            "status": self.status[:count],
            "late": self.late[:count],
        }


async def open_loop(load: Load, pool: Pool, rate: float, seconds: float) -> tuple[int, float]:
    """Send ``rate`` requests per second for ``seconds``; (requests sent, start loop time)."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time() + 0.05
    i = 0
    while i < count:
        now = loop.time()
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        while i < count and start + i / rate <= now:
            task = asyncio.create_task(load.send(pool, i, start + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
    if tasks:
        await asyncio.wait(tasks)
    return count, start


async def closed_loop(
    load: Load, pool: Pool, connections: int, seconds: float
) -> tuple[int, float]:
    """``connections`` workers sending back to back for ``seconds``; (requests, start)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    counter = iter(range(len(load.kind)))

    async def worker() -> None:
        while loop.time() < end:
            i = next(counter, None)
            if i is None:
                return
            await load.send(pool, i, loop.time())

    await asyncio.gather(*(worker() for _ in range(connections)))
    return int(np.count_nonzero(~np.isnan(load.latency))), start


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Drive the server as ``args`` say; the run's summary (the records go to ``args.out``)."""
    mix = json.loads(Path(args.mix).read_text(encoding="utf-8"))
    seconds = args.closed if args.closed else args.seconds
    # Closed loop: room for far more requests than any server here answers.
    count = int(args.rate * seconds) if not args.closed else int(seconds * 20_000) + 1
    base = urlsplit(args.base)
    host, port = base.hostname or "127.0.0.1", base.port or 80
    load = Load(mix, count, args.seed, base.netloc, args.timeout)
    pool = Pool(host, port, args.connections)
    loop = asyncio.get_running_loop()
    wall, started = time.time(), loop.time()
    if args.closed:
        sent, start = await closed_loop(load, pool, args.connections, seconds)
    else:
        sent, start = await open_loop(load, pool, args.rate, seconds)
    finished = loop.time()
    pool.close()
    records = load.used(sent)
    records["due"] = records["due"] - start
    np.savez(args.out.with_suffix(".npz"), **records)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "start_wall": wall + (start - started),
        "seconds": finished - start,  # the last answer included
        "planned_s": seconds,
        "sent": sent,
        "kinds": [{k: v for k, v in kind.items() if k != "bodies"} for kind in mix["kinds"]],
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, write ``OUT.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mix", type=Path, help="the request kinds (JSON, see soak_mix.py)")
    parser.add_argument("out", type=Path, help="OUT.npz and OUT.json are written")
    parser.add_argument("--base", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    parser.add_argument("--seconds", type=float, default=0.0, help="open loop: how long")
    parser.add_argument("--closed", type=float, default=0.0, help="closed loop: how long (s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request (s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.closed and (args.rate <= 0 or args.seconds <= 0):
        parser.error("give --closed SECONDS, or --rate and --seconds")
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, at a higher CPU cost per request
        summary = asyncio.run(run(args))
    else:
        summary = uvloop.run(run(args))
    args.out.with_suffix(".json").write_text(json.dumps(summary), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
