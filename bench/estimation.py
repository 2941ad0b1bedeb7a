"""Estimated vs. realized accuracy (provenflow.monitoring.estimation, CBPE) on the synthetic shifts of
tests/test_estimation.py, as a Markdown table (the figures in README's "Estimated performance").

    PYTHONPATH=. .venv/bin/python bench/estimation.py      # ~1 min on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenflow.monitoring import estimation
from tests.test_estimation import (
    SEEDS,
    WINDOW,
    covariate_world,
    fit,
    prior_world,
    production,
    scored,
)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    print("| shift | seed | held-out | realized | CBPE | label-shift reading | band |")
    print("|---|---|---|---|---|---|---|")
    for seed in SEEDS:
        cases = []
        model, reference, held = fit(covariate_world, seed)
        for window in range(2):
            cases.append(
                ("inputs +0.75 σ", held, covariate_world(WINDOW, production(seed, window), shift=0.75))
            )
        cases.append(("no shift", held, covariate_world(WINDOW, production(seed, 2))))
        cases.append(("concept shift", held, covariate_world(WINDOW, production(seed, 3), concept=0.8)))
        cases.append(
            ("inputs +1.5 σ (beyond training)", held, covariate_world(WINDOW, production(seed, 4), shift=1.5))
        )
        for name, held_out, (x, y) in cases:
            _row(name, seed, held_out, *scored(model, reference, x, y))
        model, reference, held = fit(prior_world, seed)
        for window, positive in ((0, 0.95), (1, 0.05)):
            x, y = prior_world(WINDOW, production(seed, window), positive=positive)
            _row(f"classes 50 % → {positive:.0%}", seed, held, *scored(model, reference, x, y))
    for seed in SEEDS:  # a misspecified model: probabilities right on average, not everywhere
        x, y = covariate_world(16_000, np.random.default_rng(seed))
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=0.25, random_state=seed, stratify=y
        )
        linear = LogisticRegression().fit(x_train, y_train)
        reference = estimation.reference_of(linear, x_test, pd.Series(y_test), "linear", seed)
        held = float((linear.predict(x_test) == y_test).mean())
        _row("logistic regression, inputs +0.75 σ", seed, held,
             *scored(linear, reference, *covariate_world(WINDOW, production(seed, 0), shift=0.75)))  # fmt: skip


def _row(name: str, seed: int, held_out: float, estimate: dict[str, float], realized: float) -> None:
    print(
        f"| {name} | {seed} | {held_out:.3f} | {realized:.3f} | {estimate['accuracy']:.3f} | "
        f"{estimate['accuracy_label_shift']:.3f} | {estimate['accuracy_low']:.3f}–{estimate['accuracy_high']:.3f} |"
    )


if __name__ == "__main__":
    main()
