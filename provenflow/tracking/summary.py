"""What a finished run recorded, as a plain value: made by ``provenflow.tracking.run``, rendered by
``provenflow.tracking.report`` and published by ``provenflow.ui.publish`` (so neither of those imports
the run machinery). ``provenflow.tracking.run.RunSummary`` and ``provenflow.RunSummary`` name this class."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunSummary:
    """What a finished run recorded; printable and JSON-able."""

    id: str
    kind: str
    flow: str
    name: str
    state: str
    error: str | None
    parameters: dict
    metrics: dict[str, float]
    warnings: list[dict]
    inputs: list[dict]
    outputs: list[dict]
    code: dict
    environment: dict
    prefect_url: str | None
    started_at: str
    ended_at: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)
