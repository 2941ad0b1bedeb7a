from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

REPO = Path(__file__).resolve().parent.parent
PENGUINS = REPO / "provenflow" / "demo" / "penguins.csv"

# The model-signing key made on first use goes to a throwaway config folder, never the user's own
# (CLI subprocesses inherit it).
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="provenflow-test-config-")
services.SESSION.folders.append(Path(os.environ["XDG_CONFIG_HOME"]))


def pytest_terminal_summary(terminalreporter) -> None:
    """What the session stopped and removed, and what it left and why: just above pytest's own closing
    line (CI reads "N passed" as the run's last line). Session fixtures are torn down by then."""
    terminalreporter.write_line(services.cleanup())


@pytest.fixture(scope="session")
def postgres() -> Iterator[services.Postgres]:
    if os.environ.get("PROVENFLOW_TEST_NO_POSTGRES"):
        services.unavailable("PROVENFLOW_TEST_NO_POSTGRES is set")
    # Not under pytest's tmp folder: that is private to root, and the cluster runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="provenflow-pg-"))
    server = services.start_postgres(base)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory, request) -> Iterator[str]:
    """One real Prefect server per test session, Postgres-backed when PostgreSQL is available
    (a SQLite-backed server answers back-to-back runs with 'database is locked' and slow retries)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    database = None
    try:
        pg = request.getfixturevalue("postgres")
        pg.create_database("prefect")
        database = pg.url("prefect", "postgresql+asyncpg")
    except pytest.skip.Exception:
        pass
    server = services.start_prefect_server(tmp_path_factory.mktemp("prefect-home"), database)
    os.environ["PREFECT_API_URL"] = server.api_url  # for CLI subprocesses
    # The heartbeat thread adds ~1 s to the end of every sync flow run; tests do not need it.
    with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield server.api_url
        # Send buffered logs and events while the server is still there to take them.
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    os.environ.pop("PREFECT_API_URL", None)
    server.stop()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Iterator[Path]:
    """A fresh user project: its own folder (cwd), ledger and store under .provenflow/."""
    from provenflow.settings import get_settings
    from provenflow.workspace import close_all

    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    for key in [k for k in os.environ if k.startswith("PROVENFLOW_")]:
        monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield root
    close_all()
    get_settings.cache_clear()


@pytest.fixture
def penguins(project) -> Path:
    target = project / "penguins.csv"
    shutil.copy(PENGUINS, target)
    return target


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path) -> str:
    """The same tests against both ledger backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"ledger_{abs(hash(request.node.nodeid)) % 10**8}")


@pytest.fixture
def workspace(ledger_url, tmp_path):
    from provenflow.workspace import Workspace, close_all

    ws = Workspace.open(ledger_url, str(tmp_path / "store"))
    yield ws
    close_all()
