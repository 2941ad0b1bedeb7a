"""Issue 10 as a user meets it, through the CLI: a CSV with a date column ('2012/01/01'), a 5-class
target, an identifier, 300 car names, a copy of the target and rows without a target."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.test_cli import pf, pf_json

pytestmark = pytest.mark.usefixtures("prefect_api")
HGB = "sklearn.ensemble.HistGradientBoostingClassifier"


def _cars(path, rows=600, seed=0):
    rng = np.random.default_rng(seed)
    when = pd.DatetimeIndex(rng.choice(pd.date_range("2012-01-01", periods=1461, freq="D"), rows))
    power = rng.normal(100, 20, rows)
    origin = rng.choice(["usa", "europe", "japan"], rows)
    grade = np.clip(((power - 60) / 16).astype(int) + (origin == "japan") + (when.year > 2013), 0, 4)
    frame = pd.DataFrame(
        {
            "car_id": [f"K{i:05d}" for i in range(rows)],
            "sold": when.strftime("%Y/%m/%d"),
            "name": [f"{rng.choice(['ford', 'vw', 'toyota'])} model {i % 300}" for i in range(rows)],
            "power": power.round(1),
            "origin": origin,
            "grade_copy": [f"g{g}" for g in grade],
            "grade": [f"grade {g}" for g in grade],
        }
    )
    frame.loc[rng.random(rows) < 0.05, "grade"] = None
    frame.to_csv(path, index=False)
    return frame


def test_hist_gradient_boosting_on_dates_identifiers_and_a_leaky_column(project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich tables one row per line
    frame = _cars(project / "cars.csv")
    data = pf_json(project, "data-run", "--name", "cars", "--source", "cars.csv")
    ref = f"cars@{data['dataset']['version']}"

    shown = pf_json(project, "datasets", "show", ref)
    roles = {name: r["role"] for name, r in shown["roles"].items()}
    assert roles == {
        "car_id": "identifier", "sold": "datetime", "name": "identifier", "power": "numeric",
        "origin": "categorical", "grade_copy": "categorical", "grade": "categorical",
    }  # fmt: skip
    table = pf(project, "datasets", "show", ref)
    assert table.returncode == 0 and "identifier (left out" in table.stdout

    # Failed before: "Sparse data was passed for X, but dense data is required".
    leaky = pf(project, "model-run", "--dataset", ref, "--target", "grade", "--estimator", HGB, "--json")
    assert leaky.returncode == 0, leaky.stderr
    result = json.loads(leaky.stdout)
    assert result["features"] == ["sold", "power", "origin", "grade_copy"]
    warnings = [w["message"] for w in result["warnings"] if w["level"] == "warning"]
    assert any("'grade_copy' alone predicts 'grade'" in w for w in warnings), result["warnings"]
    notices = " ".join(w["message"] for w in result["warnings"] if w["level"] == "notice")
    unlabelled = int(frame["grade"].isna().sum())
    assert "'car_id' left out" in notices and "'name' left out" in notices
    assert f"{unlabelled} rows have no 'grade' value" in notices
    assert "held-out rows are drawn at random across 'sold'" in notices  # a date feature, a random split
    run = pf_json(project, "runs", "show", result["run_id"])
    assert run["metrics"]["unlabelled_rows"] == unlabelled
    assert run["metrics"]["train_rows"] + run["metrics"]["test_rows"] == len(frame) - unlabelled
    assert run["warnings"] == result["warnings"]
    assert any("grade_copy" in w["message"] for w in run["warnings"])

    plain = pf(
        project, "model-run", "--dataset", ref, "--target", "grade", "--estimator", HGB,
        "--exclude", "grade_copy", "--role", "power=numeric",
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "Warning:" not in plain.stderr and "grade_copy" not in plain.stderr.split("trained on")[1]
    model = pf_json(project, "models", "show", plain.stdout.strip())
    inputs = [(i["name"], i["kind"]) for i in model["signature"]["inputs"]]
    assert inputs == [("sold", "datetime"), ("power", "numeric"), ("origin", "categorical")]
    assert model["signature"]["left_out"]["grade_copy"] == "excluded"

    wrong = pf(
        project, "model-run", "--dataset", ref, "--target", "grade", "--estimator", HGB, "--exclude", "nmae"
    )
    assert wrong.returncode == 1 and wrong.stderr.startswith("Error: column 'nmae'")
    assert "Did you mean 'name'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_continuous_target_needs_task_classification(project):
    rng = np.random.default_rng(1)
    pd.DataFrame({"x": rng.normal(size=300), "mpg": rng.integers(10, 110, 300)}).to_csv(
        project / "mpg.csv", index=False
    )
    ref = f"mpg@{pf_json(project, 'data-run', '--name', 'mpg', '--source', 'mpg.csv')['dataset']['version']}"
    args = (
        "model-run",
        "--dataset",
        ref,
        "--target",
        "mpg",
        "--estimator",
        "sklearn.tree.DecisionTreeClassifier",
    )
    refused = pf(project, *args)
    assert (
        refused.returncode == 1
        and "looks continuous" in refused.stderr
        and "--task classification" in refused.stderr
    )
    forced = pf(project, *args, "--task", "classification")
    assert forced.returncode == 0, forced.stderr
