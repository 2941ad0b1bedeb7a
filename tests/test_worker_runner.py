"""provenflow's process worker forks its flow runs from the warm runner (issue 21, "workers start fast
too"): a deployment run completes there with its result recorded, cancelling it from Prefect kills
the forked run, and without a runner the worker runs the engine in its own process as Prefect does.
A real Prefect server, a real runner, a real worker (`python -m provenflow.platform.worker`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from provenflow.ledger import models as m
from provenflow.platform import runner
from tests.conftest import PENGUINS
from tests.test_runner import POISON, start_runner

pytestmark = pytest.mark.usefixtures("prefect_api")

def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}


def _deploy(pool: str) -> dict[str, str]:
    """A process pool named POOL with data-run and model-run deployed to it; deployment ids by flow."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
            )
        )
        ids = {}
        for flow in ("data-run", "model-run"):
            ids[flow] = str(client.create_deployment(
                flow_id=client.create_flow_from_name(flow), name=pool, work_pool_name=pool,
                entrypoint=f"provenflow.flows.{flow.replace('-', '_')}:{flow.replace('-', '_')}",
                enforce_parameter_schema=False,
            ))  # fmt: skip
    return ids


class Worker:
    """`provenflow pools worker POOL` (CLI) or `python -m provenflow.platform.worker --pool POOL` for the
    project whose state is in HOME."""

    def __init__(self, pool: str, home: Path, sources: Path, cli: bool = False) -> None:
        self.home = home
        self.log = home.parent / f"worker-{pool}.log"
        home.mkdir(parents=True, exist_ok=True)
        env = {**_env(), "PROVENFLOW_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "1",
               "PROVENFLOW_SOURCE_ROOTS": str(sources)}  # fmt: skip
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "provenflow"), "pools", "worker", pool, "--limit", "2"]
                if cli
                else [sys.executable, "-m", "provenflow.platform.worker", "--pool", pool, "--limit", "2"],
                cwd=home.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the worker and the flow runs it started
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _run(
    deployment_id: str, parameters: dict, worker: Worker, wait: float = 240, job_variables: dict | None = None
):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment_id, parameters=parameters, timeout=0, job_variables=job_variables)
    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            flow_run = client.read_flow_run(flow_run.id)
            if flow_run.state.is_final():
                return flow_run
            time.sleep(0.5)
    pytest.fail(f"flow run {flow_run.id} not final after {wait} s: {flow_run.state}\n{worker.output()}")


def _ledger_run(home: Path, run_id: str) -> m.Run | None:
    if not (home / "ledger.db").exists():
        return None
    engine = create_engine(f"sqlite:///{home / 'ledger.db'}")
    with Session(engine) as session:
        row = session.scalars(select(m.Run).where(m.Run.id == run_id)).first()
    engine.dispose()
    return row


def _infrastructure_pid(flow_run) -> int:
    return int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])


@pytest.fixture(scope="module")
def warm_worker(tmp_path_factory, prefect_api):
    root = tmp_path_factory.mktemp("warm-worker") / "project"
    root.mkdir()
    shutil.copy(PENGUINS, root / "penguins.csv")
    (root / "poison.py").write_text(POISON)
    home = root / ".provenflow"
    status = start_runner(home, _env())
    deployments = _deploy("warm-process")
    worker = Worker("warm-process", home, root, cli=True)
    yield root, home, status, deployments, worker
    worker.stop()
    runner.stop(home)


def test_a_deployment_run_forks_from_the_runner_and_is_recorded(warm_worker):
    root, home, status, deployments, worker = warm_worker
    flow_run = _run(
        deployments["data-run"], {"name": "penguins", "source": str(root / "penguins.csv")}, worker
    )
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{worker.output()}"
    run = _ledger_run(home, str(flow_run.id))
    assert run is not None and run.state == "completed", worker.output()
    # The worker started the engine client; the run itself was a process forked off the runner.
    client = _infrastructure_pid(flow_run)
    assert run.pid not in (None, client, status.pid), worker.output()
    assert runner.ping(home) == status.pid  # the runner is unharmed
    assert "Note: the warm runner differs" not in worker.output()


def test_cancelling_a_forked_run_kills_it(warm_worker):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    root, home, status, deployments, worker = warm_worker
    data = _run(deployments["data-run"], {"name": "penguins", "source": str(root / "penguins.csv")}, worker)
    assert data.state.is_completed(), worker.output()
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployments["model-run"], timeout=0, parameters={
        "dataset": "penguins@latest", "target": "species", "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 200000}, "name": "cancelled"})  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (
        (run := _ledger_run(home, str(flow_run.id))) is None or run.pid is None
    ):
        time.sleep(0.3)
    assert run is not None and run.pid, worker.output()
    assert Path(f"/proc/{run.pid}").exists()
    with get_client(sync_client=True) as client:
        # The worker sets it once the process runs.
        while not client.read_flow_run(flow_run.id).infrastructure_pid:
            time.sleep(0.2)
        client_pid = _infrastructure_pid(client.read_flow_run(flow_run.id))
        assert run.pid != client_pid  # forked from the runner, not the client the worker started
        client.set_flow_run_state(flow_run.id, Cancelling(), force=True)  # what the UI's Cancel button does
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not client.read_flow_run(flow_run.id).state.is_final():
            time.sleep(0.5)
        state = client.read_flow_run(flow_run.id).state
    assert state.is_cancelled(), f"{state}\n{worker.output()}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{run.pid}").exists():
        time.sleep(0.2)
    assert not Path(f"/proc/{run.pid}").exists(), "the forked run outlived its cancellation"
    assert runner.ping(home) == status.pid


def test_a_forked_run_that_dies_is_crashed_alone(warm_worker):
    """A run killed by a signal: the worker sees its process die by that signal (the client exits the
    same way) and marks the flow run Crashed; the runner and the next run are untouched."""
    root, home, status, deployments, worker = warm_worker
    data = _run(deployments["data-run"], {"name": "penguins", "source": str(root / "penguins.csv")}, worker)
    assert data.state.is_completed(), worker.output()
    model = {"dataset": "penguins@latest", "target": "species"}
    # The project folder as working directory: `poison` imports from there, as a team's own module would.
    crashed = _run(deployments["model-run"], {**model, "estimator": "poison.Poison", "name": "poisoned"}, worker,
                   job_variables={"working_dir": str(root), "env": {"PROVENFLOW_ESTIMATOR_MODULES": "sklearn,poison"}})  # fmt: skip
    assert crashed.state.is_crashed(), f"{crashed.state}\n{worker.output()}"
    assert "-9" in (crashed.state.message or "") or "SIGKILL" in (crashed.state.message or ""), (
        f"{crashed.state.message}\n{worker.output()}"
    )
    assert runner.ping(home) == status.pid
    good = _run(deployments["model-run"], {**model, "estimator": "sklearn.linear_model.LogisticRegression",
                                            "params": {"max_iter": 2000}}, worker)  # fmt: skip
    assert good.state.is_completed(), f"{good.state}\n{worker.output()}"


def test_a_deployment_with_its_own_command_keeps_it(warm_worker):
    root, home, _, deployments, worker = warm_worker
    own = f"{sys.executable} -m prefect.engine"
    flow_run = _run(deployments["data-run"], {"name": "penguins", "source": str(root / "penguins.csv")}, worker,
                    job_variables={"command": own})  # fmt: skip
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{worker.output()}"
    run = _ledger_run(home, str(flow_run.id))
    assert run.pid == _infrastructure_pid(flow_run)  # its own command's process ran it, nothing forked


def test_without_a_runner_the_worker_runs_the_engine_itself(tmp_path):
    home = tmp_path / "project" / ".provenflow"  # no runner listens there
    deployments = _deploy("cold-process")
    worker = Worker("cold-process", home, PENGUINS.parent)
    try:
        flow_run = _run(deployments["data-run"], {"name": "penguins", "source": str(PENGUINS)}, worker)
    finally:
        worker.stop()
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{worker.output()}"
    run = _ledger_run(home, str(flow_run.id))
    assert run is not None and run.state == "completed"
    # The client became the engine: the pid the worker watches ran the flow.
    assert run.pid == _infrastructure_pid(flow_run)


def test_down_stops_a_pool_worker_started_in_the_foreground(tmp_path):
    """`provenflow pools worker POOL` for a team's own pool runs in the foreground (or under a
    supervisor). Before, `provenflow down` said it had stopped everything and left it running."""
    import json

    home = tmp_path / "project" / ".provenflow"
    worker = Worker("team-pool", home, tmp_path, cli=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((home / "pool-workers").glob("*.pid")):
            time.sleep(0.2)
        time.sleep(3)  # Prefect's worker is up and polling
        assert worker.process.poll() is None, worker.output()
        started = time.monotonic()
        done = subprocess.run([str(Path(sys.executable).parent / "provenflow"), "down", "--json"],
                              cwd=home.parent, env={**_env(), "PROVENFLOW_HOME": str(home)},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["pool workers"] == [worker.process.pid]
        assert worker.process.wait(timeout=5) is not None
        print(f"down took {time.monotonic() - started:.1f} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()
