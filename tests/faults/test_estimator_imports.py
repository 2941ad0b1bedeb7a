"""An --estimator path must not be a way to run a module's code: nothing outside the allow-list is
imported, whether the module sits on PYTHONPATH or in the project folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PENGUINS
from tests.services import CLI

pytestmark = pytest.mark.usefixtures("prefect_api")

PAYLOAD = """\
from pathlib import Path

Path({marker!r}).write_text("top-level code ran")
from sklearn.linear_model import LogisticRegression as Model
"""


def pf(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    exe = CLI
    return subprocess.run(
        [exe, *args], cwd=project, capture_output=True, text=True, env=base | env, timeout=300
    )


def test_estimator_module_outside_the_allow_list_never_runs(project, tmp_path):
    shutil.copy(PENGUINS, project / "penguins.csv")
    assert pf(project, "data-run", "--name", "penguins", "--source", "penguins.csv").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker = tmp_path / "marker"
    (elsewhere / "planted.py").write_text(PAYLOAD.format(marker=str(marker)))
    (project / "local_model.py").write_text(PAYLOAD.format(marker=str(marker)))
    pythonpath = os.pathsep.join(filter(None, [str(elsewhere), os.environ.get("PYTHONPATH")]))
    model_run = ["model-run", "--dataset", "penguins@latest", "--target", "species", "--estimator"]

    for module in ("planted", "local_model"):
        result = pf(project, *model_run, f"{module}.Model", PYTHONPATH=pythonpath)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
        assert f"PROVENFLOW_ESTIMATOR_MODULES=sklearn,xgboost,lightgbm,{module}" in result.stderr
        assert not marker.exists(), f"{module}'s top-level code ran"

    # Allowed by the setting, the project's own module is used (and its code runs, as asked).
    result = pf(project, *model_run, "local_model.Model", PROVENFLOW_ESTIMATOR_MODULES="sklearn,local_model")
    assert result.returncode == 0, result.stderr
    assert marker.exists()


def test_a_project_folder_named_like_an_allowed_package_does_not_stand_in_for_it(project, tmp_path):
    shutil.copy(PENGUINS, project / "penguins.csv")
    assert pf(project, "data-run", "--name", "penguins", "--source", "penguins.csv").returncode == 0
    marker = tmp_path / "marker"
    (project / "sklearn").mkdir()
    (project / "sklearn" / "__init__.py").write_text(
        PAYLOAD.format(marker=str(marker)).split("from sklearn")[0]
    )
    result = pf(
        project, "model-run", "--dataset", "penguins@latest", "--target", "species",
        "--estimator", "sklearn.tree.DecisionTreeClassifier",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "the project's sklearn/ folder was imported instead of scikit-learn"
