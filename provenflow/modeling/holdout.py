"""The rows a promotion gate scores on: the candidate's held-out rows, less those the alias's holder
trained on.

Both models are scored on the candidate's held-out rows. When the holder was trained on other data (a
champion trained on last month's version, a challenger on this month's, which holds last month's
rows too), about as many of those rows as it trained on are rows it has seen: a team's retrain was
rejected against a champion scored 43.72 RMSE, 41.17 on the 754 of the 1,536 rows it had trained on
and 46.05 on the others (46.28 on its own held-out rows). Rows are matched by content, on the columns
both tables have, numbers compared as float64 (a column read as int64 in one version and double in
the next is the same values).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from provenflow.data import datasets
from provenflow.digest import Digest
from provenflow.ledger import models as m
from provenflow.modeling import training
from provenflow.storage.store import ContentStore

MIN_ROWS = 20
"""Fewer rows left than this: the gate would compare noise; it says so instead."""


def row_keys(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in COLUMNS, equal for equal values whatever their dtype."""
    normalized = pd.DataFrame(
        {
            c: frame[c].astype("float64")
            if is_numeric_dtype(frame[c]) or is_bool_dtype(frame[c])
            else frame[c].astype("string")
            for c in columns
        }
    )
    return pd.util.hash_pandas_object(normalized, index=False).to_numpy()


def trained_on(
    store: ContentStore,
    run: m.Run | None,
    target: str,
    task: str | None,
    scored_on: str,
    held_out: str | None = None,
) -> pd.DataFrame | None:
    """The rows RUN trained on, as far as the ledger knows them: a model run's training split of its
    dataset (its seed and test size); a team's run's datasets less the HELD_OUT rows its log_model was
    given as eval= (stored); without those, every row of its datasets unless one of them is SCORED_ON,
    the dataset the gate's rows come from (all of them would go; its held-out rows are then as fair
    to both as the ledger can tell). None when there is nothing to leave out."""
    if run is None:
        return None
    inputs = [io.dataset_version for io in run.io if io.direction == "input" and io.dataset_version]
    if not inputs or (run.flow != "model-run" and not held_out and scored_on in {v.hash for v in inputs}):
        return None
    p = run.parameters or {}
    if run.flow == "model-run" and task:  # one dataset, its split known
        frame = datasets.load_table(store, Digest(inputs[0].hash))
        if target in frame.columns:
            x_train, _, y_train, _ = training.split_rows(
                frame, target, task, int(p.get("seed", 42)), float(p.get("test_size", 0.25)),
                forced=p.get("task") == "classification",
            )  # fmt: skip
            return x_train.assign(**{target: y_train})
    read = pd.concat([datasets.load_table(store, Digest(v.hash)) for v in inputs], ignore_index=True, join="outer")
    if held_out:
        read = read[_absent(read, datasets.load_table(store, Digest(held_out)))]
    return read


def unseen(x: pd.DataFrame, y: pd.Series, seen: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.Series, int]:
    """X and Y less the rows that are in SEEN (compared on the columns both have); how many left out."""
    if seen is None:
        return x, y, 0
    keep = _absent(x.assign(**{str(y.name): y}), seen)
    return x[keep], y[keep], int((~keep).sum())


def _absent(rows: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """Which ROWS are not in OTHER, compared on the columns both have (all, when they share none)."""
    columns = [c for c in rows.columns if c in other.columns]
    if not columns:
        return np.ones(len(rows), dtype=bool)
    return ~np.isin(row_keys(rows, columns), row_keys(other, columns))
