"""A sweep on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1,
the ledger on PostgreSQL and a store folder both processes share; its records equal a local sweep's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provenflow.ledger import models as m
from tests import services
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_api")
RF = "sklearn.ensemble.RandomForestClassifier"
GRID = {"n_estimators": [5, 10], "max_depth": [2, 4]}


@pytest.fixture
def dask_cluster(tmp_path, project, postgres):
    """(scheduler address, worker pids, ledger URL, store folder) with the workers importing
    provenflow from this tree and finding the ledger and store through the settings."""
    pytest.importorskip("distributed")
    ledger_url = postgres.create_database(f"ledger_dask_{os.getpid()}")
    store = tmp_path / "shared-store"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROVENFLOW_LEDGER_URL": ledger_url,
           "PROVENFLOW_STORE_URL": str(store)}  # fmt: skip
    dask = str(Path(sys.executable).parent / "dask")
    port = services.free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask.log"
    with logs.open("w") as log:
        processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], env=env, cwd=project, stdout=log, stderr=log)]  # fmt: skip
        processes += [
            subprocess.Popen([dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                              "--host", "127.0.0.1", "--name", f"w{i}"], env=env, cwd=project, stdout=log, stderr=log)
            for i in range(2)
        ]
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            pids = set(client.run(os.getpid).values())
        yield address, pids, ledger_url, store
    except OSError as exc:
        services.unavailable(f"the Dask cluster did not start: {exc}; {logs.read_text()[-2000:]}")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _use(ledger_url: str, store: Path, monkeypatch) -> None:
    from provenflow.settings import get_settings
    from provenflow.workspace import close_all

    close_all()
    monkeypatch.setenv("PROVENFLOW_LEDGER_URL", ledger_url)
    monkeypatch.setenv("PROVENFLOW_STORE_URL", str(store))
    get_settings.cache_clear()


def _sweep(penguins, **options) -> tuple[dict, dict[str, dict], set[int]]:
    """Record penguins in the current ledger, sweep; (result, trial key → metrics, trial run pids)."""
    from provenflow.flows.data_run import data_run
    from provenflow.flows.sweep import sweep
    from provenflow.workspace import Workspace

    data_run(name="penguins", source=str(penguins))
    result = sweep(datasets=["penguins@latest"], target="species", estimator=RF, grid=GRID, cv=3, **options)
    with Workspace.default().ledger.reader() as session:
        runs = [session.get(m.Run, r["run_id"]) for r in result["leaderboard"]]
        return result, {r.parameters["trial_key"]: {x.key: x.value for x in r.metrics} for r in runs}, {
            r.pid for r in runs}  # fmt: skip


def test_sweep_on_a_dask_cluster_records_what_a_local_sweep_does(dask_cluster, penguins, tmp_path, monkeypatch):
    address, worker_pids, ledger_url, store = dask_cluster
    _use(ledger_url, store, monkeypatch)
    on_dask, dask_records, pids = _sweep(penguins, dask=address, max_concurrency=2)
    assert (on_dask["trials"], on_dask["trained"], on_dask["failed"]) == (4, 4, [])
    assert pids and pids <= worker_pids  # trained in the worker processes, not here

    _use(f"sqlite:///{tmp_path / 'local.db'}", tmp_path / "local-store", monkeypatch)
    local, local_records, local_pids = _sweep(penguins, max_concurrency=2)
    assert local_pids == {os.getpid()}
    assert local_records == dask_records  # same trial keys, same metrics
    assert [r["trial_key"] for r in local["leaderboard"]] == [r["trial_key"] for r in on_dask["leaderboard"]]

    # The Dask sweep's store holds what its ledger records: the workers wrote to the shared folder.
    from provenflow.digest import Digest
    from provenflow.workspace import Workspace

    _use(ledger_url, store, monkeypatch)
    assert all(Workspace.default().store.read_bytes(Digest(m_.hash)) for m_ in _models())


def _models():
    from sqlalchemy import select

    from provenflow.workspace import Workspace

    with Workspace.default().ledger.reader() as session:
        return session.scalars(select(m.ModelVersion)).all()
