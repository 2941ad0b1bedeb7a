"""`provenflow server start|status|stop` runs one real Prefect server per project."""

from __future__ import annotations

import json
import os
import subprocess
import time

from provenflow import server
from provenflow.probe import answers_ok
from provenflow.settings import get_settings
from tests.services import free_port
from tests.test_cli import CLI


def _pf(project, port: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
    env["PROVENFLOW_SERVER_PORT"] = port
    result = subprocess.run([CLI, *args], cwd=project, capture_output=True, text=True, env=env, timeout=180)
    return result.returncode, result.stdout


def test_server_lifecycle(project):
    port = str(free_port())
    code, out = _pf(project, port, "server", "status", "--json")
    assert code == 3 and json.loads(out)["running"] is False
    try:
        code, out = _pf(project, port, "server", "start", "--json")
        status = json.loads(out)
        assert code == 0 and status["running"] and status["api_url"] == f"http://127.0.0.1:{port}/api"
        assert status["home"] == str(project / ".provenflow" / "prefect")
        assert (project / ".provenflow" / "prefect" / "prefect.db").exists()
        code, out = _pf(project, port, "server", "start", "--json")  # already running: the same server
        assert json.loads(out)["pid"] == status["pid"]
        # The read-only report server runs next to it (the drift artifacts link there).
        assert answers_ok(f"http://127.0.0.1:{int(port) + 1}/health")
    finally:
        code, out = _pf(project, port, "server", "stop", "--json")
    assert json.loads(out) == {"stopped": True}
    assert _pf(project, port, "server", "status")[0] == 3
    deadline = time.monotonic() + 10
    while answers_ok(f"http://127.0.0.1:{int(port) + 1}/health", 0.5) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not answers_ok(f"http://127.0.0.1:{int(port) + 1}/health", 0.5)


def test_connect_prefers_env_then_local_server_else_says_ephemeral(project, monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PROVENFLOW_SERVER_PORT", str(free_port()))
    get_settings.cache_clear()
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    assert server.connect() is None
    monkeypatch.delenv("PREFECT_API_URL")
    notice = server.connect()
    assert "ephemeral mode" in notice and "provenflow server start" in notice
    assert "PREFECT_API_URL" not in os.environ
