"""provenflow: tracked data and model runs on Prefect.

The fluent API records a run from any Python code, a Prefect flow or a notebook::

    import provenflow as pf

    pf.start("my-experiment", parameters={"alpha": 0.1})
    pf.input("penguins@latest")
    pf.metric("accuracy", 0.97)
    pf.end()
"""

from __future__ import annotations

import os
from typing import Any

from provenflow.errors import ProvenflowError
from provenflow.tracking import Run, RunSummary, active_run, start

__all__ = [
    "ProvenflowError",
    "Run",
    "RunSummary",
    "end",
    "input",
    "metric",
    "output",
    "parameter",
    "start",
]


def input(item: str | os.PathLike) -> Any:  # noqa: A001 - the Dotscience-style verb
    return active_run().input(item)


def output(item: str | os.PathLike) -> Any:
    return active_run().output(item)


def parameter(key: str, value: Any) -> None:
    active_run().parameter(key, value)


def metric(key: str, value: float, step: int | None = None) -> None:
    active_run().metric(key, value, step)


def end() -> RunSummary:
    return active_run().end()

