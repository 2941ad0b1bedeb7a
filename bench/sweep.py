"""A tracked sweep against scikit-learn's GridSearchCV on the same grid and folds.

24 random-forest trials (2 × 3 × 2 × 2 grid) on a 100k-row table, 3 folds: provenflow's `sweep`
flow (every trial a recorded model run with cross-validated metrics, its model stored and
registered) on the local thread task runner, then on a Dask cluster (a LocalCluster of two worker
processes on this machine), against `GridSearchCV(n_jobs=-1)` on the same training rows and folds,
recording nothing. Target: the tracked sweep ≤ 1.3× GridSearchCV's wall time. Per-trial overhead:
(sweep − GridSearchCV) ÷ trials. `--small`: 4 trials on 5k rows, for a quick look.
The `refit="best"` side is GridSearchCV's own shape (every trial cross-validated, every (trial, fold)
fit one job in a pool of processes, only the best refit, stored and registered; every trial still a
recorded run with its CV metrics); `--only-refit-best` measures that side alone against GridSearchCV.

    PYTHONPATH=. .venv/bin/python bench/sweep.py [--small] [--no-dask] [--only-refit-best]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import console, record, scratch_dir

RF = "sklearn.ensemble.RandomForestClassifier"
GRID = {"n_estimators": [10, 20], "max_depth": [4, 8, 12], "max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 10]}
SMALL_GRID = {"n_estimators": [10, 20], "max_depth": [4, 8]}
SEED, FOLDS, TEST_SIZE = 42, 3, 0.25
# GridSearchCV's time plus a Prefect flow run of the tracked sweep's shape doing nothing: below this,
# no sweep recorded as a Prefect flow run can go on this server, whatever provenflow does.
FLOOR = "GridSearchCV + Prefect floor"


def table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows).round(5) for i in range(8)})
    frame["label"] = np.where(frame["x0"] + frame["x1"] * frame["x2"] + rng.normal(scale=0.7, size=rows) > 0, "yes", "no")
    return frame


def use(folder: Path) -> None:
    """A fresh ledger and store for each side (a second sweep on the same ledger would reuse every trial)."""
    from provenflow.settings import get_settings
    from provenflow.workspace import close_all

    close_all()
    os.environ["PROVENFLOW_LEDGER_URL"] = f"sqlite:///{folder / 'ledger.db'}"
    os.environ["PROVENFLOW_STORE_URL"] = str(folder / "store")
    get_settings.cache_clear()


def tracked(csv: Path, folder: Path, grid: dict, **options) -> tuple[float, str]:
    from provenflow.flows.data_run import data_run
    from provenflow.flows.sweep import sweep

    use(folder)
    data_run(name="bench", source=str(csv))
    started = time.perf_counter()
    result = sweep(datasets=["bench@latest"], target="label", estimator=RF, grid=grid, cv=FOLDS, seed=SEED,
                   test_size=TEST_SIZE, **options)  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result["trained"] == result["trials"] and not result["failed"], result["failed"]
    return elapsed, result["prefect_url"].rstrip("/").rsplit("/", 1)[-1]


def prefect_floor(flow_run_id: str, times: int = 3) -> tuple[float, int, int]:
    """Seconds of a Prefect flow run with as many task runs and artifacts as the tracked sweep's
    flow run FLOW_RUN_ID, doing nothing else (median of TIMES): what a sweep recorded as a Prefect
    flow run pays this server whatever provenflow does. Also those two counts."""
    from prefect import task
    from prefect.artifacts import create_markdown_artifact
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from provenflow.flows._flow import flow  # the engine provenflow's flows run on (no 1 s heartbeat wait)

    with get_client(sync_client=True) as client:
        of_the_sweep = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        tasks = len(client.read_task_runs(flow_run_filter=of_the_sweep))
        artifacts = len(client.read_artifacts(flow_run_filter=of_the_sweep))

    @task(cache_policy=NO_CACHE)  # as provenflow's tasks
    def step() -> None:
        return None

    @flow(name="sweep-shaped-floor")
    def shaped() -> None:
        for _ in range(tasks):
            step()
        for i in range(artifacts):
            create_markdown_artifact(f"# artifact {i}", key=f"floor-{i}")

    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        shaped()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), tasks, artifacts


def _warm_pool() -> None:
    from joblib import Parallel, delayed

    Parallel(n_jobs=-1)(delayed(__import__)("sklearn.ensemble") for _ in range(4))


def grid_search(frame: pd.DataFrame, grid: dict) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

    x, y = frame.drop(columns=["label"]), frame["label"]
    x_train, _, y_train, _ = train_test_split(x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    started = time.perf_counter()
    search = GridSearchCV(RandomForestClassifier(random_state=SEED), grid, n_jobs=-1,
                          cv=StratifiedKFold(FOLDS, shuffle=True, random_state=SEED))  # fmt: skip
    search.fit(x_train, y_train)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="4 trials on 5k rows")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask cluster")
    parser.add_argument("--only-refit-best", action="store_true", help="only GridSearchCV and refit='best'")
    parser.add_argument("--reps", type=int, help="refit-best sweeps to take the median of (default 3 small, 1 full)")
    args = parser.parse_args()
    rows, grid = (5_000, SMALL_GRID) if args.small else (100_000, GRID)
    trials = int(np.prod([len(v) for v in grid.values()]))
    cores = os.cpu_count() or 1

    from provenflow.platform import server

    prefect = None
    if server.connect(quiet=True):  # no Prefect server here: a throwaway one (the tests' own helper)
        import tempfile

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.services import start_prefect_server

        prefect = start_prefect_server(Path(tempfile.mkdtemp(prefix="bench-sweep-prefect-")), None)
        os.environ["PREFECT_API_URL"] = prefect.api_url
    try:
        times = measure(rows, grid, cores, dask=not args.no_dask, only_best=args.only_refit_best,
                        reps=args.reps or (3 if args.small else 1))  # fmt: skip
    finally:
        if prefect:
            prefect.stop()
    report(times, rows, grid, trials, args.small)


def measure(rows: int, grid: dict, cores: int, dask: bool, only_best: bool = False, reps: int = 1) -> dict[str, float]:
    with scratch_dir("sweep") as tmp:
        csv = tmp / "table.csv"
        frame = table(rows)
        frame.to_csv(csv, index=False)
        _warm_pool()  # both sides then find the same warm worker processes (GridSearchCV would pay their start)
        times = {"GridSearchCV(n_jobs=-1)": float(np.median([grid_search(frame, grid) for _ in range(reps)]))}
        console.print(f"GridSearchCV: {times['GridSearchCV(n_jobs=-1)']:.2f} s")  # a long run shows progress
        side = f"sweep, refit best, processes × {cores}"
        runs = [tracked(csv, tmp / f"best-{i}", grid, max_concurrency=cores, refit="best") for i in range(reps)]
        times[side], flow_run = float(np.median([seconds for seconds, _ in runs])), runs[0][1]
        console.print(f"{side}: {times[side]:.2f} s (median of {reps}: {', '.join(f'{t:.2f}' for t, _ in runs)})")
        floor, tasks, artifacts = prefect_floor(flow_run)
        times[FLOOR] = times["GridSearchCV(n_jobs=-1)"] + floor
        console.print(f"a Prefect flow run of {tasks} task runs and {artifacts} artifacts, no work: {floor:.2f} s")
        if only_best:
            return times
        times[f"sweep, threads × {cores}"], _ = tracked(csv, tmp / "local", grid, max_concurrency=cores)
        console.print(f"sweep, threads: {times[f'sweep, threads × {cores}']:.2f} s")
        if dask:
            from distributed import LocalCluster

            # Workers are processes started now: they inherit the ledger/store settings and the path.
            os.environ["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
            use(tmp / "dask")
            with LocalCluster(n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                times[f"sweep, Dask {cores} workers"], _ = tracked(csv, tmp / "dask", grid, dask=cluster.scheduler_address,
                                                                max_concurrency=cores)  # fmt: skip
    return times


def report(times: dict[str, float], rows: int, grid: dict, trials: int, small: bool) -> None:
    cores = os.cpu_count() or 1
    anchor = times["GridSearchCV(n_jobs=-1)"]
    size = f"{trials} trials, {rows:,} rows, {FOLDS} folds"
    console.print(f"[bold]sweep vs GridSearchCV: {size}, {cores} cores")
    console.print(f"{'side':<28} {'wall s':>8} {'÷ GridSearchCV':>15} {'overhead s/trial':>17}")
    for side, seconds in times.items():
        ratio = seconds / anchor
        console.print(f"{side:<28} {seconds:>8.2f} {ratio:>15.2f} {(seconds - anchor) / trials:>17.3f}")
        if side == FLOOR:
            record(f"sweep: (GridSearchCV + a Prefect flow run of the sweep's shape) ÷ GridSearchCV ({size})",
                   round(ratio, 3), "×", note="the floor of any sweep recorded as one Prefect flow run")  # fmt: skip
        elif side != "GridSearchCV(n_jobs=-1)":
            name = f"sweep: {side} ÷ GridSearchCV" + ("" if not small else f" ({size})")
            record(name, round(ratio, 3), "×", target=1.5 if small else 1.3, better="lower",
                   note=f"{size}; overhead {(seconds - anchor) / trials:.3f} s/trial",
                   peer="GridSearchCV(n_jobs=-1)")  # fmt: skip


if __name__ == "__main__":
    main()
