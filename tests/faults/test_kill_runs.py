"""kill -9 of a real `provenflow data-run` and `model-run` at a random point, then: the ledger is
consistent, the killed run is marked crashed in the ledger and in Prefect, `provenflow gc --grace 0`
leaves no staging file and no orphan object, and running the same command again succeeds.

The random delays come from a seed printed in the test's output (PROVENFLOW_FAULT_SEED repeats one).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from provenflow.ledger import models as m
from tests.conftest import PENGUINS
from tests.faults.ledger_checks import assert_consistent, staging_files
from tests.services import CLI

pytestmark = pytest.mark.usefixtures("prefect_api")

SEED = int(os.environ.get("PROVENFLOW_FAULT_SEED", random.SystemRandom().randrange(10**6)))


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """~35 MB: 400,000 rows of numbers, a category and a 3-class label."""
    rng = np.random.default_rng(7)
    n = 400_000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n).round(6) for i in range(6)})
    frame["kind"] = rng.choice(["a", "b", "c"], size=n)
    frame["label"] = (frame["x0"] + rng.normal(scale=0.5, size=n) > 0).astype(int) + (frame["x1"] > 1)
    path = tmp_path_factory.mktemp("big") / "big.csv"
    frame.to_csv(path, index=False)
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}


def pf(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], cwd=project, capture_output=True, text=True, env=_env(), timeout=timeout
    )


def _ledger_url(project: Path) -> str:
    return f"sqlite:///{project / '.provenflow' / 'ledger.db'}"


def _runs(project: Path) -> list[m.Run]:
    path = project / ".provenflow" / "ledger.db"
    if not path.exists():
        return []
    engine = create_engine(_ledger_url(project))
    try:
        with Session(engine) as session:
            return list(session.scalars(select(m.Run).order_by(m.Run.started_at)))
    except Exception:  # the ledger is still being created by the process under test
        return []
    finally:
        engine.dispose()


def _wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            return None
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_during(project: Path, args: list[str], when: str, rng: random.Random) -> tuple[m.Run | None, bool]:
    """Start the command, wait for the moment, kill -9 it; returns its run row and whether it was killed."""
    process = subprocess.Popen([CLI, *args], cwd=project, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    store = project / ".provenflow" / "store"
    before = {r.id for r in _runs(project)}
    try:
        if when == "writing":  # the case: the store holds a half-written object
            _wait_for(lambda: staging_files(store), 300, "a staging file in the store", process)
        else:  # anywhere between the run's start and its end
            _wait_for(
                lambda: [r for r in _runs(project) if r.id not in before], 300, "the run's row", process
            )
            delay = rng.uniform(0, float(when))
            time.sleep(delay)
            print(f"kill -9 {delay:.2f} s after the run started")
    finally:
        killed = process.poll() is None
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=30)
    assert killed or process.returncode == 0, stderr
    new = [r for r in _runs(project) if r.id not in before]
    print(f"{args[0]}: {'killed' if killed else 'had finished'}; store: {_listing(store)}")
    return (new[0] if new else None), killed


def _listing(store: Path) -> str:
    files = [p for p in store.rglob("*") if p.is_file()] if store.exists() else []
    return ", ".join(f"{p.relative_to(store)} {p.stat().st_size:,} B" for p in files) or "empty"


def _prefect_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def _gc(project: Path) -> dict:
    result = pf(project, "gc", "--grace", "0", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _after_kill(project: Path, run: m.Run | None, killed: bool, noticed_by: str = "gc", rerun=None) -> None:
    """What must hold after the kill: the next command (gc, a mere `runs list`, or the same run
    again) marks the run crashed here and in Prefect; gc removes the garbage; ledger and store agree.
    A process killed after its run was recorded (in Prefect's teardown) leaves a completed run."""
    crashed = run is not None and run.state == "running"
    print(f"the run was {run.state if run else 'not started'} when killed" if killed else "not killed")
    leftovers = staging_files(project / ".provenflow" / "store")
    if noticed_by == "rerun":
        again = pf(project, *rerun)
        assert again.returncode == 0, again.stderr
        leftovers = []  # the re-run's first write removed none (they are younger than the grace period)
    if noticed_by == "runs list":
        listed = pf(project, "runs", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        states = {r["id"]: r["state"] for r in json.loads(listed.stdout)}
        if crashed:
            assert states[run.id] == "crashed"
    report = _gc(project)
    if crashed:
        if noticed_by == "gc":
            assert [c["id"] for c in report["crashed_runs"]] == [run.id]
        (after,) = [r for r in _runs(project) if r.id == run.id]
        assert after.state == "crashed" and f"pid {run.pid}" in after.error
        assert _prefect_state(run.prefect_flow_run_id) == "CRASHED"
    if noticed_by != "rerun":
        assert {Path(g["path"]) for g in report["removed"] if g["kind"] == "tmp"} == set(leftovers)
    assert_consistent(_ledger_url(project), project / ".provenflow" / "store")


# A data-run of this file writes its run row ~3 s after it starts and ends ~7 s later, storing
# in its last ~3 s: a delay drawn from 0-7 s kills it anywhere in between, mostly.
@pytest.mark.parametrize("when", ["writing", "7"])
def test_kill_data_run(project, big_csv, when):
    rng = random.Random(f"{SEED}-data-{when}")
    print(f"PROVENFLOW_FAULT_SEED={SEED}")
    args = ["data-run", "--name", "big", "--source", str(big_csv), "--json"]
    run, killed = kill_during(project, args, when, rng)
    if when == "writing":  # noticed by the next data-run itself
        assert killed and run is not None and run.state == "running"
        _after_kill(project, run, killed, noticed_by="rerun", rerun=args)
    else:
        _after_kill(project, run, killed)

    again = pf(project, *args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["dataset"]["rows"] == 400_000
    assert_consistent(_ledger_url(project), project / ".provenflow" / "store", after_gc=False)
    assert _gc(project)["removed"] == []  # the re-run left nothing behind either


def test_kill_model_run(project, big_csv):
    rng = random.Random(f"{SEED}-model")
    print(f"PROVENFLOW_FAULT_SEED={SEED}")
    small = project / "small.csv"
    pd.read_csv(big_csv, nrows=60_000).to_csv(small, index=False)
    assert pf(project, "data-run", "--name", "small", "--source", str(small)).returncode == 0
    args = ["model-run", "--dataset", "small@latest", "--target", "label", "--name", "killed",
            "--estimator", "sklearn.ensemble.RandomForestClassifier", "--param", "n_estimators=60", "--json"]  # fmt: skip
    run, killed = kill_during(project, args, "10", rng)  # it runs ~10 s after its row is written
    _after_kill(project, run, killed, noticed_by="runs list")

    again = pf(project, *args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["model"]["version"] == 1
    assert_consistent(_ledger_url(project), project / ".provenflow" / "store", after_gc=False)


def test_prefect_crashes_a_killed_flow_run_by_its_missing_heartbeats(project, big_csv, prefect_api):
    """Without any provenflow command after the kill (a run on another machine): the automation
    that `provenflow server start` creates marks the flow run Crashed once its heartbeats stop,
    and the next gc follows Prefect's verdict in the ledger."""
    from provenflow.platform import server
    from provenflow.settings import get_settings

    heartbeat = get_settings().heartbeat_seconds
    server.ensure_crash_detection(prefect_api)
    assert server.ensure_crash_detection(prefect_api) == server.ensure_crash_detection(
        prefect_api
    )  # idempotent
    small = project / "small.csv"
    pd.read_csv(big_csv, nrows=60_000).to_csv(small, index=False)
    assert pf(project, "data-run", "--name", "small", "--source", str(small)).returncode == 0
    args = ["model-run", "--dataset", "small@latest", "--target", "label", "--name", "zombie",
            "--estimator", "sklearn.ensemble.RandomForestClassifier", "--param", "n_estimators=300"]  # fmt: skip
    run, killed = kill_during(project, args, "0", random.Random(0))
    assert killed and run is not None
    killed_at = time.monotonic()
    engine = create_engine(_ledger_url(project))
    with Session(engine) as session, session.begin():  # as if it had run on a worker VM
        session.get(m.Run, run.id).host = "worker-vm-1"
    engine.dispose()
    assert _prefect_state(run.prefect_flow_run_id) == "RUNNING"

    bound = 3 * heartbeat + heartbeat + 30  # three missed heartbeats, the last one's age, evaluation
    _wait_for(
        lambda: _prefect_state(run.prefect_flow_run_id) == "CRASHED", bound, "Prefect to crash the flow run"
    )
    print(f"Prefect marked the killed flow run Crashed {time.monotonic() - killed_at:.0f} s after kill -9")
    report = _gc(project)
    assert [c["id"] for c in report["crashed_runs"]] == [run.id]
    (after,) = [r for r in _runs(project) if r.id == run.id]
    assert after.state == "crashed" and "Prefect marked its flow run crashed" in after.error
    assert_consistent(_ledger_url(project), project / ".provenflow" / "store")


def test_kill_after_the_run_was_recorded(project):
    """The narrow window between the run's record and Prefect's final state: the next command
    that talks to Prefect ends the flow run as Crashed; the ledger keeps the completed run."""
    shutil.copy(PENGUINS, project / "penguins.csv")
    process = subprocess.Popen([CLI, "data-run", "--name", "penguins", "--source", "penguins.csv"], cwd=project,
                               env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    (run,) = _wait_for(lambda: [r for r in _runs(project) if r.state == "completed"], 300, "the recorded run")
    killed = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = _prefect_state(run.prefect_flow_run_id)
    print(f"killed={killed}; Prefect had the flow run {before}")
    _gc(project)
    after = _prefect_state(run.prefect_flow_run_id)
    assert after == ("CRASHED" if before == "RUNNING" else before)
    (recorded,) = [r for r in _runs(project) if r.id == run.id]
    assert recorded.state == "completed" and recorded.process is None
    assert_consistent(_ledger_url(project), project / ".provenflow" / "store")
