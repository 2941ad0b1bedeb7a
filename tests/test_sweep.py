"""Sweeps: the pure planning/keying/ranking functions, and the sweep flow against a real Prefect
server and ledger (trials are ordinary model runs; a re-run reuses them)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from provenflow.errors import TrainingError
from provenflow.ledger import models as m
from provenflow.modeling import sweep
from provenflow.workspace import Workspace

RF = "sklearn.ensemble.RandomForestClassifier"


def test_grid_and_plan():
    grid = sweep.parse_grid(["n_estimators=5,10", "max_depth=2,None", "criterion=gini"])
    assert grid == {"n_estimators": [5, 10], "max_depth": [2, None], "criterion": ["gini"]}
    trials = sweep.plan(["a@1", "b@2"], grid)
    assert len(trials) == 8 and trials[0] == sweep.Trial("a@1", {"n_estimators": 5, "max_depth": 2, "criterion": "gini"})
    drawn = sweep.plan(["a@1"], grid, draws=3, seed=7)
    assert len(drawn) == 3 and drawn == sweep.plan(["a@1"], grid, draws=3, seed=7)
    assert len({tuple(t.params.items()) for t in drawn}) == 3  # no repeats
    with pytest.raises(TrainingError, match="key=v1,v2"):
        sweep.parse_grid(["max_depth"])


def test_trial_key_changes_with_each_ingredient():
    base = ("h" * 64, RF, {"max_depth": 3}, 1, 0.25, None, "abc+None")
    key = sweep.trial_key(*base)
    assert key == sweep.trial_key("h" * 64, RF, {"max_depth": 3}, 1, 0.25, None, "abc+None")
    for i, other in enumerate(["g" * 64, "x.Y", {"max_depth": 4}, 2, 0.3, 3, "abd+None"]):
        changed = list(base)
        changed[i] = other
        assert sweep.trial_key(*changed) != key


def test_leaderboard_ranks_by_direction():
    records = [{"metrics": {"f1": 0.5, "rmse": 3.0}}, {"metrics": {"f1": 0.9, "rmse": 1.0}}]
    assert [r["metrics"]["f1"] for r in sweep.leaderboard(records, "f1")] == [0.9, 0.5]
    assert [r["metrics"]["rmse"] for r in sweep.leaderboard(records, "rmse")] == [1.0, 3.0]
    assert sweep.rank_metric(records, None) == "f1"


@pytest.mark.usefixtures("prefect_api")
def test_sweep_flow_trains_each_trial_once_then_reuses(project, penguins, capfd):
    from provenflow.flows.data_run import data_run
    from provenflow.flows.sweep import sweep as sweep_flow

    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    grid = {"n_estimators": [5, 10], "max_depth": [2, 4]}
    first = sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF, grid=grid, cv=3,
                       max_concurrency=2, promote_best_to="staging", auto_approve=True)  # fmt: skip
    assert (first["trials"], first["trained"], first["reused"], first["failed"]) == (4, 4, 0, [])
    assert first["metric"] == "f1.cv_mean"
    board = first["leaderboard"]
    assert [r["rank"] for r in board] == [1, 2, 3, 4]
    scores = [r["metrics"]["f1.cv_mean"] for r in board]
    assert scores == sorted(scores, reverse=True) and all("f1.cv_std" in r["metrics"] for r in board)
    assert first["promotion"]["decision"] == "approved" and first["promotion"]["model"] == board[0]["model"]

    with Workspace.default().ledger.reader() as s:
        run = s.get(m.Run, first["run_id"])
        assert run.kind == "sweep" and run.state == "completed"
        inputs = sorted(io.name for io in run.io if io.direction == "input")
        assert inputs == sorted(r["model"] for r in board)
        assert all(io.model_version_id for io in run.io if io.direction == "input")
        trials = s.scalars(select(m.Run).where(m.Run.kind == "model")).all()
        assert len(trials) == 4 and {t.parameters["dataset"] for t in trials} == {ref}
        assert all(t.state == "completed" and t.prefect_flow_run_id for t in trials)

    again = sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF, grid=grid, cv=3)
    assert (again["trained"], again["reused"]) == (0, 4)
    assert {r["run_id"] for r in again["leaderboard"]} == {r["run_id"] for r in board}
    assert "reusing run" in capfd.readouterr().err
    # A new grid value: only its trials run.
    wider = sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF,
                       grid={"n_estimators": [5, 10, 15], "max_depth": [2, 4]}, cv=3)  # fmt: skip
    assert (wider["trained"], wider["reused"]) == (2, 4)


def test_cli_refuses_a_bad_grid_in_one_line(project):
    from tests.test_cli import pf

    result = pf(project, "sweep", "--dataset", "x@latest", "--target", "y", "--estimator", RF, "--grid", "max_depth")
    assert result.returncode == 1 and result.stderr.startswith("Error: grid entry 'max_depth'")
    assert "Traceback" not in result.stderr


def test_cross_validate_matches_scikit_learn_folds(project):
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    from provenflow.modeling import training
    from provenflow.modeling.preprocessing import build_pipeline
    from tests.conftest import PENGUINS

    frame = pd.read_csv(PENGUINS)[["bill_length_mm", "bill_depth_mm", "species"]]
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    cv = training.cross_validate(frame, "species", tree, 3, 0.25, 4)
    assert cv == training.cross_validate(frame, "species", tree, 3, 0.25, 4)
    assert set(cv) >= {"accuracy.cv_mean", "accuracy.cv_std", "f1.cv_mean", "f1.cv_std"}
    # The same folds of the same training rows as scikit-learn's own cross-validation.
    x_train, _, y_train, _ = training.split_rows(frame, "species", "classification", 3, 0.25)
    from provenflow.data import features

    pipeline = build_pipeline(x_train, features.select(frame, "species", features.FeatureChoice(), None), tree)
    scores = cross_val_score(pipeline, x_train, y_train, cv=StratifiedKFold(4, shuffle=True, random_state=3))
    assert cv["accuracy.cv_mean"] == pytest.approx(scores.mean()) and cv["accuracy.cv_std"] == pytest.approx(scores.std())
    with pytest.raises(TrainingError, match="at least 2 folds"):
        training.cross_validate(frame, "species", tree, 3, 0.25, 1)


@pytest.mark.usefixtures("prefect_api")
def test_sweep_on_the_process_task_runner(project, penguins):
    from provenflow.flows.data_run import data_run
    from provenflow.flows.sweep import sweep as sweep_flow

    data_run(name="penguins", source=str(penguins))
    result = sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF,
                        grid={"n_estimators": [5, 10]}, runner="processes", max_concurrency=2)  # fmt: skip
    assert (result["trained"], result["failed"]) == (2, [])
    with Workspace.default().ledger.reader() as s:
        pids = {s.get(m.Run, r["run_id"]).pid for r in result["leaderboard"]}
    assert pids and os.getpid() not in pids  # trained in the pool's processes


@pytest.mark.usefixtures("prefect_api")
def test_refit_best_cross_validates_every_trial_and_registers_only_the_best(project, penguins):
    import pandas as pd

    from provenflow.errors import ProvenflowError
    from provenflow.flows.data_run import data_run
    from provenflow.flows.sweep import sweep as sweep_flow
    from provenflow.modeling import training

    data_run(name="penguins", source=str(penguins))
    grid = {"n_estimators": [5, 10], "max_depth": [2, 4]}
    with pytest.raises(ProvenflowError, match="give cv"):
        sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF, grid=grid, refit="best")
    from sqlalchemy import event

    grid["max_features"] = ["sqrt", 0.5]  # 8 trials
    commits = []
    engine = Workspace.default().ledger.engine
    count = commits.append
    event.listen(engine, "commit", count)
    try:
        result = sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF, grid=grid, cv=3,
                            refit="best", max_concurrency=2)  # fmt: skip
    finally:
        event.remove(engine, "commit", count)
    assert (result["trials"], result["failed"]) == (8, [])
    # The sweep's run and the best trial's model run (each its running row, then its record), and the
    # 7 other trials together: not two transactions per trial.
    assert len(commits) <= 5, len(commits)
    board = result["leaderboard"]
    assert result["metric"] == "f1.cv_mean" and board[0]["model"] and [r["model"] for r in board[1:]] == [None] * 7
    scores = [r["metrics"]["f1.cv_mean"] for r in board]
    assert scores == sorted(scores, reverse=True)
    # the folds computed in the pool give model-run's own numbers
    frame = pd.read_csv(penguins)
    for record in board:
        estimator = training.import_estimator(RF, record["params"], 42)
        expected = training.cross_validate(frame, "species", estimator, 42, 0.25, 3)
        assert record["metrics"]["f1.cv_mean"] == pytest.approx(expected["f1.cv_mean"])
    with Workspace.default().ledger.reader() as s:
        trials = s.scalars(select(m.Run).where(m.Run.kind == "model")).all()
        assert len(trials) == 8 and all(t.state == "completed" for t in trials)  # every trial recorded
        assert len(s.scalars(select(m.ModelVersion)).all()) == 1  # only the best registered
        sweep_run = s.get(m.Run, result["run_id"])
        for trial in trials:  # each with its parameters, CV metrics and input, in the sweep's flow run
            assert trial.parameters["params"] in [r["params"] for r in board] and trial.parameters["cv"] == 3
            assert {"f1.cv_mean", "f1.cv_std"} <= {x.key for x in trial.metrics}
            assert [io.name for io in trial.io if io.direction == "input"] == [board[0]["dataset"]]
            assert trial.environment_hash == sweep_run.environment_hash and trial.code_seal
        cv_only = [t for t in trials if t.parameters.get("refit") is False]
        assert len(cv_only) == 7 and {t.prefect_flow_run_id for t in cv_only} == {sweep_run.prefect_flow_run_id}
        # The refit is a model run in the sweep's own flow run too, not a sub-flow run of its own
        # (creating and ending one cost ~0.3 s of a 1.8 s small sweep), registered and sealed.
        best_run = s.get(m.Run, board[0]["run_id"])
        assert best_run.flow == "model-run" and best_run.state == "completed" and "refit" not in best_run.parameters
        assert best_run.prefect_flow_run_id == sweep_run.prefect_flow_run_id
        assert s.scalars(select(m.ModelVersion)).one().seal
    again = sweep_flow(datasets=["penguins@latest"], target="species", estimator=RF, grid=grid, cv=3, refit="best")
    assert (again["trained"], again["reused"]) == (0, 8)
    assert {r["run_id"] for r in again["leaderboard"]} == {r["run_id"] for r in board}


class _Probe:
    """Put in the plan's rows: each time a process unpickles the rows, it writes its pid to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return _unpickled, (self.path,)


def _unpickled(path: str) -> str:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    return path  # a plain string from then on: copies of the rows in the worker log nothing


def test_each_worker_reads_the_rows_once_not_each_job(tmp_path):
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    from provenflow.modeling import training
    from provenflow.modeling.sweep_cv import cross_validate_trials
    from tests.conftest import PENGUINS

    frame = pd.read_csv(PENGUINS)[["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "species"]]
    trees = [DecisionTreeClassifier(max_depth=d, random_state=0) for d in (1, 2, 3, 4)]
    plan = training.cv_plan(frame, "species", trees[0], 3, 0.25, 3)
    log = tmp_path / "unpickled"
    plan.x_train.attrs["probe"] = _Probe(str(log))
    results = cross_validate_trials(plan, trees, jobs=2)
    # 4 trials × 3 folds = 12 jobs on 2 workers: the rows went to each worker once, not with each job
    pids = log.read_text().split()
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids), pids
    assert str(os.getpid()) not in pids
    for tree, result in zip(trees, results, strict=True):  # and the scores are the one-process ones
        assert result == pytest.approx(training.cross_validate(frame, "species", tree, 3, 0.25, 3))


def test_a_forest_is_scored_with_one_pass_over_the_rows():
    import pandas as pd
    from sklearn import metrics as skm
    from sklearn.ensemble import RandomForestClassifier

    from provenflow.modeling import training
    from tests.conftest import PENGUINS

    frame = pd.read_csv(PENGUINS)
    for target in ("species", "sex"):  # three classes, then two
        trained = training.train_and_evaluate(frame.dropna(subset=[target]), target,
                                              RandomForestClassifier(n_estimators=15, random_state=0), 0, 0.3)  # fmt: skip
        x_test = frame.dropna(subset=[target]).sample(120, random_state=1)
        y_test = x_test.pop(target)
        pipeline = trained.pipeline
        predicted, proba, classes = pipeline.predict(x_test), pipeline.predict_proba(x_test), list(pipeline.classes_)
        expected = {"accuracy": skm.accuracy_score(y_test, predicted)}
        if len(classes) == 2:
            expected["f1"] = skm.f1_score(y_test, predicted, pos_label=classes[-1])
            expected["roc_auc"] = skm.roc_auc_score(y_test, proba[:, 1])
        else:
            expected["f1"] = skm.f1_score(y_test, predicted, average="macro")
            expected["roc_auc"] = skm.roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)
        preprocess = pipeline.steps[0][1]
        passes: list[int] = []

        def counted(x, transform=preprocess.transform, passes=passes, **kw):
            passes.append(len(x))
            return transform(x, **kw)

        preprocess.transform = counted
        try:
            assert training.evaluate(pipeline, x_test, y_test, "classification") == expected  # the same numbers
        finally:
            del preprocess.transform
        assert passes == [120]  # predict_proba's pass; predict's class is its argmax
