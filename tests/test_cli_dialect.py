"""Issue 10 as a user meets it with a UCI file through the CLI: adult.data has no header row,
separates fields with ', ' and writes '?' for a gap, in numeric columns too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_cli import pf, pf_json

pytestmark = pytest.mark.usefixtures("prefect_api")


def _adult_data(path, rows: int = 400) -> None:
    rng = np.random.default_rng(5)
    lines = []
    for i in range(rows):
        age = int(rng.integers(17, 90))
        work = "?" if i % 37 == 5 else str(rng.choice(["State-gov", "Private", "Self-emp-not-inc"]))
        hours = "?" if i % 23 == 9 else str(int(rng.integers(1, 99)))
        label = ">50K" if age > 45 and rng.random() < 0.85 else "<=50K"
        lines.append(f"{age}, {work}, {int(rng.integers(20_000, 400_000))}, {hours}, {label}\n")
    path.write_text("".join(lines))


def test_a_headerless_uci_file_with_gaps_trains_on_its_named_columns(project):
    _adult_data(project / "adult.data.csv")
    run = pf(project, "data-run", "--name", "adult", "--source", "adult.data.csv")
    assert run.returncode == 0, run.stderr
    assert "Warning: no header row" in run.stderr and "column_1..column_5" in run.stderr
    assert "Note: '?' read as missing (column 'column_4')" in run.stderr
    ref = run.stdout.strip()

    shown = pf_json(project, "datasets", "show", ref)
    dtypes = {c["name"]: c["dtype"] for c in shown["schema"]}
    assert list(dtypes) == [f"column_{j}" for j in range(1, 6)]
    assert dtypes["column_4"] == "float64"  # numeric, its '?' missing; was text before
    profile = shown["profile"]["columns"]
    assert profile["column_4"]["missing"] == len([i for i in range(400) if i % 23 == 9])
    assert set(profile["column_2"]["frequencies"]) == {"State-gov", "Private", "Self-emp-not-inc"}
    recorded = pf_json(project, "runs", "show", shown["run_id"])["warnings"]
    assert any(w["level"] == "warning" and w["message"].startswith("no header row") for w in recorded)

    model = pf(
        project, "model-run", "--dataset", ref, "--target", "column_5",
        "--estimator", "sklearn.ensemble.HistGradientBoostingClassifier", "--json",
    )  # fmt: skip
    assert model.returncode == 0, model.stderr
    result = json.loads(model.stdout)
    assert result["features"] == ["column_1", "column_2", "column_3", "column_4"]
    signature = pf_json(project, "models", "show", f"{result['model']['name']}@{result['model']['version']}")
    kinds = {i["name"]: i["kind"] for i in signature["signature"]["inputs"]}
    assert kinds["column_4"] == "numeric" and kinds["column_2"] == "categorical"
