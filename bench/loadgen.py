"""An open-loop HTTP load generator in its own process: fixed rate, latency from the scheduled send time.

    python bench/loadgen.py --port P --path /predict --body-file F --rate 500 --seconds 60
    python bench/loadgen.py --null-server PORT       # a trivial HTTP server, for the generator's own floor

Prints one JSON line: requests, errors, p50/p99/p99.9/max ms from the *scheduled* send time (a
stalled server cannot hide behind a generator that waits for it: coordinated omission), the same from
the actual send, how late sends left (timer granularity and the generator's own pauses), and the
generator's CPU time per request. One asyncio loop (uvloop when installed) with raw protocols and
pre-built request bytes: ~25-40 µs of CPU per request, so 500 req/s costs ~2% of one core. A request
due while every connection is busy opens another (up to ``--connections``), then waits for one.

Measured floor against ``--null-server`` on the same 2 cores: see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import resource
import time

try:
    import uvloop
except ImportError:  # pragma: no cover - the project venv has it
    uvloop = None


class _Conn(asyncio.Protocol):
    def __init__(self, done: collections.abc.Callable[[_Conn, int], None]) -> None:
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[: end + 4 + length]
        self.done(self, status)


async def generate(
    host: str, port: int, request: bytes, rate: float, seconds: float, connections: int
) -> dict:
    loop = asyncio.get_running_loop()
    idle: list[_Conn] = []
    waiting: collections.deque[float] = (
        collections.deque()
    )  # scheduled times of requests with no free connection
    inflight: dict[_Conn, tuple[float, float]] = {}
    latencies, from_send, lags = [], [], []
    errors = 0
    opened = 0
    finished = loop.create_future()
    total = int(rate * seconds)
    count = 0

    def send(conn: _Conn, scheduled: float) -> None:
        now = time.perf_counter()
        inflight[conn] = (scheduled, now)
        conn.transport.write(request)

    def done(conn: _Conn, status: int) -> None:
        nonlocal errors, count
        now = time.perf_counter()
        scheduled, sent = inflight.pop(conn)
        latencies.append(now - scheduled)
        from_send.append(now - sent)
        errors += status != 200
        count += 1
        if waiting:
            send(conn, waiting.popleft())
        else:
            idle.append(conn)
        if count == total and not finished.done():
            finished.set_result(None)

    async def connect() -> _Conn:
        nonlocal opened
        opened += 1
        _, conn = await loop.create_connection(lambda: _Conn(done), host, port)
        await conn.ready
        return conn

    for _ in range(min(4, connections)):
        idle.append(await connect())
    gc.disable()  # the generator's own pauses must not count against the server
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - scheduled)
        while idle and idle[-1].lost:
            idle.pop()
        if idle:
            send(idle.pop(), scheduled)
        elif opened < connections:
            conn = await connect()
            send(conn, scheduled)
        else:
            waiting.append(scheduled)
    await asyncio.wait_for(finished, timeout=60)
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "requests": len(latencies),
        "errors": errors,
        "rate": rate,
        "achieved_per_s": len(latencies) / elapsed,
        "connections_opened": opened,
        **_percentiles("", latencies),
        **_percentiles("send_", from_send),
        **_percentiles("lag_", lags),
        "generator_cpu_us_per_request": cpu / max(1, len(latencies)) * 1e6,
        "generator_cpu_share": cpu / elapsed,
    }


def _percentiles(prefix: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    return {
        f"{prefix}p50_ms": at(0.50),
        f"{prefix}p99_ms": at(0.99),
        f"{prefix}p999_ms": at(0.999),
        f"{prefix}max_ms": ordered[-1] * 1e3,
    }


class _NullServer(asyncio.Protocol):
    """Answers every request with a fixed small JSON body: what the generator measures with no server work."""

    BODY = b'{"predictions":["Adelie"]}'
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(BODY)).encode()
        + b"\r\n\r\n"
        + BODY
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            self.transport.write(self.RESPONSE)


async def null_server(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_NullServer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--body-file", help="the request body (JSON)")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64, help="most connections opened")
    parser.add_argument("--null-server", type=int, metavar="PORT", help="run the trivial server instead")
    args = parser.parse_args()
    run = uvloop.run if uvloop else asyncio.run
    if args.null_server:
        run(null_server(args.null_server))
        return
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    request = build_request(args.host, args.port, args.path, body)
    result = run(generate(args.host, args.port, request, args.rate, args.seconds, args.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
