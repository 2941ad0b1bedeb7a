"""provenflow: tracked data and model runs on Prefect.

The fluent API records a run from any Python code, a Prefect flow or a notebook::

    import provenflow as pf

    pf.start("my-experiment", parameters={"alpha": 0.1})
    pf.input("penguins@latest")
    pf.metric("accuracy", 0.97)
    pf.end()

The package loads its parts on first use, so ``import provenflow`` (and the CLI) start fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from provenflow.errors import ProvenflowError

if TYPE_CHECKING:
    from provenflow.tracking import Run, RunSummary

__all__ = ["ProvenflowError", "Run", "RunSummary", "end", "input", "metric", "output", "parameter", "start"]


def __getattr__(name: str) -> Any:
    if name in ("Run", "RunSummary", "start"):
        from provenflow import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'provenflow' has no attribute {name!r}")


def _active() -> Run:
    from provenflow.tracking import active_run

    return active_run()


def input(item: str | os.PathLike) -> Any:
    """Record something the active run read: ``dataset@version``, ``model@version`` or a local file."""
    return _active().input(item)


def output(item: str | os.PathLike) -> Any:
    """Record a file the active run wrote (hashed and stored)."""
    return _active().output(item)


def parameter(key: str, value: Any) -> None:
    _active().parameter(key, value)


def metric(key: str, value: float, step: int | None = None) -> None:
    """Buffered; written with the run in one transaction when it ends."""
    _active().metric(key, value, step)


def end() -> RunSummary:
    """End the active run and write it to the ledger."""
    return _active().end()
