"""`provenflow server start|status|stop` runs one real Prefect server per project."""

from __future__ import annotations

import json
import os
import subprocess
import time

from provenflow.platform import server
from provenflow.platform.probe import answers_ok
from provenflow.settings import get_settings
from tests.conftest import PENGUINS
from tests.services import free_port
from tests.test_cli import CLI


def _pf(project, port: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
    env["PROVENFLOW_SERVER_PORT"] = port
    result = subprocess.run([CLI, *args], cwd=project, capture_output=True, text=True, env=env, timeout=180)
    print(f"$ provenflow {' '.join(args)} -> {result.returncode}\n{result.stderr}")  # shown when a test fails
    return result.returncode, result.stdout


def _crash_automations(api: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from provenflow.platform.prefect_crashes import AUTOMATION_NAME

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_automations_by_name(AUTOMATION_NAME)


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
        assert [a.trigger.within.total_seconds() for a in _crash_automations(status["api_url"])] == [90]
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
    monkeypatch.setenv("PROVENFLOW_REPORTS_PORT", str(free_port()))  # not the server's + 1, which may be taken
    get_settings.cache_clear()
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    assert server.connect() is None
    monkeypatch.delenv("PREFECT_API_URL")
    notice = server.connect()
    assert "ephemeral mode" in notice and "provenflow up" in notice
    assert "PREFECT_API_URL" not in os.environ


def test_two_projects_never_share_a_server(tmp_path):
    """Each project derives its own port; a server of another project on a forced port is refused."""
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        root.mkdir()
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    port = str(free_port())
    try:
        code, out = _pf(first, port, "server", "start", "--json")
        assert code == 0 and json.loads(out)["running"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
        env["PROVENFLOW_SERVER_PORT"] = port
        data_run = ["data-run", "--name", "penguins", "--source", str(PENGUINS)]
        for args in (["server", "start"], data_run, ["up"]):
            result = subprocess.run(
                [CLI, *args], cwd=second, capture_output=True, text=True, env=env, timeout=180
            )
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert f"belongs to the project in {first / '.provenflow'}, not to this one" in result.stderr
            assert "PROVENFLOW_SERVER_PORT" in result.stderr
        code, _ = _pf(second, port, "server", "status")
        assert code == 3  # not this project's
        assert not (second / ".provenflow" / "prefect" / "prefect.db").exists()
    finally:
        _pf(first, port, "server", "stop")


def test_each_project_gets_its_own_port(tmp_path, monkeypatch):
    ports = set()
    for name in ("alpha", "beta", "gamma"):
        monkeypatch.setenv("PROVENFLOW_HOME", str(tmp_path / name / ".provenflow"))
        monkeypatch.delenv("PROVENFLOW_SERVER_PORT", raising=False)
        get_settings.cache_clear()
        ports.add(get_settings().resolved_server_port)
        assert get_settings().resolved_server_port == get_settings().resolved_server_port
    get_settings.cache_clear()
    assert len(ports) == 3 and all(4200 <= p < 4300 for p in ports)


def _block_type_slugs(api: str) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return {b.slug for b in client.read_block_types()}


def test_a_start_from_stopped_skips_the_block_registration_the_first_start_did(project):
    """Registering Prefect's block types imports every installed Prefect collection (seconds):
    once done for this database and these packages, the next start skips it, and the block types
    and the crash automation are still there. Another set of packages registers them again."""
    port = str(free_port())
    marker = project / ".provenflow" / "prefect" / "provenflow-blocks-registered"

    def start() -> tuple[dict, list[bytes]]:
        code, out = _pf(project, port, "server", "start", "--json")
        assert code == 0, out
        status = json.loads(out)
        return status, open(f"/proc/{status['pid']}/environ", "rb").read().split(b"\0")

    skip = b"PREFECT_SERVER_REGISTER_BLOCKS_ON_START=false"
    try:
        first, environ = start()
        assert skip not in environ and marker.exists()
        slugs = _block_type_slugs(first["api_url"])
        assert "secret" in slugs  # one of Prefect's own, registered by its first start
        _pf(project, port, "server", "stop")
        again, environ = start()
        assert skip in environ
        assert _block_type_slugs(again["api_url"]) == slugs
        assert [a.trigger.within.total_seconds() for a in _crash_automations(again["api_url"])] == [90]
        _pf(project, port, "server", "stop")
        marker.write_text("packages installed since")
        _, environ = start()
        assert skip not in environ
    finally:
        _pf(project, port, "server", "stop")


def test_an_unreachable_prefect_server_is_one_line_naming_it(tmp_path):
    """Before: Prefect's client retried for ~20 s and printed a 60-line traceback ending in
    'RuntimeError: Failed to reach API at …'."""
    import shutil

    port = free_port()  # nothing listens there
    shutil.copy(PENGUINS, tmp_path / "penguins.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    done = subprocess.run(
        [CLI, "data-run", "--name", "p", "--source", "penguins.csv"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: no Prefect server answers at http://127.0.0.1:{port}/api (PREFECT_API_URL in the environment); "
        "start it with `provenflow up` (this project's server) or `prefect server start`, or unset "
        "PREFECT_API_URL to use this project's server"
    ]
    assert not list(tmp_path.glob(".provenflow/store/objects/*/*"))  # nothing stored
