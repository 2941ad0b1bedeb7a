"""provenflow's Prefect server: Prefect's own, answering a write that met another one (SQLite's
"database is locked", HTTP 503) with a short Retry-After instead of leaving the client to sleep 2 s."""

import os
import subprocess
import sys
import textwrap

from provenflow.platform import prefect_server


def test_a_conflict_gets_a_quick_retry_twice_then_the_client_s_own_backoff():
    prefect_server._quick.clear()
    one, other = (("127.0.0.1", 5000), "POST", "/flow_runs/"), (("127.0.0.1", 5001), "POST", "/flow_runs/")
    assert prefect_server.retry_after(one, 100.0) == prefect_server.QUICK_WAIT
    assert prefect_server.retry_after(one, 100.2) == prefect_server.QUICK_WAIT
    assert prefect_server.retry_after(one, 100.4) is None  # a third in 2 s: Prefect's 2, 4, 8 … s
    assert prefect_server.retry_after(other, 100.5) == prefect_server.QUICK_WAIT  # another client
    assert prefect_server.retry_after(one, 102.3) == prefect_server.QUICK_WAIT  # the older two are past


def test_prefect_s_app_answers_a_locked_database_503_with_retry_after(tmp_path):
    """Through Prefect's own app and exception handler (a route that raises what SQLite raises), so a
    Prefect that stops building its app from the module's handler fails here."""
    probe = textwrap.dedent('''
        import sqlite3, sqlalchemy
        from fastapi.testclient import TestClient
        from provenflow.platform import prefect_server
        assert prefect_server.install()
        from prefect.server.api.server import create_app
        app = create_app(ignore_cache=True)
        api = next(r.app for r in app.routes if getattr(r, "path", "") == "/api")
        def locked():
            raise sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        def broken():
            raise RuntimeError("not a lock")
        api.add_api_route("/locked", locked, methods=["POST"])
        api.add_api_route("/broken", broken, methods=["POST"])
        client = TestClient(app, raise_server_exceptions=False)
        answers = [client.post("/api/locked") for _ in range(3)]
        print([(a.status_code, a.headers.get("retry-after")) for a in answers])
        other = client.post("/api/broken")
        print((other.status_code, other.headers.get("retry-after")))
    ''')
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    locked, broken = out.stdout.strip().splitlines()[-2:]
    assert locked == "[(503, '0.10'), (503, '0.10'), (503, None)]"
    assert broken == "(500, None)"  # not a conflict: no retry asked for
