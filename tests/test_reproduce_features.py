"""A model run's feature choice is part of its reproduction: the same columns, roles and date
features give the same model bytes (issue 10)."""

from __future__ import annotations

import pytest

from tests.mixed_table import mixed_table
from tests.test_reproduce import flows, git, repo  # noqa: F401 (the fixture)

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_a_run_with_dates_and_a_feature_choice_reproduces_identical(repo):  # noqa: F811
    mixed_table(rows=400, seed=5).to_csv(repo / "mixed.csv", index=False)
    git(repo, "add", "mixed.csv")
    git(repo, "commit", "-qm", "mixed data")
    data_run, model_run, reproduce = flows()
    ref = data_run(name="mixed", source="mixed.csv")["dataset"]["ref"]
    trained = model_run(
        dataset=ref, target="target", estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        exclude=["x2"], roles={"x1": "numeric"}, features=["date", "x1", "x2", "colour", "name"], seed=3,
    )  # fmt: skip
    assert trained["features"] == ["date", "x1", "colour", "name"]
    report = reproduce(run_id=trained["run_id"])
    assert report["verdict"] == "identical", report
    assert report["model_hash"]["reproduced"] == trained["model"]["hash"]
