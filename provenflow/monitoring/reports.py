"""Stored HTML reports (Evidently drift reports), served read-only over HTTP so the drift artifact in
the Prefect UI opens them with one click.

Only objects the ledger records as reports are served (``drift_reports.report_hash``), never any
other object of the store; each is checked against its BLAKE3 name before it is sent, and sent as
``text/html`` with ``nosniff``. GET and HEAD only. The server binds the Prefect server's host
(127.0.0.1 by default) on its own port (the Prefect server's + 1 unless PROVENFLOW_REPORTS_PORT),
and is started and stopped with it (``provenflow server start``/``stop``).

    python -m provenflow.monitoring.reports          # in the foreground
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from provenflow.digest import Digest
from provenflow.platform import pidfile
from provenflow.platform.probe import answers_ok
from provenflow.settings import get_settings

_PATH = re.compile(r"^/reports/(?P<hex>[0-9a-f]{64})\.html$")


def address() -> tuple[str, int]:
    s = get_settings()
    return s.server_host, s.reports_port or s.resolved_server_port + 1


def report_url(digest: Digest | str) -> str:
    """Where the report with this BLAKE3 digest opens in a browser."""
    host, port = address()
    hexdigest = digest.hex if isinstance(digest, Digest) else str(digest)
    return f"http://{host}:{port}/reports/{hexdigest}.html"


def _is_report(workspace, hexdigest: str) -> bool:
    from sqlalchemy import select

    from provenflow.ledger import models as m

    with workspace.ledger.reader() as session:
        return (
            session.scalar(select(m.DriftReport.id).where(m.DriftReport.report_hash == hexdigest).limit(1))
            is not None
        )


class _Handler(BaseHTTPRequestHandler):
    workspace = None  # set by make_server
    server_version = "provenflow-reports"

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        match = _PATH.match(self.path.split("?", 1)[0])
        if self.path in ("/", "/health"):
            return self._send(HTTPStatus.OK, b"provenflow reports\n", "text/plain; charset=utf-8", body)
        if match is None or not _is_report(self.workspace, match["hex"]):
            return self._send(HTTPStatus.NOT_FOUND, b"no such report\n", "text/plain; charset=utf-8", body)
        try:
            data = self.workspace.store.read_bytes(Digest(match["hex"]))  # verified against its hash
        except Exception as exc:  # missing or corrupt object: say so, keep serving
            message = f"the report could not be read: {type(exc).__name__}\n".encode()
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, message, "text/plain; charset=utf-8", body)
        self._send(HTTPStatus.OK, data, "text/html; charset=utf-8", body, immutable=True)

    def _send(
        self, status: HTTPStatus, data: bytes, content_type: str, body: bool, immutable: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "public, max-age=31536000, immutable" if immutable else "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_POST(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain; charset=utf-8", True)

    do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args) -> None:
        pass  # no access log on the terminal


def make_server(workspace, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"workspace": workspace})
    return ThreadingHTTPServer((host, port), handler)


def _pid_file() -> Path:
    return get_settings().ensure_home() / "reports.pid"


def launch() -> subprocess.Popen | None:
    """Start the report server in the background unless one answers, without waiting for it to
    answer (``start`` waits); None when one answers already."""
    host, port = address()
    if answers_ok(f"http://{host}:{port}/health", 0.5):
        return None
    log = get_settings().ensure_home() / "reports.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "provenflow.monitoring.reports"], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    pidfile.record(_pid_file(), process)
    return process


def start(timeout: float = 20.0, launched: subprocess.Popen | None = None) -> str:
    """Start the report server in the background unless one answers; returns its base URL once it
    answers. LAUNCHED: the process a ``launch()`` call started already (it starts while the Prefect
    server does)."""
    host, port = address()
    base = f"http://{host}:{port}"
    process = launched or launch()
    if process is None:
        return base
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if answers_ok(f"{base}/health", 0.5):
            return base
        time.sleep(0.05)
    if answers_ok(f"{base}/health", 0.5):  # LAUNCHED lost the port to one started meanwhile
        return base
    from provenflow.errors import ConfigError, last_logged_line

    log = get_settings().ensure_home() / "reports.log"
    if process.poll() is None:
        raise ConfigError(f"the report server did not answer on {base} within {timeout:.0f} s; see {log}")
    reason = last_logged_line(log)
    if "Address already in use" in reason:
        reason = f"port {port} is taken by another program (set PROVENFLOW_REPORTS_PORT to a free one)"
    raise ConfigError(
        f"the report server exited without answering on {base}: {reason or 'no output'}; see {log}"
    )


def stop() -> None:
    pid_file = _pid_file()
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if b"provenflow.monitoring.reports" in cmdline:  # a stale pid file may name someone else's process now
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)


def main() -> None:
    from provenflow.workspace import Workspace

    host, port = address()
    server = make_server(Workspace.default(), host, port)
    with contextlib.suppress(KeyboardInterrupt):  # SIGTERM's default ends it: it holds no state
        server.serve_forever()


if __name__ == "__main__":
    main()
