"""Mirroring answered requests to a shadow challenger, without ever waiting for it.

The production server answers first; then ``offer`` puts the request's body in a bounded queue
(``put_nowait``: microseconds, never a wait) and returns. A few background tasks on the server's
event loop send the queued bodies to the challenger with the same ``x-request-id`` (so the
challenger's prediction log carries production's request id) and the caller's Authorization
header, and read and discard the answers. Nothing the challenger does reaches production's answers:

- a challenger that is down: each send fails at once (connection refused) and is counted;
- a slow or hung challenger: each send is abandoned after ``timeout`` seconds (its connection
  closed), the queue fills, and what does not fit is dropped and counted, never buffered without
  bound (``max_requests`` bodies and ``max_bytes`` bytes at most).

The body is kept, not copied, from its arrival until it is sent: with a shadow, a big batch's body
stays in memory through its own prediction (the server without one drops it once parsed), and what
waits in the queue is bounded by ``max_bytes``. Only answered (200) requests are mirrored.

HTTP/1.1 by h11 (uvicorn's own protocol library, so the image needs nothing more) over asyncio
streams, one keep-alive connection per sender task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

logger = logging.getLogger(__name__)

URL_ENV = "PROVENFLOW_SHADOW_URL"
QUEUE_ENV = "PROVENFLOW_SHADOW_QUEUE"  # most copies waiting to be sent
TIMEOUT_ENV = "PROVENFLOW_SHADOW_TIMEOUT"  # seconds a copy may take to be answered
DEFAULT_MAX_REQUESTS = 1000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_SENDERS = 4
OUTCOMES = ("mirrored", "rejected", "failed", "timeout", "dropped")


@dataclass(frozen=True)
class _Item:
    path: str
    body: bytes | bytearray
    request_id: str
    authorization: str | None
    # The body's own headers (Content-Type, V2's Inference-Header-Content-Length), as the client sent them.
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


class Mirror:
    """Copies of answered requests for the challenger at ``url`` (``http://host:port``).

    Counts by outcome: ``mirrored`` (the challenger answered 2xx), ``rejected`` (it answered
    otherwise), ``failed`` (no connection or a broken one), ``timeout``, ``dropped`` (the queue was
    full: never sent)."""

    def __init__(
        self,
        url: str,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        senders: int = DEFAULT_SENDERS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            from provenflow.errors import ConfigError

            raise ConfigError(f"{URL_ENV}={url!r} is not an http://host:port URL of the challenger's server")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._senders = senders
        self._lock = threading.Lock()  # offer() runs on the event loop, counts are read by scrapes
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._queued_bytes = 0
        self._queue: asyncio.Queue[_Item] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def from_env(cls, url: str) -> Mirror:
        """With the queue size and timeout from PROVENFLOW_SHADOW_QUEUE / _TIMEOUT when set."""
        from provenflow.errors import ConfigError

        options: dict = {}
        for env, key, kind in ((QUEUE_ENV, "max_requests", int), (TIMEOUT_ENV, "timeout", float)):
            if value := os.environ.get(env):
                try:
                    options[key] = kind(value)
                except ValueError:
                    raise ConfigError(f"{env}={value!r} is not a number; unset it for the default") from None
                if options[key] <= 0:
                    raise ConfigError(f"{env}={value!r} must be more than 0; unset it for the default")
        return cls(url, **options)

    # -- the server's side ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self._max_requests)
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(self._senders)]

    async def stop(self) -> None:
        """Stop sending; what is still queued is not sent (a shadow is best effort)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def offer(
        self,
        path: str,
        body: bytes | bytearray,
        request_id: str,
        authorization: str | None,
        headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
    ) -> bool:
        """Queue a copy of an answered request; False (and counted as dropped) when the queue is full.
        Call it on the event loop: it never waits."""
        queue = self._queue
        if queue is None:
            return False
        with self._lock:
            if queue.full() or self._queued_bytes + len(body) > self._max_bytes:
                self._counts["dropped"] += 1
                return False
            self._queued_bytes += len(body)
        queue.put_nowait(_Item(self._prefix + path, body, request_id, authorization, headers))
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -- the senders -------------------------------------------------------------------------

    async def _sender(self) -> None:
        connection: _Connection | None = None
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            with self._lock:
                self._queued_bytes -= len(item.body)
            try:
                if connection is None:
                    connection = await asyncio.wait_for(
                        _Connection.open(self._host, self._port), self._timeout
                    )
                status = await asyncio.wait_for(connection.post(item, self._host), self._timeout)
                outcome = "mirrored" if 200 <= status < 300 else "rejected"
            except TimeoutError:
                outcome = "timeout"
            except Exception as exc:  # refused, reset, a broken answer: a sender must never die of it
                logger.debug("mirroring %s to %s failed: %s", item.request_id, self.url, exc)
                outcome = "failed"
            if outcome in ("timeout", "failed") and connection is not None:
                connection.close()  # in an unknown state: the next request opens a new one
                connection = None
            elif connection is not None and not connection.reusable:
                connection.close()
                connection = None
            with self._lock:
                self._counts[outcome] += 1


class _Connection:
    """One HTTP/1.1 keep-alive connection: POST a body, read the whole answer, discard it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._http = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @property
    def reusable(self) -> bool:
        return self._http.our_state is h11.IDLE and self._http.their_state is h11.IDLE

    async def post(self, item: _Item, host: str) -> int:
        headers = [
            ("host", host),
            *item.headers,
            ("content-length", str(len(item.body))),
            ("x-request-id", item.request_id),
        ]
        if item.authorization:
            headers.append(("authorization", item.authorization))
        http = self._http
        self._writer.write(http.send(h11.Request(method="POST", target=item.path, headers=headers)))
        self._writer.write(http.send(h11.Data(data=bytes(item.body))))
        self._writer.write(http.send(h11.EndOfMessage()))
        await self._writer.drain()
        status = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                data = await self._reader.read(65536)
                http.receive_data(data)  # b"" tells h11 the peer closed
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError("the challenger closed the connection")
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
        return status

    def close(self) -> None:
        self._writer.close()
