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
import sys
from typing import TYPE_CHECKING, Any

from provenflow.errors import ProvenflowError

if TYPE_CHECKING:
    from provenflow.monitoring.labels import FeedbackResult
    from provenflow.tracking.run import Run, RunSummary
    from provenflow.workspace import Workspace

__all__ = [
    "ProvenflowError", "Run", "RunSummary", "end", "feedback", "input", "metric", "output", "parameter", "start",
]  # fmt: skip


def _mount_source_checkout() -> None:
    """In the repository, the flows, tasks and blocks sit beside provenflow/ (flows/, tasks/, blocks/);
    an installed provenflow has them inside it, as provenflow.flows, provenflow.tasks and
    provenflow.blocks (setup.py maps the folders). Run from a checkout (PYTHONPATH=<repo>, or the
    repository as the working directory), register the three folders under those same names, so one
    import works in both. Never as top-level ``flows``, ``tasks``, ``blocks``: those are the user's.
    Their __init__ files hold a docstring only, so this costs next to nothing."""
    import importlib.util

    here = os.path.dirname(os.path.realpath(__file__))
    for name in ("flows", "tasks", "blocks"):
        folder = os.path.join(os.path.dirname(here), name)
        init = os.path.join(folder, "__init__.py")
        qualified = f"{__name__}.{name}"
        if os.path.exists(os.path.join(here, name)) or not os.path.isfile(init) or qualified in sys.modules:
            continue  # installed (it is inside provenflow/), or not a checkout, or done
        spec = importlib.util.spec_from_file_location(qualified, init, submodule_search_locations=[folder])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
        globals()[name] = module


_mount_source_checkout()

from provenflow import _moved  # noqa: E402 - after the mount: old import paths of moved modules

_moved.install()


def __getattr__(name: str) -> Any:
    if name in ("Run", "RunSummary", "start"):
        from provenflow.tracking import run as tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'provenflow' has no attribute {name!r}")


def _active() -> Run:
    from provenflow.tracking.run import active_run

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


def feedback(
    model: str,
    labels: Any,
    *,
    label: str = "label",
    id: str = "id",
    request_id: str = "request_id",
    row: str = "row",
    workspace: Workspace | None = None,
) -> FeedbackResult:
    """Store ground-truth labels for MODEL's served rows (``NAME@VERSION`` or ``NAME@ALIAS``).

    LABELS: a DataFrame, a CSV/Parquet path, or records such as ``{"id": "<request_id>:<row>",
    "label": "Adelie"}`` (the ids /predict answered). The result counts the ids the prediction
    log does not hold (``unknown``); they are stored anyway, never silently dropped::

        pf.feedback("penguins-sex@production", [{"id": "3f2a...:0", "label": "female"}])
    """
    from provenflow.monitoring.labels import Columns, record_feedback
    from provenflow.workspace import Workspace

    columns = Columns(label=label, id=id, request_id=request_id, row=row)
    return record_feedback(workspace or Workspace.default(), model, labels, columns, source="python")
