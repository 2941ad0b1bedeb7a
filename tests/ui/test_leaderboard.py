"""The leaderboard's rows from ledger rows built in memory: no database, no Prefect."""

from datetime import UTC, datetime, timedelta

from provenflow.ledger import models as m
from provenflow.ui.leaderboard import flatten, leaderboard_markdown, leaderboard_rows

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _run(i: int, params: dict, metrics: dict, state: str = "completed", version: int | None = None) -> m.Run:
    run = m.Run(
        id=f"run-{i}", kind="model", flow="model-run", name="penguins-sex", state=state,
        parameters={"dataset": "penguins@latest", "target": "sex", "estimator": "sklearn.ensemble.RandomForestClassifier",
                    "params": params, "seed": 42, "test_size": 0.25},
        code_commit="abcdef0123456789", code_dirty=i == 2, prefect_url=f"http://ui/flow-runs/flow-run/run-{i}",
        started_at=T0 + timedelta(minutes=i),
    )  # fmt: skip
    run.metrics = [m.Metric(key=k, value=v) for k, v in metrics.items()]
    run.io = [m.RunIO(direction="input", kind="dataset", name="penguins@f2ac45e0d1c3", hash="h")]
    if version:
        run.io.append(m.RunIO(direction="output", kind="model", name=f"penguins-sex@{version}", hash="h2"))
    return run


def test_every_run_best_first_with_the_parameters_that_differ():
    runs = [
        _run(1, {"n_estimators": 10}, {"accuracy": 0.80, "f1": 0.7, "train_rows": 250, "sample_rows": 0}, version=1),
        _run(2, {"n_estimators": 200, "class_weight": {"male": 1}}, {"accuracy": 0.95, "f1": 0.9}, version=2),
        _run(3, {"n_estimators": 50}, {}, state="failed"),
        _run(4, {"n_estimators": 99}, {"accuracy": 0.90, "f1": 0.8, "sample_rows": 120}, version=3),
    ]  # fmt: skip
    primary, rows = leaderboard_rows(runs)
    assert primary == "accuracy"
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["version"] for r in rows] == ["2", "3", "1", ""]  # the failed run last
    best = rows[0]
    # One compact column: the estimator and only what differs (seed and test_size are the same everywhere).
    assert best["parameters"] == "RandomForest class_weight.male=1 n_estimators=200"
    assert rows[1]["parameters"] == "RandomForest n_estimators=99"
    assert best["link"] == "http://ui/flow-runs/flow-run/run-2"
    assert best["dataset"] == "penguins@f2ac45" and best["commit"] == "abcdef01+dirty"
    assert rows[-1]["state"] == "failed" and rows[-1]["accuracy"] == ""
    # A full sample (0, or nothing recorded) reads "all", not 0.
    assert [r["sample"] for r in rows] == ["all", "120", "all", "all"]
    assert not {"train_rows", "sample_rows"} & set(best)
    assert not [k for k in best if k.startswith("param ")]
    # One set of columns for all rows: rank, the metrics (primary first), then the rest.
    assert all(list(r) == list(best) for r in rows)
    assert list(best)[:4] == ["rank", "accuracy", "f1", "parameters"]


def test_a_single_run_shows_the_parameters_it_was_given():
    _, rows = leaderboard_rows([_run(1, {"n_estimators": 10, "max_depth": 2}, {"accuracy": 0.8})])
    assert rows[0]["parameters"] == "RandomForest max_depth=2 n_estimators=10"


def test_lower_is_better_metrics_sort_ascending():
    runs = [_run(1, {}, {"rmse": 3.0}), _run(2, {}, {"rmse": 1.0})]
    primary, rows = leaderboard_rows(runs)
    assert primary == "rmse" and [r["rmse"] for r in rows] == [1.0, 3.0]


def test_flatten_and_markdown_links():
    assert flatten({"a": {"b": {"c": 1}}, "l": [1, 2], "e": {}}) == {"a.b.c": 1, "l": "[1, 2]", "e": "{}"}
    primary, rows = leaderboard_rows([_run(1, {"n_estimators": 10}, {"accuracy": 0.8}, version=1)])
    md = leaderboard_markdown(primary, rows)
    # The metric right after the rank (it was the last column, cut off on the model card).
    assert md.splitlines()[0] == "| # | accuracy | parameters | version | dataset |"
    assert (
        "| 1 | 0.8 | [RandomForest n_estimators=10](http://ui/flow-runs/flow-run/run-1) | 1 | penguins@f2ac45 |"
        in md
    )
    assert leaderboard_markdown(None, []) == "_no runs yet_\n"
