"""The warm runner: flow commands forked from one process with the heavy imports done, isolated
from each other, ordinary Prefect flow runs, and the CLI unchanged when the runner is not there."""

from __future__ import annotations

import json
import os
import shutil
import stat
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
from tests.test_cli import CLI as _CLI

CLI = _CLI if Path(_CLI).exists() else shutil.which("provenflow") or _CLI

# An estimator that poisons scikit-learn in its process (LogisticRegression.fit raises from then
# on), then dies by SIGKILL: neither may reach the next run.
POISON = '''
import os, signal
import sklearn.linear_model
from sklearn.base import BaseEstimator, ClassifierMixin

class Poison(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        def broken(*args, **kwargs):
            raise RuntimeError("poisoned by the previous run")
        sklearn.linear_model.LogisticRegression.fit = broken
        os.environ["PROVENFLOW_LEAKED"] = "1"
        os.kill(os.getpid(), signal.SIGKILL)
'''


def start_runner(home: Path, env: dict[str, str]) -> runner.RunnerStatus:
    """The runner of HOME started with ENV as its whole environment (a user's shell, not the test's);
    fails the test when it does not listen within 300 s."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        status = runner.start(home, wait=300)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if not status.running:
        pytest.fail(f"the runner did not listen within 300 s; see {status.log}")
    return status


@pytest.fixture(scope="module")
def warm(tmp_path_factory, prefect_api):
    root = tmp_path_factory.mktemp("warm") / "project"
    root.mkdir()
    shutil.copy(PENGUINS, root / "penguins.csv")
    (root / "poison.py").write_text(POISON)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    home = root / ".provenflow"
    status = start_runner(home, env)
    yield root, env, status
    runner.stop(home)


def pf(root: Path, env: dict, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], cwd=root, env={**env, **(extra or {})}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def _runs(root: Path) -> list[m.Run]:
    engine = create_engine(f"sqlite:///{root / '.provenflow' / 'ledger.db'}")
    with Session(engine) as session:
        rows = list(session.scalars(select(m.Run).order_by(m.Run.started_at)))
    engine.dispose()
    return rows


def test_the_socket_is_private(warm):
    _, _, status = warm
    assert stat.S_IMODE(os.stat(status.socket).st_mode) == 0o600


def test_a_run_that_crashes_hard_and_poisons_its_process_leaves_the_next_run_unharmed(warm):
    root, env, status = warm
    data = pf(root, env, "data-run", "--name", "penguins", "--source", "penguins.csv")
    assert data.returncode == 0, data.stderr
    assert "Note: the warm runner" not in data.stderr  # it ran in the runner, not in the CLI process

    crashed = pf(root, env, "model-run", "--dataset", "penguins@latest", "--target", "species",
                 "--estimator", "poison.Poison", "--name", "poisoned",
                 extra={"PROVENFLOW_ESTIMATOR_MODULES": "sklearn,poison"})  # fmt: skip
    assert crashed.returncode == 1
    assert "killed by signal 9 (SIGKILL)" in crashed.stderr

    good = pf(root, env, "model-run", "--dataset", "penguins@latest", "--target", "species",
              "--estimator", "sklearn.linear_model.LogisticRegression", "--param", "max_iter=2000")  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "penguins-species@1"
    assert runner.ping(root / ".provenflow") == status.pid  # the runner itself is unharmed

    listing = pf(root, env, "runs", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    runs = {r.name: r for r in _runs(root)}
    assert runs["poisoned"].state == "crashed"  # the next command noticed the dead process
    assert runs["poisoned"].pid not in (None, status.pid)  # the run had its own process
    assert runs["penguins-species"].state == "completed"


def test_a_sweep_is_handed_to_the_runner_and_ends_with_its_process_pool(warm):
    root, env, _ = warm
    if pf(root, env, "datasets", "list", "--json").stdout.count("penguins") == 0:
        assert pf(root, env, "data-run", "--name", "penguins", "--source", "penguins.csv").returncode == 0
    started = time.monotonic()
    # A pool's idle workers kept the run from ending (they wait 300 s for work) and, holding the
    # caller's stdout, kept the caller's pipes open: a hang is a timeout here, not a 600 s wait.
    result = subprocess.run([CLI, "sweep", "--dataset", "penguins@latest", "--target", "species", "--estimator",
                             "sklearn.tree.DecisionTreeClassifier", "--grid", "max_depth=2,3", "--cv", "2",
                             "--refit", "best", "--max-concurrency", "2", "--name", "swept"], cwd=root,
                            env={**env, "PROVENFLOW_RUNNER_CPU": "1"}, capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "runner: the run used" in result.stderr  # forked from the warm runner, not run in the CLI process
    assert "swept@1" in result.stdout and result.stdout.count("  -  ") == 1  # the best alone is registered
    assert time.monotonic() - started < 120


def test_runs_are_ordinary_prefect_flow_runs(warm):
    from prefect import get_client

    root, env, _ = warm
    result = pf(root, env, "model-run", "--dataset", "penguins@latest", "--target", "species",
                "--estimator", "sklearn.tree.DecisionTreeClassifier", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    import json

    run_id = json.loads(result.stdout)["run_id"]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
    assert flow_run.state.is_completed()
    assert flow_run.parameters["estimator"] == "sklearn.tree.DecisionTreeClassifier"


def test_errors_and_exit_codes_come_through(warm):
    root, env, _ = warm
    result = pf(root, env, "model-run", "--dataset", "nope@latest", "--target", "x",
                "--estimator", "sklearn.linear_model.LogisticRegression")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no dataset named 'nope'")
    assert "Traceback" not in result.stderr


def test_a_killed_caller_takes_its_run_with_it(warm):
    root, env, _ = warm
    process = subprocess.Popen([CLI, "model-run", "--dataset", "penguins@latest", "--target", "species",
                                "--estimator", "sklearn.ensemble.RandomForestClassifier",
                                "--param", "n_estimators=20000", "--name", "killed"],
                               cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(r.name == "killed" for r in _runs(root)):
        time.sleep(0.2)
    (run,) = [r for r in _runs(root) if r.name == "killed"]
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{run.pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{run.pid}").exists(), "the run outlived its caller"


def test_without_a_runner_the_command_runs_in_its_own_process(tmp_path, prefect_api):
    assert runner.submit(["model-run", "--dataset", "x"]) is None  # no runner for this project
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    shutil.copy(PENGUINS, tmp_path / "penguins.csv")
    result = subprocess.run([CLI, "data-run", "--name", "penguins", "--source", "penguins.csv"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_listing_is_handed_over_before_the_cli_imports_typer_or_the_ledger(warm):
    """With the runner up, a listing costs the caller Python's start and a socket, not the CLI's
    imports: the `provenflow` script hands the command over before typer, rich or SQLAlchemy load."""
    root, env, _ = warm
    result = subprocess.run([sys.executable, "-X", "importtime", CLI, "runs", "list", "--json"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert isinstance(json.loads(result.stdout), list)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "provenflow.platform.runner" in imported
    assert not imported & {"typer", "rich", "sqlalchemy", "provenflow.cli.output"}


def test_a_runner_just_started_reports_its_pid(tmp_path):
    """`server start` printed 'warm runner pid None': the child had not exec'd into the runner yet."""
    home = tmp_path / ".provenflow"
    started = runner.start(home)
    try:
        assert started.pid is not None and Path(f"/proc/{started.pid}").exists()
    finally:
        runner.start(home, wait=120)  # listening: stop knows it by its command line then
        runner.stop(home)


def test_a_relative_pythonpath_still_uses_the_runner(tmp_path):
    """`PYTHONPATH=. provenflow …`: the runner works in .provenflow, where '.' is another folder; every
    command then found its import path different and ran without the runner (a model run 3.1 s
    instead of 0.8 s in bench/overhead.py)."""
    root = tmp_path / "project"
    root.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}, "PYTHONPATH": "."}
    code = "from provenflow.platform import runner; print(runner.start(wait=120).running)"
    started = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    try:
        assert started.stdout.strip() == "True", started.stderr
        listed = subprocess.run([CLI, "runs", "list"], cwd=root, env=env, capture_output=True, text=True)
        assert listed.returncode == 0 and "differs" not in listed.stderr, listed.stderr
    finally:
        runner.stop(root / ".provenflow")
