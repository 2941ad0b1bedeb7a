"""Seeded synthetic data for the drift tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from provenflow.data.datasets import profile_of

ISLANDS = ["Biscoe", "Dream", "Torgersen"]
ISLAND_P = [0.5, 0.35, 0.15]
SEXES = ["female", "male"]
FEATURES_NUMERIC = ["bill_length", "body_mass", "flipper_count"]


def frame(
    rng: np.random.Generator, rows: int, *, shift: float = 0.0, dream: float | None = None
) -> pd.DataFrame:
    """Penguin-like data: three numeric features of different shapes and two categorical ones.
    ``shift`` moves ``bill_length`` by that many standard deviations; ``dream`` sets the share of the
    "Dream" island (the other islands keep their relative proportions)."""
    island_p = np.array(ISLAND_P)
    if dream is not None:
        others = np.delete(island_p, 1)
        island_p = np.insert(others / others.sum() * (1 - dream), 1, dream)
    return pd.DataFrame(
        {
            "bill_length": rng.normal(44.0, 5.0, rows) + shift * 5.0,
            "body_mass": rng.lognormal(8.3, 0.15, rows),
            "flipper_count": rng.poisson(12, rows).astype("float64"),
            "island": rng.choice(ISLANDS, rows, p=island_p),
            "sex": rng.choice(SEXES, rows),
        }
    )


def profile(data: pd.DataFrame) -> dict:
    return profile_of(data)
