"""Prefect's own server, telling its clients when to retry a write that met another one:

    python -m provenflow.platform.prefect_server server start --host 127.0.0.1 --port 4200

A SQLite-backed Prefect server answers a transaction that read, then found another writer committed
before its own write (SQLite's "database is locked", a busy snapshot: no busy timeout waits it out)
with HTTP 503 and no Retry-After; Prefect's client then sleeps 2 s before trying again (2 ** tries).
Back-to-back flow runs meet the server still recording the last run's task states: measured on this
project's server, an empty flow run took 0.2 s or 2.2–2.5 s, at random (6 of 16 runs of a 4-flow
loop paid the 2 s; pyinstrument: the whole wait a sleep in the client's retry of create_flow_run).
This server answers such a 503 with Retry-After: 0.1 s (a retry a tenth of a second later finds
the other write committed). Not more than QUICK times in REPEAT seconds for one client connection
and route: a conflict that keeps coming gets no header, and the client's own backoff (2, 4, 8 … s,
5 tries) as before, so a lasting storm is not retried into failure any faster than Prefect would.
Everything else is ``prefect server start`` as is (this process runs Prefect's CLI).
"""

from __future__ import annotations

import sys
import time

QUICK_WAIT = 0.1  # seconds
QUICK, REPEAT = 2, 2.0  # at most QUICK quick retries per connection and route in REPEAT seconds
_quick: dict[tuple, list[float]] = {}


def retry_after(key: tuple, now: float) -> float | None:
    """The wait to ask for after a conflict at NOW on KEY (client, method, route): QUICK_WAIT, or
    None (the client's own backoff) when KEY already had QUICK quick retries in the last REPEAT s."""
    if len(_quick) > 1024:  # keys of gone clients
        for old in [k for k, times in _quick.items() if now - times[-1] > REPEAT]:
            del _quick[old]
    times = [t for t in _quick.get(key, []) if now - t <= REPEAT]
    if len(times) >= QUICK:
        _quick[key] = times
        return None
    _quick[key] = [*times, now]
    return QUICK_WAIT


def install() -> bool:
    """Wrap Prefect's handler of the server's unexpected errors (it answers the retryable ones 503)
    before Prefect builds its app; False when this Prefect has no such handler (then nothing changes)."""
    try:
        from prefect.server.api import server
    except ImportError:
        return False
    handler = getattr(server, "custom_internal_exception_handler", None)
    if handler is None:
        return False

    async def with_retry_after(request, exc):
        response = await handler(request, exc)
        if response.status_code == 503 and "retry-after" not in response.headers:
            route = getattr(request.scope.get("route"), "path", request.url.path)
            wait = retry_after((request.client, request.method, route), time.monotonic())
            if wait is not None:
                response.headers["Retry-After"] = f"{wait:.2f}"
        return response

    server.custom_internal_exception_handler = with_retry_after
    return True


def main(argv: list[str]) -> None:
    install()
    from prefect.cli import app

    sys.argv = ["prefect", *argv]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
