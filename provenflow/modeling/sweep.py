"""Sweeps: the trials of a parameter/dataset sweep, their keys, the ledger lookup that makes a
re-run skip trials already done, and the leaderboard. Pure functions; no Prefect here."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from provenflow.errors import TrainingError
from provenflow.ledger import models as m
from provenflow.modeling.training import parse_param

# A grid larger than this many trials (datasets x combinations) is refused unless --max-trials allows
# it: a 10^6-trial grid from four --grid options is a typo far more often than a plan.
DEFAULT_MAX_TRIALS = 1000

# Metrics where a smaller value is better; every other metric ranks larger-first.
LOWER_IS_BETTER = ("rmse", "mae")


class TrialFailed(TrainingError):
    """A trial's fit failed (its run is recorded as failed; the sweep goes on)."""


@dataclass(frozen=True)
class Trial:
    dataset: str  # NAME@VERSION as given; resolved to a hash for the key
    params: dict[str, Any]


def parse_grid(texts: Sequence[str]) -> dict[str, list[Any]]:
    """``["n_estimators=10,50", "max_depth=3,None"]`` → {"n_estimators": [10, 50], "max_depth": [3, None]};
    each value is read like ``--param``'s (JSON when it parses, else a string)."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        if "=" not in text:
            raise TrainingError(f"grid entry {text!r} is not key=v1,v2,…; e.g. --grid max_depth=3,5,None")
        key, raw = text.split("=", 1)
        values = [parse_param(f"{key}={v}")[1] for v in raw.split(",") if v.strip()]
        if not key.strip() or not values:
            raise TrainingError(f"grid entry {text!r} needs a name and at least one value")
        grid[key.strip()] = values
    return grid


def plan(
    datasets: Sequence[str],
    grid: dict[str, list[Any]],
    draws: int | None = None,
    seed: int = 0,
    max_trials: int | None = None,
) -> list[Trial]:
    """The trials: every dataset × every combination of the grid, or DRAWS combinations drawn
    (without repeats, seeded so the same seed plans the same trials) from it, for each dataset.

    Draws pick combination numbers, never building the grid (10^7 combinations cost 2.1 GB as a
    list); number i is read digit by digit in the grid's sizes, the last key fastest, as
    itertools.product orders them, so the draws are those of sampling the whole list. More trials
    than ``max_trials`` (default DEFAULT_MAX_TRIALS) are refused."""
    if not datasets:
        raise TrainingError("a sweep needs at least one --dataset")
    keys = list(grid)
    sizes = [len(values) for values in grid.values()]
    total = math.prod(sizes)
    if draws is not None:
        if draws < 1:
            raise TrainingError(f"--random {draws} must be at least 1")
        numbers = random.Random(seed).sample(range(total), min(draws, total))
    else:
        numbers = range(total)
    limit = DEFAULT_MAX_TRIALS if max_trials is None else max_trials
    trials = len(numbers) * len(datasets)
    if trials > limit:
        raise TrainingError(
            f"the sweep has {trials} trials ({len(datasets)} datasets × {len(numbers)} combinations), more "
            f"than the limit of {limit}; draw some with --random N, or allow them with --max-trials {trials}"
        )
    combos = [_combination(keys, grid, sizes, n) for n in numbers]
    return [Trial(d, c) for d in datasets for c in combos]


def _combination(
    keys: list[str], grid: dict[str, list[Any]], sizes: list[int], number: int
) -> dict[str, Any]:
    picked = []
    for size in reversed(sizes):
        number, digit = divmod(number, size)
        picked.append(digit)
    return {key: grid[key][digit] for key, digit in zip(keys, reversed(picked), strict=True)}


def trial_key(dataset_hash: str, estimator: str, params: dict[str, Any], seed: int, test_size: float,
              cv: int | None, code: str | None) -> str:  # fmt: skip
    """What makes two trials the same: the dataset version's content, the estimator, its
    parameters, the seed, the split, the folds and the code (commit + uncommitted diff)."""
    text = json.dumps(
        [dataset_hash, estimator, params, seed, test_size, cv, code], sort_keys=True, default=repr
    )
    return hashlib.sha256(text.encode()).hexdigest()


def cv_only_key(key: str) -> str:
    """The key a trial recorded with its cross-validated metrics only (``refit="best"``) carries: not
    its own key, so a sweep that wants every trial's model does not take it as done."""
    return hashlib.sha256(f"{key}:cv-only".encode()).hexdigest()


def done_trials(session, keys: Sequence[str], cv_only: bool = False) -> dict[str, str]:
    """trial key → id of the latest completed model run recorded with that key; with CV_ONLY (a
    refit-best sweep), also of a key's trial that an earlier refit-best sweep cross-validated only."""
    found = _completed(session, keys)
    if cv_only:
        only = {cv_only_key(key): key for key in keys if key not in found}
        found |= {only[k]: run_id for k, run_id in _completed(session, list(only)).items()}
    return found


def _completed(session, keys: Sequence[str]) -> dict[str, str]:
    wanted = sorted(set(keys))
    found: dict[str, str] = {}
    for start in range(
        0, len(wanted), 500
    ):  # an indexed IN, in chunks below any driver's bound-parameter limit
        rows = session.execute(
            select(m.Run.trial_key, m.Run.id)
            .where(m.Run.trial_key.in_(wanted[start : start + 500]), m.Run.kind == "model",
                   m.Run.state == "completed")
            .order_by(m.Run.started_at)
        )  # fmt: skip
        found.update((key, run_id) for key, run_id in rows)
    return found


def trial_record(session, run_id: str) -> dict[str, Any]:
    """A trial's result as the ledger has it: its run, model version, parameters and metrics."""
    run = session.get(m.Run, run_id)
    # The version the run output, which an earlier run may have made (a refit whose model came out
    # byte for byte the same is that version, not a new one).
    version = session.scalars(
        select(m.ModelVersion)
        .join(m.RunIO, m.RunIO.model_version_id == m.ModelVersion.id)
        .where(m.RunIO.run_id == run_id, m.RunIO.direction == "output")
    ).first()
    metrics = {x.key: x.value for x in run.metrics if x.step is None}
    return {
        "run_id": run_id,
        "trial_key": run.parameters.get("trial_key"),
        "dataset": run.parameters.get("dataset"),
        "params": run.parameters.get("params"),
        "model": version.ref if version else None,
        "model_version_id": version.id if version else None,
        "metrics": metrics,
    }


def rank_metric(records: Sequence[dict[str, Any]], metric: str | None) -> str:
    """The metric a leaderboard ranks by: the one asked for, else the cross-validated mean of
    f1/r2 when there are folds, else f1 (classification) or r2 (regression)."""
    names = set().union(*(r["metrics"] for r in records)) if records else set()
    if metric:
        if metric not in names:
            raise TrainingError(
                f"metric {metric!r} is not one the trials recorded: {', '.join(sorted(names))}"
            )
        return metric
    for candidate in ("f1.cv_mean", "r2.cv_mean", "f1", "r2", "accuracy"):
        if candidate in names:
            return candidate
    raise TrainingError(f"no metric to rank the trials by; choose one of {', '.join(sorted(names))}")


def leaderboard(records: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The trials best-first by METRIC, each with its rank."""
    lower = metric.split(".")[0] in LOWER_IS_BETTER
    ordered = sorted(records, key=lambda r: r["metrics"].get(metric, float("inf") if lower else float("-inf")),
                     reverse=not lower)  # fmt: skip
    return [{"rank": i + 1, **r} for i, r in enumerate(ordered)]
