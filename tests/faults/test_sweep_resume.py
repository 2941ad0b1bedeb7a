"""kill -9 of a real `provenflow sweep` halfway, then the same command again: the trials that had
completed are reused (not trained again) and only the missing ones run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import pytest

from tests.conftest import PENGUINS
from tests.faults.test_kill_runs import CLI, _env, _runs, _wait_for, pf

pytestmark = pytest.mark.usefixtures("prefect_api")

SWEEP = ["sweep", "--dataset", "penguins@latest", "--target", "species",
         "--estimator", "sklearn.ensemble.RandomForestClassifier",
         "--grid", "n_estimators=5,10,15", "--grid", "max_depth=2,4", "--cv", "3", "--max-concurrency", "1"]  # fmt: skip


def _completed_trials(project) -> dict[str, str]:
    return {r.parameters["trial_key"]: r.id for r in _runs(project)
            if r.kind == "model" and r.state == "completed" and "trial_key" in r.parameters}  # fmt: skip


def test_killed_sweep_resumes_with_only_the_missing_trials(project):
    shutil.copy(PENGUINS, project / "penguins.csv")
    assert pf(project, "data-run", "--name", "penguins", "--source", "penguins.csv").returncode == 0
    process = subprocess.Popen([CLI, *SWEEP], cwd=project, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: len(_completed_trials(project)) >= 2, 400, "two completed trials", process)
    finally:
        killed = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert killed, "the sweep finished before it could be killed"
    before = _completed_trials(project)
    assert 2 <= len(before) < 6
    assert not [r for r in _runs(project) if r.kind == "sweep" and r.state == "completed"]

    again = pf(project, *SWEEP, "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert (result["trials"], result["reused"], result["trained"]) == (6, len(before), 6 - len(before))
    assert "reusing run" in again.stderr
    after = _completed_trials(project)
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())  # the old runs, not new ones
    assert {r["run_id"] for r in result["leaderboard"]} == set(after.values())
    # Every trial trained exactly once over both sweeps.
    keys = [r.parameters["trial_key"] for r in _runs(project) if r.kind == "model" and r.state == "completed"]
    assert len(keys) == len(set(keys)) == 6
