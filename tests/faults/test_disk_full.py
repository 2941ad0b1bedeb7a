"""A full disk under the store: the store on an 8 MB tmpfs. A data-run that does not fit fails with
one line, leaves no staging file, no object and no dataset version; a smaller one then succeeds."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from provenflow.ledger import models as m
from tests.faults.ledger_checks import assert_consistent, object_files, staging_files
from tests.faults.test_kill_runs import CLI
from tests.services import unavailable

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def small_store(tmp_path) -> Iterator[Path]:
    mount = tmp_path / "store"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        unavailable(f"cannot mount an 8 MB tmpfs for the store (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _csv(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows).round(6) for i in range(6)})
    frame["kind"] = rng.choice(["a", "b", "c"], size=rows)
    frame.to_csv(path, index=False)
    return path


def _data_run(project: Path, store: Path, source: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    env["PROVENFLOW_STORE_URL"] = str(store)
    return subprocess.run([CLI, "data-run", "--name", "full", "--source", str(source), "--json"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def _ledger(project: Path) -> tuple[list[m.Run], list[m.DatasetVersion]]:
    engine = create_engine(f"sqlite:///{project / '.provenflow' / 'ledger.db'}")
    with Session(engine) as session:
        found = list(session.scalars(select(m.Run))), list(session.scalars(select(m.DatasetVersion)))
    engine.dispose()
    return found


# 150,000 rows: a 12 MB CSV, whose raw copy alone does not fit. 80,000 rows: a 6.4 MB CSV that fits,
# but its Parquet dataset then does not (and the raw copy this run stored must go again).
@pytest.mark.parametrize("rows", [150_000, 80_000], ids=["source-too-big", "dataset-does-not-fit"])
def test_a_data_run_on_a_full_store_fails_cleanly_then_a_smaller_one_succeeds(project, small_store, rows):
    big = _csv(project / "big.csv", rows)
    failed = _data_run(project, small_store, big)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("Error: cannot store a ")
        and "No space left on device" in lines[0]
    )
    assert "Traceback" not in failed.stderr
    assert staging_files(small_store) == [] and object_files(small_store) == {}
    runs, versions = _ledger(project)
    assert versions == [] and [r.state for r in runs] == ["failed"]
    assert "No space left on device" in runs[0].error

    small = _csv(project / "small.csv", 10_000)
    done = _data_run(project, small_store, small)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dataset"]["rows"] == 10_000
    assert_consistent(f"sqlite:///{project / '.provenflow' / 'ledger.db'}", small_store, after_gc=True)
