"""The read-only report server over real HTTP: only recorded reports, as HTML, nothing else."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from provenflow.ledger import models as m
from provenflow.monitoring.reports import make_server, report_url
from provenflow.workspace import Workspace, close_all


@pytest.fixture
def served(tmp_path):
    ws = Workspace.open(f"sqlite:///{tmp_path / 'ledger.db'}", str(tmp_path / "store"))
    report = ws.store.put_bytes(b"<html><body>drift report</body></html>").digest
    other = ws.store.put_bytes(b"a model's bytes, not a report").digest
    now = datetime.now(UTC)
    with ws.ledger.transaction() as s:
        mv = m.ModelVersion(
            name="m", version=1, hash=other.hex, uri="x", format="skops", size=1, created_at=now
        )
        s.add(mv)
        s.flush()
        s.add(m.DriftReport(model_version_id=mv.id, window_end=now, rows=1, status="drift", drift=True,
                            features={}, report_hash=report.hex, created_at=now))  # fmt: skip
    server = make_server(ws, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", report, other, ws
    server.shutdown()
    close_all()


def _get(url: str, method: str = "GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_serves_recorded_reports_only(served):
    base, report, other, _ = served
    status, headers, body = _get(f"{base}/reports/{report.hex}.html")
    assert status == 200 and body == b"<html><body>drift report</body></html>"
    assert (
        headers["Content-Type"] == "text/html; charset=utf-8"
        and headers["X-Content-Type-Options"] == "nosniff"
    )
    # An object of the store that is not a recorded report, a bad name, a path trick, a write.
    assert _get(f"{base}/reports/{other.hex}.html")[0] == 404
    assert _get(f"{base}/reports/{report.hex}")[0] == 404
    assert _get(f"{base}/reports/../ledger.db")[0] == 404
    assert _get(f"{base}/reports/{report.hex}.html", "DELETE")[0] == 405
    assert _get(f"{base}/reports/{report.hex}.html", "HEAD")[0] == 200


def test_a_tampered_report_is_not_served(served):
    base, report, _, ws = served
    path = ws.store.path(report)
    with open(path, "wb") as f:
        f.write(b"<script>evil</script>")
    status, _, body = _get(f"{base}/reports/{report.hex}.html")
    assert status == 500 and b"evil" not in body


def test_report_url_uses_the_settings(monkeypatch):
    from provenflow.settings import get_settings

    monkeypatch.setenv("PROVENFLOW_SERVER_PORT", "4300")
    get_settings.cache_clear()
    try:
        assert report_url("ab" * 32) == f"http://127.0.0.1:4301/reports/{'ab' * 32}.html"
        monkeypatch.setenv("PROVENFLOW_REPORTS_PORT", "9999")
        get_settings.cache_clear()
        assert report_url("ab" * 32).startswith("http://127.0.0.1:9999/")
    finally:
        get_settings.cache_clear()


def test_a_report_server_whose_port_is_taken_says_so_in_one_line(tmp_path, monkeypatch):
    """Before: 'the report server did not start on …; see reports.log', the reason only in the log
    (CI lost a run to it: its port was another connection's)."""
    import socket

    from provenflow.errors import ConfigError
    from provenflow.monitoring import reports
    from provenflow.settings import get_settings
    from tests.services import free_port

    port = free_port()
    monkeypatch.setenv("PROVENFLOW_HOME", str(tmp_path / ".provenflow"))
    monkeypatch.setenv("PROVENFLOW_REPORTS_PORT", str(port))
    get_settings.cache_clear()
    with socket.socket() as taken:  # listens, never answers HTTP
        taken.bind(("127.0.0.1", port))
        taken.listen()
        try:
            with pytest.raises(ConfigError) as error:
                reports.start(timeout=20)
        finally:
            get_settings.cache_clear()
    message = str(error.value)
    assert f"port {port} is taken by another program" in message and "PROVENFLOW_REPORTS_PORT" in message
    assert "\n" not in message
