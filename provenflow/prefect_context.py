"""What provenflow needs from Prefect at run time, without importing Prefect.

The core never imports Prefect itself: these helpers only look at Prefect when the caller
has already imported it (they are running inside a flow), so the core stays fast to import and
testable without a Prefect server.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class FlowRunInfo:
    id: str
    flow_name: str | None
    ui_url: str | None
    attempt: int = 1


def current_flow_run() -> FlowRunInfo | None:
    if "prefect" not in sys.modules:
        return None
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    from prefect.runtime import flow_run

    flow_name = ctx.flow.name if ctx.flow else None
    return FlowRunInfo(
        id=str(ctx.flow_run.id),
        flow_name=flow_name,
        ui_url=flow_run.get_flow_run_ui_url(),
        attempt=ctx.flow_run.run_count or 1,
    )


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only; a name that loses
    characters on the way gets a short hash of itself, so different names keep different keys."""
    raw = "-".join(p for p in parts if p)
    key = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw.lower())).strip("-")
    if key != raw:
        key = f"{key}-{hashlib.blake2s(raw.encode(), digest_size=3).hexdigest()}"
    return key


def publish_artifacts(card_markdown: str, table_key: str, table_row: dict, description: str) -> None:
    """The run card and the metrics-table row, shown on the flow run in the Prefect UI."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(markdown=card_markdown, key=None, description=description)
    create_table_artifact(table=[table_row], key=table_key, description=description)
