"""sweep: one tracked model run per trial (datasets × a parameter grid, or seeded random draws from
it) on a task runner (threads, processes or a Dask cluster), skipping trials already done; the
sweep is a run whose inputs are its trials' model versions, with a leaderboard."""

from __future__ import annotations

import json
import sys
from typing import Any

from prefect.futures import wait

import provenflow
from provenflow.errors import ProvenflowError
from provenflow.flows._flow import flow
from provenflow.modeling import sweep as sweeping
from provenflow.tasks.sweep import (
    cross_validate_trials,
    find_done,
    key_trials,
    publish_leaderboard,
    record_cv_trials,
    train_trial,
    trial_records,
)
from provenflow.tasks.workspace import open_workspace


@flow(name="sweep", flow_run_name="sweep-{estimator}")
def sweep(
    datasets: list[str],
    target: str,
    estimator: str,
    grid: dict[str, list[Any]],
    random: int | None = None,
    seed: int = 42,
    test_size: float = 0.25,
    cv: int | None = None,
    max_concurrency: int = 2,
    runner: str = "threads",
    dask: str | None = None,
    dask_block: str | None = None,
    metric: str | None = None,
    name: str | None = None,
    promote_best_to: str | None = None,
    auto_approve: bool = False,
    ledger_block: str | None = None,
    store_block: str | None = None,
    max_trials: int | None = None,
    refit: str = "all",
) -> dict:
    """Train ESTIMATOR once per trial: each of DATASETS × each combination of GRID
    ({"max_depth": [3, 5]}), or RANDOM combinations drawn with SEED. A trial with the same dataset
    version, estimator, parameters, seed, folds and code as an earlier completed run is not trained
    again: that run is reused. At most MAX_CONCURRENCY trials run at once, in RUNNER ("threads" or
    "processes") or on the Dask cluster at DASK (tcp://host:8786) or in the String block DASK_BLOCK.
    The leaderboard ranks trials by METRIC; PROMOTE_BEST_TO sends the best through the promote flow.
    More trials than MAX_TRIALS (default sweeping.DEFAULT_MAX_TRIALS) are refused before any runs.
    REFIT "best" (needs CV, as GridSearchCV's refit=True): every trial is cross-validated in one pool
    of MAX_CONCURRENCY processes over rows read once and recorded as a model run with its CV metrics,
    and only the best is trained on all its training rows, stored and registered (a model run)."""
    if refit not in ("all", "best"):
        raise ProvenflowError(
            f"refit {refit!r} is 'all' (every trial's model) or 'best' (the best trial's only)"
        )
    if refit == "best" and not cv:
        raise ProvenflowError(
            "refit 'best' ranks the trials by their cross-validated metrics: give cv (e.g. --cv 3)"
        )
    if refit == "best" and (dask or dask_block):
        raise ProvenflowError("refit 'best' runs its folds in local processes; leave out the Dask address")
    trials = sweeping.plan(datasets, grid, random, seed, max_trials)  # refused before anything is recorded
    workspace = open_workspace(ledger_block, store_block)
    parameters = {
        "datasets": datasets, "target": target, "estimator": estimator, "grid": grid, "random": random,
        "seed": seed, "test_size": test_size, "cv": cv, "max_concurrency": max_concurrency, "metric": metric,
    }  # fmt: skip
    if refit != "all":
        parameters["refit"] = refit
    with provenflow.start(f"sweep-{estimator.rsplit('.', 1)[-1]}", kind="sweep", flow="sweep",
                          parameters=parameters, workspace=workspace) as run:  # fmt: skip
        keyed = key_trials(workspace, trials, estimator, seed, test_size, cv, run.code)
        keys = [key for _, key in keyed]
        # With refit "best", a trial cross-validated by an earlier refit-best sweep is done too.
        done = find_done(workspace, keys, cv_only=refit == "best")
        for trial, key in keyed:
            if key in done:
                print(f"trial {trial.dataset} {trial.params}: reusing run {done[key]} (same data, "
                      "parameters, seed and code)", file=sys.stderr, flush=True)  # fmt: skip
        todo = [(trial, key) for trial, key in keyed if key not in done]
        common = dict(target=target, estimator=estimator, seed=seed, test_size=test_size, cv=cv, name=name,
                      ledger_block=ledger_block, store_block=store_block)  # fmt: skip
        if refit == "best":
            trained, failed = refit_best(run, todo, done, max_concurrency, metric, common)
        else:
            trained, failed = run_trials(todo, max_concurrency, runner, dask, dask_block, common)
        for message in failed:
            run.warn(message)
        ids = {**done, **trained}
        records = trial_records(workspace, [ids[key] for _, key in keyed if key in ids])
        if not records:
            raise ProvenflowError(f"every trial of the sweep failed: {failed[0] if failed else 'no trials'}")
        metric = sweeping.rank_metric(records, metric)
        board = sweeping.leaderboard(records, metric)
        publish_leaderboard(board, metric)
        for record in board:
            if record["model"]:
                run.input(record["model"])
        stored = workspace.store.put_bytes(
            json.dumps({"metric": metric, "trials": board}, default=str).encode()
        )
        run.link("output", "file", "leaderboard.json", stored.digest)
        run.log_metrics({"trials": len(keyed), "trained": len(trained), "reused": len(done),
                         "failed": len(failed), f"best.{metric}": board[0]["metrics"][metric]})  # fmt: skip
    promotion = None
    if promote_best_to:
        from provenflow.flows.promote import promote

        promotion = promote(model=board[0]["model"], to=promote_best_to, auto_approve=auto_approve,
                            ledger_block=ledger_block, store_block=store_block)  # fmt: skip
    return {
        "run_id": run.id,
        "metric": metric,
        "trials": len(keyed),
        "trained": len(trained),
        "reused": len(done),
        "failed": failed,
        "leaderboard": board,
        "best": board[0],
        "promotion": promotion,
        "prefect_url": run.prefect_url,
    }


def refit_best(
    run, todo: list, done: dict[str, str], jobs: int, metric: str | None, common: dict
) -> tuple[dict[str, str], list[str]]:
    """Cross-validate every trial to do in one pool of processes, record each as a run with its CV
    metrics (all in one transaction), then train, store and register the best trial (a model run)
    unless it already has a model; (trial key → run id, messages of the trials that failed)."""
    c, workspace = common, run.workspace
    scores = cross_validate_trials(workspace, todo, c["target"], c["estimator"], c["seed"], c["test_size"], c["cv"],
                                   max(1, jobs))  # fmt: skip
    failed = [f"trial {trial.dataset} {trial.params} failed: {result.splitlines()[0][:300]}"
              for (trial, _), result in zip(todo, scores, strict=True) if isinstance(result, str)]  # fmt: skip
    scored = [
        (trial, key, result)
        for (trial, key), result in zip(todo, scores, strict=True)
        if isinstance(result, dict)
    ]
    keys = {run_id: key for key, run_id in done.items()}
    candidates = [
        {"key": key, "metrics": result, "model": None, "trial": trial} for trial, key, result in scored
    ]
    if done:
        candidates += [{"key": keys[r["run_id"]], "metrics": r["metrics"], "model": r["model"],
                        "trial": sweeping.Trial(r["dataset"], r["params"] or {})}
                       for r in trial_records(workspace, list(done.values()))]  # fmt: skip
    best = None
    if candidates:
        best = sweeping.leaderboard(candidates, sweeping.rank_metric(candidates, metric))[0]
    # Every trial but the one refit below: its CV metrics, or its error (a failed run).
    recorded = [(trial, key, result) for (trial, key), result in zip(todo, scores, strict=True)
                if best is None or key != best["key"]]  # fmt: skip
    ids = record_cv_trials(run, recorded, c["target"], c["estimator"], c["seed"], c["test_size"], c["cv"],
                           c["name"]) if recorded else []  # fmt: skip
    trained = {key: run_id for (_, key, _), run_id in zip(recorded, ids, strict=True) if run_id}
    if best and not best["model"]:
        trial = best["trial"]
        parameters = {"dataset": trial.dataset, "params": trial.params, "trial_key": best["key"], **common}
        if any(key == best["key"] for _, key, _ in scored):  # its folds are fitted: not again
            parameters["cv_scores"] = best["metrics"]
        try:
            trained[best["key"]] = refit_trial(**parameters)
        except Exception as exc:
            failed.append(f"trial {trial.dataset} {trial.params} failed: {str(exc).splitlines()[0][:300]}")
    return trained, failed


def refit_trial(**parameters: Any) -> str:
    """The best trial's model run, in the sweep's own flow run: model-run's steps (its tasks show
    under the sweep, its run card, leaderboard and model card on the sweep's page), not a sub-flow
    run as ``train_trial`` makes. Creating and ending a sub-flow run cost ~0.3 s of a 1.8 s small
    sweep, where GridSearchCV's whole search took 0.5 s. ``Flow.fn`` is Prefect's way to call a
    flow's body without a flow run of its own; the trial's dataset is pinned, so model-run's
    renaming of its flow run (for ``@latest``) never renames the sweep's."""
    from provenflow.flows.model_run import model_run

    return model_run.fn(**parameters)["run_id"]


def run_trials(
    todo: list, limit: int, runner: str, dask: str | None, dask_block: str | None, common: dict
) -> tuple[dict[str, str], list[str]]:
    """Submit the trials to the task runner, never more than LIMIT at once; (trial key → run id of
    those that completed, messages of those that failed)."""
    if limit < 1:
        raise ProvenflowError(f"max concurrency {limit} must be at least 1")
    trained: dict[str, str] = {}
    failed: list[str] = []
    pending: dict = {}

    def settle(futures) -> None:
        for future in futures:
            trial, key = pending.pop(future)
            try:
                trained[key] = future.result()
            except Exception as exc:  # a trial's failure is recorded by its own run; the sweep goes on
                failed.append(
                    f"trial {trial.dataset} {trial.params} failed: {str(exc).splitlines()[0][:300]}"
                )

    with task_runner(limit, runner, dask, dask_block) as task_runner_:
        for trial, key in todo:
            while len(pending) >= limit:
                settle(wait(list(pending), timeout=0.5).done)
            parameters = {"dataset": trial.dataset, "params": trial.params, "trial_key": key, **common}
            pending[task_runner_.submit(train_trial, parameters)] = (trial, key)
        while pending:
            settle(wait(list(pending)).done)
    return trained, failed


def task_runner(limit: int, runner: str, dask: str | None, dask_block: str | None):
    if dask or dask_block:
        from prefect_dask import DaskTaskRunner

        if dask_block:
            from prefect.blocks.system import String

            dask = String.load(dask_block).value
        return DaskTaskRunner(address=dask)
    if runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=limit)
    if runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=limit)
    raise ProvenflowError(f"runner {runner!r} is not threads or processes (or give a Dask address)")
