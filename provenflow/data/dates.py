"""Dates in text columns: the format most values are written in, parsing them, counting them.

The lowest layer of column roles: a dataset profile (``datasets.profile_of``) counts a text column's
dates with ``count_dates``, the roles (``features``) decide on that count, and a model's
``DateFeatures`` and the serving input check parse with ``parse_dates``. Needs only pandas.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Iterable

import pandas as pd

# Values tried per column to guess a date format.
FORMAT_SAMPLE = 20


def date_format(values: Iterable) -> str | None:
    """The strftime format most of these text values are written in, or None if none looks like a date.

    Each value's guess is a candidate, and so is its day/month twin; the format that parses the most
    values wins. pandas guesses 06/10/2026 as month first and 18/11/2026 as day first, so a column of
    day-first dates voted month first whenever most sampled days were ≤ 12, and then most of its
    values did not parse: the column was taken for an identifier and left out of the model."""
    from pandas.tseries.api import guess_datetime_format

    texts = [v.strip() for v in values if isinstance(v, str) and any(ch.isdigit() for ch in v)]
    guesses: dict[str, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Parsing dates in %d/%m/%Y format when dayfirst=False"
        for text in texts:
            guessed = guess_datetime_format(text)
            if guessed and guessed != "%Y":  # a bare year is a number, not a date
                guesses[guessed] = guesses.get(guessed, 0) + 1
    if not guesses:
        return None
    candidates = set(guesses) | {_day_month_swapped(f) for f in guesses}
    sample = pd.Series(texts, dtype=object)

    def parsed(fmt: str) -> int:
        return int(pd.to_datetime(sample, format=fmt, errors="coerce").notna().sum())

    return max(candidates, key=lambda f: (parsed(f), guesses.get(f, 0), f))


def format_sample(values: pd.Series) -> pd.Series:
    """Up to FORMAT_SAMPLE distinct values spread over the column's non-missing ones, to guess its
    format from: the first rows of a log sorted by time are all one day (01/10/2026 …), which says
    nothing about which of day and month comes first."""
    import numpy as np

    present = values.dropna()
    if len(present) <= FORMAT_SAMPLE:
        return present
    def evenly(series: pd.Series, n: int) -> pd.Series:
        return series.iloc[np.unique(np.linspace(0, len(series) - 1, n).astype(np.int64))]

    return evenly(evenly(present, 10 * FORMAT_SAMPLE).drop_duplicates(), FORMAT_SAMPLE)


def _day_month_swapped(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def parse_dates(values: pd.Series, fmt: str | None) -> pd.Series:
    """Values as datetimes (NaT where missing or not in ``fmt``); datetime dtypes pass through, in UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        # Text and date objects only: a number would be read as nanoseconds since 1970.
        text = values.where(values.map(lambda v: isinstance(v, (str, datetime.date))), None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format" for format=None
            parsed = pd.to_datetime(text, format=fmt or "mixed", errors="coerce", utc=True)
            # A client sending ISO 8601 (2016-01-02) to a model trained on 2016/01/02 means the same day.
            retry = parsed.isna() & text.notna()
            if fmt and retry.any():
                parsed[retry] = pd.to_datetime(text[retry], format="ISO8601", errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def holds_date_objects(values: pd.Series) -> bool:
    """Whether a column's values are date (or datetime) objects, judged on a sample: a Parquet or
    SQL DATE column, a Hive date= folder, as pandas reads them (object dtype, not datetime64)."""
    if values.dtype != object:  # numbers, text dtypes, datetime64: not date objects, nothing to sample
        return False
    sample = format_sample(values.dropna())
    return bool(len(sample)) and all(isinstance(v, datetime.date) for v in sample)


def count_dates(values: pd.Series) -> int:
    """How many of the non-missing text values parse as dates in the column's most common format
    (a data run keeps it in the profile: additive, so a profile built batch by batch can sum it)."""
    present = values.dropna()
    if holds_date_objects(present):
        # Dates with no format to guess: date_format reads text only, and the column was taken for
        # an identifier.
        return int(present.map(lambda v: isinstance(v, datetime.date)).sum())
    fmt = date_format(format_sample(present))
    if fmt is None:
        return 0
    # Each distinct value parsed once, weighted by its count (a date column repeats its days).
    counts = present.value_counts(sort=False)
    parsed = parse_dates(pd.Series(counts.index.to_numpy(dtype=object), dtype=object), fmt)
    return int(counts.to_numpy()[parsed.notna().to_numpy()].sum())
