"""No credential anywhere but a secret store.

Every command that can take a credential runs here with a fresh marker password; afterwards the
Prefect API (flow and task runs with their parameters, logs, artifacts, events, block documents),
the ledger, the store and the command's own output are searched for it. Each run must also have
succeeded with the credential, so the search is not vacuous: the data server saw the right
``Authorization`` header, and the Prefect API holds the run's logs and events.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import PENGUINS
from tests.services import CLI

pytestmark = pytest.mark.usefixtures("prefect_api")

USER = "reader"


@dataclass
class DataServer:
    """A CSV behind HTTP basic auth, as a team's file server would serve it."""

    port: int
    password: str
    seen: list[str | None] = field(default_factory=list)

    def url(self, userinfo: str | None = None) -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/penguins.csv"

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()


@pytest.fixture
def marker() -> str:
    """A password that exists nowhere but in this test's memory (not in any file the run could store)."""
    return f"pw{secrets.token_hex(12)}"


@pytest.fixture
def data_server(marker) -> Iterator[DataServer]:
    body = PENGUINS.read_bytes()
    server = DataServer(port=0, password=marker)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            given = self.headers.get("Authorization")
            server.seen.append(given)
            if given != server.authorization:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="data"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()


def pf(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    exe = CLI
    return subprocess.run(
        [exe, *args], cwd=project, capture_output=True, text=True, env={**base, **(env or {})}, timeout=300
    )


# -- where a credential could end up --------------------------------------------------------


def _post_all(client: httpx.Client, path: str, body: dict) -> list:
    """Every row of a Prefect `/filter` endpoint, page by page."""
    rows, offset = [], 0
    while True:
        page = client.post(path, json={**body, "limit": 200, "offset": offset})
        page.raise_for_status()
        rows.extend(page.json())
        if len(page.json()) < 200:
            return rows
        offset += 200


def _events(client: httpx.Client, since: str) -> list:
    page = client.post("/events/filter", json={"filter": {"occurred": {"since": since}}, "limit": 50})
    page.raise_for_status()
    answer = page.json()
    events = list(answer["events"])
    while answer.get("next_page"):
        answer = client.get(answer["next_page"]).json()
        events.extend(answer["events"])
    return events


def prefect_records(api: str, flow_run_ids: set[str], since: str) -> dict[str, list]:
    """What the Prefect API shows about everything since SINCE, once the runs' logs and their final
    events have arrived (the server persists both asynchronously)."""
    with httpx.Client(base_url=api, timeout=30) as client:
        deadline = time.monotonic() + 30
        while True:
            records = {
                "flow_runs": _post_all(client, "/flow_runs/filter", {}),
                "task_runs": _post_all(client, "/task_runs/filter", {}),
                "logs": _post_all(client, "/logs/filter", {}),
                "artifacts": _post_all(client, "/artifacts/filter", {}),
                "variables": _post_all(client, "/variables/filter", {}),
                "block_documents": _post_all(client, "/block_documents/filter", {"include_secrets": False}),
                "events": _events(client, since),
            }
            logged = {str(log.get("flow_run_id")) for log in records["logs"]}
            finished = {
                e["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.")
                for e in records["events"]
                if e["event"] in ("prefect.flow-run.Completed", "prefect.flow-run.Failed")
            }
            if flow_run_ids <= logged and flow_run_ids <= finished:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the Prefect API did not show logs and final events of {flow_run_ids} within 30 s"
                )
            time.sleep(0.5)


def ledger_text(project: Path, url: str | None = None) -> str:
    """Every row of every ledger table, and for SQLite the database files' raw bytes too."""
    from sqlalchemy import MetaData, create_engine, select

    if url is None:
        if not (project / ".provenflow" / "ledger.db").exists():
            return ""
        url = f"sqlite:///{project / '.provenflow' / 'ledger.db'}"
    engine = create_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as connection:
            rows = [
                repr(row) for table in metadata.sorted_tables for row in connection.execute(select(table))
            ]
    finally:
        engine.dispose()
    raw = b"".join(p.read_bytes() for p in (project / ".provenflow").glob("ledger.db*"))
    return "\n".join(rows) + raw.decode("latin-1")


def store_bytes(project: Path) -> bytes:
    store = project / ".provenflow" / "store"
    if not store.exists():
        return b""
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


def assert_nowhere(secret: str, *, project: Path, api: str, since: str, flow_run_ids: set[str],
                   outputs: list[str] = (), ledger_url: str | None = None) -> None:  # fmt: skip
    forms = {secret, base64.b64encode(f"{USER}:{secret}".encode()).decode()}
    places = {f"Prefect's {surface}": json.dumps(rows) for surface, rows in
              prefect_records(api, flow_run_ids, since).items()}  # fmt: skip
    places["the ledger"] = ledger_text(project, ledger_url)
    places["the store"] = store_bytes(project).decode("latin-1")
    places.update({f"the command's output {i}": text for i, text in enumerate(outputs)})
    leaks = sorted(place for place, text in places.items() if any(form in text for form in forms))
    assert not leaks, f"the credential is in {', '.join(leaks)}"


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


# -- the commands ---------------------------------------------------------------------------


def test_data_run_with_password_in_url_keeps_it_out_of_prefect(project, prefect_api, data_server, marker):
    """Issue 9, case 1: the password in --source reached the flow run's parameters."""
    since = _now()
    done = pf(project, "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{marker}"), "--json")
    assert done.returncode == 0, done.stderr
    assert data_server.authorization in data_server.seen, "the credential was used to read the source"
    run_id = json.loads(done.stdout)["run_id"]
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids={run_id},
                   outputs=[done.stdout, done.stderr])  # fmt: skip


def test_refused_password_is_one_line_without_it(project, prefect_api, data_server, marker):
    wrong = f"wrong{secrets.token_hex(12)}"
    since = _now()
    done = pf(project, "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{wrong}"))
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "refused access (HTTP 401)" in error, done.stderr
    assert "Traceback" not in done.stderr
    assert data_server.seen and data_server.authorization not in data_server.seen
    debug = pf(project, "--debug", "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{wrong}"))
    assert debug.returncode == 1 and "refused access" in debug.stderr
    # Refused before any flow run (issue 19): the source is checked before the credentials are kept.
    flow_runs = _flow_runs_since(prefect_api, since)
    assert flow_runs == []
    assert_nowhere(wrong, project=project, api=prefect_api, since=since, flow_run_ids={r["id"] for r in flow_runs},
                   outputs=[done.stdout, done.stderr, debug.stdout, debug.stderr])  # fmt: skip


def test_credentials_from_a_secret_block_or_netrc(project, prefect_api, data_server, marker, tmp_path):
    from prefect.blocks.system import Secret

    Secret(value=f"{USER}:{marker}").save("team-data", overwrite=True)
    since = _now()
    url = data_server.url()
    by_block = pf(
        project, "data-run", "--name", "s", "--source", url, "--source-credentials", "team-data", "--json"
    )
    assert by_block.returncode == 0, by_block.stderr
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login {USER}\n  password {marker}\n")
    netrc.chmod(0o600)
    by_netrc = pf(project, "data-run", "--name", "s", "--source", url, "--json", env={"NETRC": str(netrc)})
    assert by_netrc.returncode == 0, by_netrc.stderr
    assert data_server.seen.count(data_server.authorization) >= 2
    ids = {json.loads(r.stdout)["run_id"] for r in (by_block, by_netrc)}
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids=ids,
                   outputs=[by_block.stdout, by_block.stderr, by_netrc.stdout, by_netrc.stderr])  # fmt: skip


def test_a_flow_called_with_a_credential_is_refused_before_prefect_sees_it(
    project, prefect_api, data_server, marker
):
    from provenflow.errors import ConfigError
    from provenflow.flows.data_run import data_run

    since = _now()
    with pytest.raises(ConfigError, match="parameter 'source' of flow 'data-run' holds user-info") as refused:
        data_run(name="apicall", source=data_server.url(f"{USER}:{marker}"))
    assert marker not in str(refused.value) and "http://***@127.0.0.1" in str(refused.value)
    assert not data_server.seen, "the flow body did not run"
    assert not _flow_runs_since(prefect_api, since), "no flow run was created"
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids=set())


def test_a_deployment_run_with_a_credential_fails_before_its_body(project, prefect_api, data_server, marker):
    """A run created elsewhere (a deployment, the UI) already holds its parameters; it must not run."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from provenflow.flows.data_run import data_run

    with get_client(sync_client=True) as client:
        created = client.create_flow_run(
            data_run, parameters={"name": "deployed", "source": data_server.url(f"{USER}:{marker}")}
        )
    state = run_flow(data_run, flow_run=created, parameters=created.parameters, return_type="state")
    assert state.type.value == "FAILED"
    assert "holds user-info" in state.message and marker not in state.message
    assert not data_server.seen, "the flow body did not run"
    with httpx.Client(base_url=prefect_api) as client:
        shown = client.get(f"/flow_runs/{created.id}").json()
    assert shown["state"]["type"] == "FAILED" and marker not in shown["state"]["message"]


def _flow_runs_since(api: str, since: str) -> list[dict]:
    with httpx.Client(base_url=api) as client:
        return _post_all(client, "/flow_runs/filter", {"flow_runs": {"start_time": {"after_": since}}})


def test_ledger_password_stays_in_the_environment(project, prefect_api, postgres, marker):
    """PROVENFLOW_LEDGER_URL carries the ledger's password; no run, record or message repeats it."""
    url = postgres.create_database("ledger_secret").replace("postgres@", f"postgres:{marker}@")
    env = {"PROVENFLOW_LEDGER_URL": url}
    shutil.copy(PENGUINS, project / "penguins.csv")
    since = _now()
    data = pf(project, "data-run", "--name", "penguins", "--source", "penguins.csv", "--json", env=env)
    assert data.returncode == 0, data.stderr
    model = pf(project, "model-run", "--dataset", "penguins@latest", "--target", "species",
               "--estimator", "sklearn.tree.DecisionTreeClassifier", "--json", env=env)  # fmt: skip
    assert model.returncode == 0, model.stderr
    listed = pf(project, "runs", "list", "--json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2
    missing = {"PROVENFLOW_LEDGER_URL": url.replace("/ledger_secret", "/no_such_ledger")}
    failed = pf(project, "runs", "list", env=missing)
    debug = pf(project, "--debug", "runs", "list", env=missing)
    assert failed.returncode == 1 and failed.stderr.startswith("Error: ") and debug.returncode != 0
    ids = {json.loads(r.stdout)["run_id"] for r in (data, model)}
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids=ids, ledger_url=url,
                   outputs=[r.stdout + r.stderr for r in (data, model, listed, failed, debug)])  # fmt: skip


def test_registry_credentials_in_an_address_are_refused(project, prefect_api, marker):
    since = _now()
    done = pf(project, "release", "m@1", "--registry", f"{USER}:{marker}@127.0.0.1:5000")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: parameter 'registry' of flow 'release' holds user:password@")
    assert not _flow_runs_since(prefect_api, since)
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids=set(),
                   outputs=[done.stdout, done.stderr])  # fmt: skip


def test_a_server_token_goes_by_secret_block_not_by_env(project, prefect_api, marker):
    from prefect.blocks.system import Secret

    from provenflow.blocks.credentials import secret_values
    from provenflow.errors import ConfigError
    from provenflow.flows.deploy import deploy

    since = _now()
    with pytest.raises(
        ConfigError, match="parameter 'env' of flow 'deploy' holds a value under 'PROVENFLOW_SERVE_TOKEN'"
    ):
        deploy(model="m@1", target="local", env={"PROVENFLOW_SERVE_TOKEN": marker})
    assert not _flow_runs_since(prefect_api, since)
    Secret(value=marker).save("serve-token", overwrite=True)
    assert secret_values({"PROVENFLOW_SERVE_TOKEN": "serve-token"}) == {"PROVENFLOW_SERVE_TOKEN": marker}
    with pytest.raises(ConfigError, match="no Secret block named 'missing'"):
        secret_values({"PROVENFLOW_SERVE_TOKEN": "missing"})
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids=set())


def test_retrain_reads_the_source_again_with_its_secret_block(project, prefect_api, data_server, marker):
    """retrain re-reads where the champion's data came from: the clean URL and the Secret block's name
    recorded by that data run, never the password."""
    from provenflow.flows.model_run import model_run
    from provenflow.flows.retrain import retrain

    since = _now()
    data = pf(project, "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{marker}"), "--json")
    assert data.returncode == 0, data.stderr
    champion = model_run(
        dataset="s@latest", target="species", estimator="sklearn.tree.DecisionTreeClassifier"
    )
    reads = data_server.seen.count(data_server.authorization)
    result = retrain(model=f"{champion['model']['name']}@{champion['model']['version']}", alias="staging")
    assert result["promotion"] in ("approved", "rejected", "unchanged")  # unchanged: the same data gave the same bytes
    assert data_server.seen.count(data_server.authorization) > reads, (
        "retrain read the source with the credentials"
    )
    assert_nowhere(marker, project=project, api=prefect_api, since=since,
                   flow_run_ids={json.loads(data.stdout)["run_id"], result["run_id"]},
                   outputs=[data.stdout, data.stderr])  # fmt: skip


@pytest.fixture
def password_role(postgres, marker) -> Iterator[str]:
    """A role that must give its password (scram), on a database with a table: the session's cluster
    trusts every other role, so only this one's connections prove the password reached the driver."""
    import psycopg

    admin = postgres.url("postgres", "postgresql")
    url = postgres.create_database("sql_secret")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS sqlreader")
        conn.execute(f"CREATE ROLE sqlreader LOGIN PASSWORD '{marker}'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT i AS id, i % 5 AS k FROM generate_series(1, 50) AS i")
        conn.execute("GRANT SELECT ON t TO sqlreader")
    before = hba.read_text()
    hba.write_text("host all sqlreader 127.0.0.1/32 scram-sha-256\n" + before)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield url.replace("postgres@", "sqlreader@")
    finally:
        hba.write_text(before)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


def test_sql_source_password_is_used_and_kept_out(project, prefect_api, password_role, marker):
    """A SQL source's password in --source goes to a Secret block; a wrong one is refused in one line."""
    since = _now()
    with_password = password_role.replace("sqlreader@", f"sqlreader:{marker}@")
    done = pf(project, "data-run", "--name", "t", "--source", with_password, "--table", "t", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dataset"]["rows"] == 50
    # Reproduced by running the query again, with the Secret block's password. Before: "recorded no
    # source file to re-read".
    again = pf(project, "reproduce", json.loads(done.stdout)["run_id"], "--code", "current", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["verdict"] == "identical", again.stdout + again.stderr
    bad = f"wrong{secrets.token_hex(12)}"
    refused = password_role.replace("sqlreader@", f"sqlreader:{bad}@")
    wrong = pf(project, "data-run", "--name", "t", "--source", refused, "--query", "SELECT * FROM t")
    error = wrong.stderr.strip().splitlines()[-1]
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr, wrong.stderr
    assert error.startswith("Error: cannot connect to 'postgresql+psycopg://127.0.0.1:")
    assert "password authentication failed" in error
    ids = {r["id"] for r in _flow_runs_since(prefect_api, since)}
    for secret in (marker, bad):
        assert_nowhere(secret, project=project, api=prefect_api, since=since, flow_run_ids=ids,
                       outputs=[done.stdout, done.stderr, again.stdout, again.stderr, wrong.stdout,
                                wrong.stderr])  # fmt: skip
