"""Column names every source must have before its rows are read: unique, non-empty, not too many."""

from __future__ import annotations

from provenflow.data import datasets
from provenflow.data.credentials import split_url
from provenflow.errors import DataError
from provenflow.redact import redact


def check_names(source: str, names: list[str]) -> None:
    shown = redact(split_url(source)[0])
    from provenflow.settings import get_settings

    limit = get_settings().max_columns
    if len(names) > limit:  # before any row: validation and profiles grow with the columns
        raise DataError(
            f"{shown!r} has {len(names)} columns, more than the limit of {limit}; select the columns you "
            "need, or raise PROVENFLOW_MAX_COLUMNS"
        )
    datasets._refuse_duplicates(shown, names)
    if any(n == "" for n in names):
        raise DataError(f"{shown!r} has a column without a header name; every column needs a name")
