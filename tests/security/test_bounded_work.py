"""Work bounded by settings, not by what a small input asks for (issue 19, item 5): sweeps."""

from __future__ import annotations

import itertools
import random
import time
import tracemalloc

import pytest

from provenflow.errors import TrainingError
from provenflow.modeling.sweep import DEFAULT_MAX_TRIALS, plan

HUGE = {f"p{i}": list(range(10)) for i in range(7)}  # 10^7 combinations


def test_random_draws_do_not_build_the_grid():
    tracemalloc.start()
    started = time.perf_counter()
    trials = plan(["d@1"], HUGE, draws=3, seed=1)
    took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(trials) == 3 and len({tuple(t.params.values()) for t in trials}) == 3
    assert peak < 5 * 1024 * 1024 and took < 1, (peak, took)  # was 2.1 GB


def test_draws_are_the_ones_the_whole_grid_gave():
    grid = {"a": [1, 2, 3], "b": ["x", "y"], "c": [None, 0.5, 1.0, 2.0]}
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    expected = random.Random(7).sample(combos, 5)
    assert [t.params for t in plan(["d@1"], grid, draws=5, seed=7)] == expected


def test_a_grid_above_the_trial_limit_is_refused_unless_allowed():
    with pytest.raises(TrainingError, match="--max-trials"):
        plan(["d@1"], {"a": list(range(1000)), "b": list(range(1000))})
    grid = {"a": [1, 2, 3], "b": [1, 2, 3]}
    with pytest.raises(TrainingError, match="18 trials"):
        plan(["d@1", "e@1"], grid, max_trials=10)
    assert len(plan(["d@1", "e@1"], grid, max_trials=18)) == 18
    assert DEFAULT_MAX_TRIALS >= 100


def wide_csv(path, columns: int, rows: int = 6) -> str:
    header = ",".join(f"c{i}" for i in range(columns))
    body = "\n".join(",".join(str((r + i) % 7) for i in range(columns)) for r in range(rows))
    path.write_text(header + "\n" + body + "\n")
    return str(path)


def test_a_table_wider_than_the_column_limit_is_refused_in_one_line(tmp_path, monkeypatch):
    from provenflow.data import ingest
    from provenflow.errors import DataError
    from provenflow.settings import get_settings

    monkeypatch.setenv("PROVENFLOW_MAX_COLUMNS", "50")
    get_settings.cache_clear()
    try:
        (tmp_path / "work").mkdir()
        started = time.perf_counter()
        with pytest.raises(DataError) as refused:
            ingest.ingest(wide_csv(tmp_path / "wide.csv", 51), str(tmp_path / "work"), None)
        assert time.perf_counter() - started < 5
        message = str(refused.value)
        assert "51 columns" in message and "PROVENFLOW_MAX_COLUMNS" in message and "\n" not in message
        assert get_settings().max_columns == 50
    finally:
        get_settings.cache_clear()


def test_great_expectations_cost_is_bounded_with_a_notice(monkeypatch):
    import pandas as pd

    from provenflow.data import validation
    from provenflow.settings import get_settings

    frame = pd.DataFrame({f"c{i}": [1, 2, 3] for i in range(300)})
    suite = validation.default_suite("wide", frame)
    assert len(suite["expectations"]) > 600
    monkeypatch.setenv("PROVENFLOW_MAX_EXPECTATIONS", "100")
    get_settings.cache_clear()
    try:
        started = time.perf_counter()
        report = validation.validate_dataset(frame, validation.Suite(suite_bytes(suite), "wide.json"))
        took = time.perf_counter() - started
    finally:
        get_settings.cache_clear()
    assert report.evaluated == 100 and report.skipped == len(suite["expectations"]) - 100
    assert "PROVENFLOW_MAX_EXPECTATIONS" in report.notice
    print(f"\n100 of {len(suite['expectations'])} expectations in {took:.1f} s")


def suite_bytes(suite: dict) -> bytes:
    from provenflow.data.validation import suite_bytes as encode

    return encode(suite)
