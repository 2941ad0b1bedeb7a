"""The ledger's PostgreSQL server stops during a run, then comes back.

The stopped run must end with one line `Error: the ledger at … : <reason>. <what to do>` (no
traceback, no password), leave no half record, and the same command must succeed once the server
is back. A process that keeps its Ledger across the restart (the model server, a worker) must go
on without being restarted itself.

Each test stops and starts its OWN cluster (the session's `postgres` fixture is shared).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests import services
from tests.conftest import PENGUINS, REPO
from tests.faults.test_ledger_first_use import assert_ledger_consistent
from tests.services import CLI

PASSWORD = "s3cret-marker-pw"


class Cluster:
    """A PostgreSQL cluster this test may stop and start again on the same port."""

    def __init__(self) -> None:
        # Not under pytest's tmp folder: that is private to root, and the cluster runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="provenflow-pg-restart-"))
        self.pg = services.start_postgres(self.base)
        self.pg.create_database("ledger")
        self.url = self.pg.url("ledger")
        # Trust authentication ignores the password; it is there to show it never leaks.
        self.secret_url = self.url.replace("postgres@", f"postgres:{PASSWORD}@")
        self._migrate()

    def _migrate(self) -> None:
        """Create the schema first, so that the run's first connection is the run at work."""
        from provenflow.ledger.db import Ledger

        Ledger(self.url).dispose()

    def stop(self, mode: str = "fast") -> None:
        services._as_user(
            self.pg.process_user,
            [services._pg_bin("pg_ctl"), "-D", str(self.pg.data_dir), "-m", mode, "-w", "stop"],
        )

    def start(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.pg.port} -k {self.base / 'pgsock'} -c fsync=off -c full_page_writes=off"
        )
        services._as_user(
            self.pg.process_user,
            [services._pg_bin("pg_ctl"), "-D", str(self.pg.data_dir), "-w", "-t", "60",
             "-l", str(self.base / "postgres.log"), "-o", options, "start"],
        )  # fmt: skip

    def clients(self, busy_only: bool = False) -> int:
        """Sessions connected to the ledger database (only those not idle, if asked), not this one."""
        import psycopg

        with psycopg.connect(self.pg.url("postgres", "postgresql"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'ledger' AND pid <> pg_backend_pid()"
                + (" AND state <> 'idle'" if busy_only else "")
            ).fetchone()
        return row[0]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.pg.stop()
    shutil.rmtree(c.base, ignore_errors=True)


def _cli(project: Path, url: str, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    env.update(PROVENFLOW_LEDGER_URL=url, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [CLI, *args], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop_while_connected(cluster: Cluster, proc: subprocess.Popen, mode: str) -> None:
    """Stop the server as soon as the run holds a ledger connection; the run must still be going."""
    deadline = time.monotonic() + 300
    while cluster.clients() == 0:
        assert proc.poll() is None, f"the run ended before it used the ledger: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the run never connected to the ledger"
        time.sleep(0.05)
    cluster.stop(mode)
    assert proc.poll() is None, "the run finished before the server stopped: the test proves nothing"


def _assert_one_line_ledger_error(proc: subprocess.Popen, cluster: Cluster) -> str:
    _, stderr = proc.communicate(timeout=300)
    code = proc.returncode
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr and PASSWORD not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(
        f"Error: the ledger at postgresql+psycopg://postgres:***@127.0.0.1:{cluster.pg.port}/ledger "
    )
    return lines[0]


def _run_states(cluster: Cluster, kind: str | None = None) -> list[str]:
    import psycopg

    query = "SELECT state FROM runs" + (" WHERE kind = %s" if kind else "")
    with psycopg.connect(cluster.pg.url("ledger", "postgresql"), autocommit=True) as conn:
        return [row[0] for row in conn.execute(query, (kind,) if kind else ())]


def _succeeds(proc: subprocess.Popen) -> bool:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return True


@pytest.fixture
def big_csv(project) -> Path:
    """Penguins × 400 (~140k rows): a data run long enough to stop the server in its middle."""
    lines = PENGUINS.read_text().splitlines()
    target = project / "big.csv"
    target.write_text("\n".join([lines[0], *(lines[1:] * 400)]) + "\n")
    return target


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_stopped_during_a_data_run(cluster, project, big_csv, mode):
    url = cluster.secret_url
    run = _cli(project, url, "data-run", "--name", "big", "--source", big_csv.name)
    _stop_while_connected(cluster, run, mode)
    line = _assert_one_line_ledger_error(run, cluster)
    assert "run the command again" in line

    cluster.start()
    counts = assert_ledger_consistent(cluster.url)
    assert counts["dataset_versions"] == 0  # nothing half-written
    # At most the `running` row the run wrote before its work began (when the stop came after it).
    assert set(_run_states(cluster)) <= {"running"}

    again = _cli(project, url, "data-run", "--name", "big", "--source", big_csv.name)
    assert _succeeds(again)
    counts = assert_ledger_consistent(cluster.url)
    assert counts["dataset_versions"] == 1
    # The next command saw the stopped run's process gone and marked it crashed.
    assert sorted(_run_states(cluster)) in (["completed"], ["completed", "crashed"])


@pytest.mark.usefixtures("prefect_api")
def test_server_stopped_during_a_model_run(cluster, project):
    shutil.copy(PENGUINS, project / "penguins.csv")
    data = _cli(project, cluster.url, "data-run", "--name", "penguins", "--source", "penguins.csv")
    assert _succeeds(data)
    model_args = (
        "model-run", "--dataset", "penguins@latest", "--target", "species",
        "--estimator", "sklearn.ensemble.RandomForestClassifier", "--param", "n_estimators=1500",
    )  # fmt: skip
    run = _cli(project, cluster.secret_url, *model_args)
    _stop_while_connected(cluster, run, "fast")
    _assert_one_line_ledger_error(run, cluster)

    cluster.start()
    assert_ledger_consistent(cluster.url)
    # The data run, and at most the model run's `running` row: no model, no half record.
    assert sorted(_run_states(cluster, "model")) in ([], ["running"])
    assert _run_states(cluster, "data") == ["completed"]
    with_model = _cli(project, cluster.url, *model_args[:-1], "n_estimators=10")
    assert _succeeds(with_model)
    assert_ledger_consistent(cluster.url)
    assert sorted(_run_states(cluster, "model")) in (["completed"], ["completed", "crashed"])


def test_one_process_survives_a_restart_between_uses(cluster):
    from provenflow.errors import LedgerError
    from provenflow.ledger.db import Ledger

    ledger = Ledger(cluster.url)
    with ledger.reader() as s:
        assert s.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    cluster.stop("fast")
    unreachable = r"^the ledger at .* cannot be reached: .*refused.*running"
    with pytest.raises(LedgerError, match=unreachable), ledger.reader() as s:
        s.execute(text("SELECT 1"))
    cluster.start()
    with ledger.reader() as s:  # pool_pre_ping: the dead pooled connection is replaced
        assert s.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    ledger.dispose()


def test_connection_lost_inside_a_transaction(cluster):
    from provenflow.errors import LedgerError
    from provenflow.ledger.db import Ledger

    ledger = Ledger(cluster.url)
    lost = r"lost its connection .*run the command again"
    with pytest.raises(LedgerError, match=lost), ledger.transaction() as s:
        s.execute(
            text("INSERT INTO environments (hash, python, platform, packages) VALUES ('h', 'p', 'x', '[]')")
        )
        cluster.stop("immediate")
        s.execute(text("SELECT 1"))
    cluster.start()
    with ledger.reader() as s:
        assert s.execute(text("SELECT count(*) FROM environments")).scalar() == 0  # rolled back
    ledger.dispose()


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list"),
        ("lineage", "penguins@latest"),
        ("data-run", "--name", "penguins", "--source", "penguins.csv"),
        (
            "model-run",
            "--dataset",
            "penguins@latest",
            "--target",
            "species",
            "--estimator",
            "sklearn.tree.DecisionTreeClassifier",
        ),
    ],
    ids=lambda args: args[0],
)
def test_every_command_says_one_line_when_the_server_is_down(cluster, project, args):
    shutil.copy(PENGUINS, project / "penguins.csv")
    cluster.stop("fast")
    line = _assert_one_line_ledger_error(_cli(project, cluster.secret_url, *args), cluster)
    assert "cannot be reached" in line and "Connection refused" in line


@pytest.mark.usefixtures("prefect_api")
def test_server_restarted_while_a_data_run_works_between_uses(cluster, project, big_csv):
    """The run's pooled connection dies with the restart; the next use replaces it (pre-ping)."""
    run = _cli(project, cluster.secret_url, "data-run", "--name", "big", "--source", big_csv.name)
    deadline = time.monotonic() + 300
    quiet_since = None
    while quiet_since is None or time.monotonic() - quiet_since < 1.0:  # connected, idle for 1 s
        assert run.poll() is None and time.monotonic() < deadline, "the run never went quiet on the ledger"
        connected, busy = cluster.clients(), cluster.clients(busy_only=True)
        quiet_since = (quiet_since or time.monotonic()) if connected and not busy else None
        time.sleep(0.05)
    cluster.stop("fast")
    cluster.start()
    assert cluster.clients() == 0  # the run's connection died with the server
    assert run.poll() is None, "the run ended before the restart was over: the test proves nothing"
    assert _succeeds(run)
    counts = assert_ledger_consistent(cluster.url)
    assert counts["runs"] == counts["dataset_versions"] == 1
