"""Many processes opening an EMPTY ledger at once: the migrations run once, every run is recorded.

Four real `provenflow data-run` processes start together against an empty SQLite file or an empty
PostgreSQL database; before migrations were serialized, some lost the race to create
alembic_version and died with a ~570-line traceback, leaving no record. A second test opens the
same empty ledger from eight processes released at the same instant (cheaper, and a tighter race).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, func, select, text

from tests.conftest import PENGUINS, REPO
from tests.services import CLI


@pytest.fixture(params=["sqlite", "postgres"])
def empty_ledger(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"first_use_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**6}")


def _env(ledger_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    env["PROVENFLOW_LEDGER_URL"] = ledger_url
    env["PYTHONPATH"] = str(REPO)
    return env


def assert_ledger_consistent(url: str) -> dict[str, int]:
    """No run without its edges, no dataset version whose run is missing; returns row counts."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {
                t: conn.execute(select(func.count()).select_from(text(t))).scalar_one()
                for t in ("runs", "run_io", "dataset_versions", "alembic_version")
            }
            bare = conn.execute(
                text(
                    "SELECT r.id FROM runs r WHERE r.state = 'completed' AND r.kind = 'data' "
                    "AND NOT EXISTS (SELECT 1 FROM run_io i WHERE i.run_id = r.id AND i.direction = 'output')"
                )
            ).all()
            orphans = conn.execute(
                text(
                    "SELECT d.id FROM dataset_versions d WHERE d.run_id IS NULL "
                    "OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = d.run_id AND r.state = 'completed')"
                )
            ).all()
            revisions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert not bare, f"completed data runs without an output edge: {bare}"
    assert not orphans, f"dataset versions without a completed run: {orphans}"
    assert len(revisions) == 1, revisions
    return counts


@pytest.mark.usefixtures("prefect_api")
def test_four_data_runs_on_an_empty_ledger_all_succeed(empty_ledger, project):
    shutil.copy(PENGUINS, project / "penguins.csv")
    env = _env(empty_ledger)
    procs = [
        subprocess.Popen(
            [CLI, "data-run", "--name", f"first{i}", "--source", "penguins.csv"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [(*p.communicate(timeout=600), p.returncode) for p in procs]
    for _, stderr, code in results:
        assert "Traceback" not in stderr, stderr[-3000:]
        assert code == 0, stderr[-3000:]
    counts = assert_ledger_consistent(empty_ledger)
    assert counts["runs"] == 4 and counts["dataset_versions"] == 4


OPEN = """
import sys, time
from provenflow.ledger.db import Ledger
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
ledger = Ledger(sys.argv[1])
with ledger.reader() as s:
    s.execute(__import__("sqlalchemy").text("SELECT count(*) FROM runs")).scalar()
print("ok")
"""


def test_eight_processes_open_an_empty_ledger_at_the_same_instant(empty_ledger):
    start = time.time() + 4  # after every interpreter has imported SQLAlchemy and Alembic
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, empty_ledger, str(start)],
            env=_env(empty_ledger),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    failed = [stderr[-1500:] for _, stderr, code in results if code != 0]
    assert not failed, failed[0]
    assert_ledger_consistent(empty_ledger)
