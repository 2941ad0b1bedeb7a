"""Recording a run: the active run and its record, the code and environment it ran in, what Prefect
tells about it, the read-side views of the ledger (catalog, lineage) and the run card."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``from provenflow.tracking import Run`` kept working: this package was the module of the run."""
    if name in ("Run", "RunSummary", "start", "active_run"):
        from provenflow.tracking import run

        return getattr(run, name)
    raise AttributeError(f"module 'provenflow.tracking' has no attribute {name!r}")
