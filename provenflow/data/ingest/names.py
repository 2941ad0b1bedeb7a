"""Column names every source must have before its rows are read: unique and non-empty."""

from __future__ import annotations

from provenflow.data import datasets
from provenflow.data.credentials import split_url
from provenflow.errors import DataError
from provenflow.redact import redact


def check_names(source: str, names: list[str]) -> None:
    shown = redact(split_url(source)[0])
    datasets._refuse_duplicates(shown, names)
    if any(n == "" for n in names):
        raise DataError(f"{shown!r} has a column without a header name; every column needs a name")
