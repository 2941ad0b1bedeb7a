from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from provenflow.ledger.refs import resolve_dataset
from provenflow.modeling import sweep
from provenflow.tracking.run import Run
from provenflow.tracking.source import CodeState, capture_code
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def key_trials(
    workspace: Workspace, trials: list[sweep.Trial], estimator: str, seed: int, test_size: float, cv: int | None,
    code: CodeState | None = None,
) -> list[tuple[sweep.Trial, str]]:  # fmt: skip
    """Each trial with its dataset pinned to a version (``@latest`` resolved once, so every trial
    and a re-run see the same data) and its key, over CODE (the sweep run's: the code its trials
    record; captured again when not given, four git commands)."""
    code = code or capture_code()
    code_id = f"{code.commit}+{code.diff_hash}" if code.commit or code.diff_hash else None
    with workspace.ledger.reader() as session:
        versions = {d: resolve_dataset(session, d) for d in {t.dataset for t in trials}}
    return [
        (
            sweep.Trial(versions[t.dataset].ref, t.params),
            sweep.trial_key(versions[t.dataset].hash, estimator, t.params, seed, test_size, cv, code_id),
        )
        for t in trials
    ]


@task(cache_policy=NO_CACHE)
def find_done(workspace: Workspace, keys: list[str], cv_only: bool = False) -> dict[str, str]:
    with workspace.ledger.reader() as session:
        return sweep.done_trials(session, keys, cv_only)


@task(cache_policy=NO_CACHE)
def train_trial(
    dataset: str, target: str, estimator: str, params: dict[str, Any], seed: int, test_size: float,
    cv: int | None, trial_key: str, name: str | None, ledger_block: str | None, store_block: str | None,
    cv_scores: dict[str, float] | None = None,
) -> str:  # fmt: skip
    """One trial: an ordinary model run (a sub-flow run), wherever the task runner put this task."""
    from provenflow.flows.model_run import model_run

    result = model_run(dataset=dataset, target=target, estimator=estimator, params=params, seed=seed,
                       test_size=test_size, name=name, cv=cv, trial_key=trial_key,
                       ledger_block=ledger_block, store_block=store_block, cv_scores=cv_scores)  # fmt: skip
    return result["run_id"]


@task(cache_policy=NO_CACHE)
def trial_records(workspace: Workspace, run_ids: list[str]) -> list[dict[str, Any]]:
    with workspace.ledger.reader() as session:
        return [sweep.trial_record(session, run_id) for run_id in run_ids]


@task(cache_policy=NO_CACHE)
def publish_leaderboard(board: list[dict[str, Any]], metric: str) -> None:
    rows = [
        {"rank": r["rank"], metric: r["metrics"].get(metric), "model": r["model"], "dataset": r["dataset"],
         "params": ", ".join(f"{k}={v}" for k, v in (r["params"] or {}).items()), "run": r["run_id"]}
        for r in board
    ]  # fmt: skip
    create_table_artifact(rows, key="sweep-leaderboard", description=f"Trials ranked by {metric}")


@task(cache_policy=NO_CACHE)
def cross_validate_trials(
    workspace: Workspace, todo: list[tuple[sweep.Trial, str]], target: str, estimator: str, seed: int,
    test_size: float, folds: int, jobs: int,
) -> list[dict[str, float] | str]:  # fmt: skip
    """Every trial's CV metrics (or its error), each dataset read once and every (trial, fold) fit
    one job in a pool of JOBS processes (``provenflow.modeling.sweep_cv``)."""
    from provenflow.modeling import training
    from provenflow.modeling.sweep_cv import cross_validate_trials as cross_validate
    from provenflow.tasks.model import load_dataset

    out: list[dict[str, float] | str] = [""] * len(todo)
    for dataset in dict.fromkeys(trial.dataset for trial, _ in todo):
        version, frame, _ = load_dataset.fn(workspace, dataset, None, seed)  # the rows model-run reads
        positions = [i for i, (trial, _) in enumerate(todo) if trial.dataset == dataset]
        estimators = [training.import_estimator(estimator, todo[i][0].params, seed) for i in positions]
        plan = training.cv_plan(frame, target, estimators[0], seed, test_size, folds, None, version.profile)
        for i, result in zip(positions, cross_validate(plan, estimators, jobs), strict=True):
            out[i] = result
    return out


@task(cache_policy=NO_CACHE)
def record_cv_trials(
    sweep_run: Run, trials: list[tuple[sweep.Trial, str, dict[str, float] | str]], target: str, estimator: str,
    seed: int, test_size: float, folds: int, name: str | None,
) -> list[str | None]:  # fmt: skip
    """Trials that are not refit (``refit="best"``), each a model run with its CV metrics and no
    model, or a failed run with its error; all in one ledger transaction. Their run ids (None for
    those that failed), in order."""
    from provenflow.ledger.refs import safe_name
    from provenflow.tracking.run import beside, error_message, record_all

    workspace = sweep_run.workspace
    with workspace.ledger.reader() as session:
        versions = {d: resolve_dataset(session, d) for d in {trial.dataset for trial, _, _ in trials}}
    runs = []
    for trial, key, result in trials:
        parameters = {
            "dataset": trial.dataset, "target": target, "estimator": estimator, "params": trial.params,
            "seed": seed, "test_size": test_size, "name": name, "cv": folds, "refit": False,
            "trial_key": sweep.cv_only_key(key),
        }  # fmt: skip
        label = name or safe_name(f"{trial.dataset.split('@')[0]}-{target}")
        run = beside(sweep_run, label, kind="model", flow="model-run", parameters=parameters)
        run.input(versions[trial.dataset])
        if isinstance(result, str):
            runs.append((run, error_message(sweep.TrialFailed(result))))  # as a run of start() says it
            continue
        run.log_metrics(result)
        run.warn("cross-validated only (refit=best): the sweep refit and registered its best trial alone",
                 level="notice")  # fmt: skip
        runs.append((run, None))
    record_all(workspace, runs)
    return [None if error else run.id for run, error in runs]
