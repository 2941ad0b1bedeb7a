"""A generated table with what real tables have: dates as text, an identifier, a high-cardinality
name, a constant, booleans with gaps, missing values and rows without a target."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_table(rows: int = 300, seed: int = 0, task: str = "classification") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    when = pd.DatetimeIndex(rng.choice(pd.date_range("2012-01-01", periods=1461, freq="D"), rows))
    x1 = rng.normal(size=rows)
    x2 = rng.integers(0, 50, rows).astype(float)
    colour = rng.choice(["red", "green", "blue", "grey"], rows)
    score = (x1 > 0).astype(int) + (colour == "red") + (when.month > 6)
    frame = pd.DataFrame(
        {
            "id": [f"C{i:06d}" for i in range(rows)],
            "date": when.strftime("%Y/%m/%d"),
            "name": [f"car model {i % 250}" for i in range(rows)],
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "constant": "same",
            "member": rng.choice([True, False], rows).astype(object),
            "target": [f"class{v}" for v in score] if task == "classification" else x1 * 3 + x2 + when.month,
        }
    )
    frame["target"] = frame["target"].astype(object)
    frame.loc[rng.random(rows) < 0.1, "x2"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "colour"] = None
    frame.loc[rng.random(rows) < 0.05, "date"] = None
    frame.loc[rng.random(rows) < 0.05, "member"] = None
    frame.loc[rng.random(rows) < 0.08, "target"] = None
    if task == "regression":
        frame["target"] = frame["target"].astype("float64")
    return frame
