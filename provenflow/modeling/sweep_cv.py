"""Cross-validating a sweep's trials together, as GridSearchCV does: each (trial, fold) fit is one
job in one pool of worker processes, over rows read once.

Why processes: scikit-learn's tree builders and most estimators hold the GIL for most of a fit, so
a thread per trial kept ~0.76 of 2 cores busy where GridSearchCV(n_jobs=-1) kept ~1.5. Why folds as
jobs: a trial of 3 folds is 3 jobs, so 2 cores stay busy until the last fold, not the last trial.
Why once: the plan (training rows, labels, folds) is written to one file per call and each worker
reads it once, on its first job, and keeps it; a job carries only its estimator and fold number.
Handing the plan to every job (joblib pickles what is not a large numeric array: the labels, the
fold indices) cost each of a 24-trial sweep's 72 jobs ~3 MB of pickling on 100k rows.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from provenflow.modeling.training import CvPlan, cv_summary, fold_score

# In a worker process: the plan file it read last and its contents (one sweep's plan at a time).
_loaded: dict[str, CvPlan] = {}
# How many times this process read a plan file (tests read it to see the rows were read once).
reads = 0


def cross_validate_trials(plan: CvPlan, estimators: list[Any], jobs: int) -> list[dict[str, float] | str]:
    """Per estimator, in order: its metrics' CV mean and std over the plan's folds, or the first
    fold's error message when it failed (the other trials go on)."""
    work = [(i, fold) for i in range(len(estimators)) for fold in range(len(plan.splits))]
    if jobs == 1 or len(work) == 1:
        results = [_fold(plan, estimators[i], fold) for i, fold in work]
    else:
        from joblib import Parallel, delayed

        # /dev/shm when there is one: the file never touches a disk (joblib's memmaps go there too).
        where = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        with tempfile.TemporaryDirectory(prefix="provenflow-sweep-", dir=where) as folder:
            path = Path(folder) / "plan.pickle"
            path.write_bytes(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
            results = Parallel(n_jobs=jobs, backend="loky")(
                delayed(_fold_from)(str(path), estimators[i], fold) for i, fold in work
            )
    by_trial: list[list] = [[] for _ in estimators]
    for (i, _), result in zip(work, results, strict=True):
        by_trial[i].append(result)
    out: list[dict[str, float] | str] = []
    for scores in by_trial:
        errors = [s for s in scores if isinstance(s, str)]
        out.append(errors[0] if errors else cv_summary(scores))
    return out


def _fold_from(path: str, estimator: Any, fold: int) -> dict[str, float] | str:
    """In a worker: one fold, over the plan at PATH (read on this worker's first job of the call)."""
    global reads
    plan = _loaded.get(path)
    if plan is None:
        _loaded.clear()  # a worker lives on between sweeps: keep one plan, not every one it saw
        plan = _loaded[path] = pickle.loads(Path(path).read_bytes())
        reads += 1
    return _fold(plan, estimator, fold)


def _fold(plan: CvPlan, estimator: Any, fold: int) -> dict[str, float] | str:
    fit, score = plan.splits[fold]
    try:
        return fold_score(plan, estimator, fit, score)
    except Exception as exc:  # one trial's bad parameters must not stop the others
        return f"{type(exc).__name__}: {exc}"
