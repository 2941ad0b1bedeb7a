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
