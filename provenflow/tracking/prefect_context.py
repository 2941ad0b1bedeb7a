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
        # Without a UI (Prefect's ephemeral mode) Prefect builds "None/flow-runs/…": no link then.
        ui_url=flow_run.get_flow_run_ui_url() if ui_url() else None,
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


def emit_model_event(event: str, name: str, ref: str, version: int, payload: dict) -> list[str]:
    """A Prefect event about model NAME (resource ``provenflow.model.NAME``): what prefect.yaml's
    retrain trigger matches on. Returns the names of the enabled automations that expect EVENT, so
    the person who ran the check is told that it starts something (a drift check run by hand
    retrained and redeployed production, and said nothing of it)."""
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"provenflow.model.{name}",
            "prefect.resource.name": ref,
            "provenflow.model.version": str(version),
        },
        payload=payload,
    )
    return automations_expecting(event)


def automations_expecting(event: str) -> list[str]:
    """Names of the enabled automations whose trigger expects EVENT ([] when they cannot be read)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            automations = client.read_automations()
    except Exception:  # telling is a courtesy: never fail the check that emitted the event over it
        return []
    return sorted(
        a.name for a in automations if a.enabled and event in (getattr(a.trigger, "expect", None) or ())
    )


def publish_markdown(markdown: str, key: str | None, description: str) -> None:
    """A markdown artifact on the current flow run (a new version of KEY when given)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)


def publish_table(rows: list[dict], key: str, description: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=rows, key=key, description=description)


def ui_url() -> str | None:
    """The Prefect UI's base address (e.g. http://127.0.0.1:4200), for links in artifacts."""
    if "prefect" not in sys.modules:
        return None
    from prefect.settings import get_current_settings

    url = get_current_settings().ui_url
    return str(url).rstrip("/") if url else None


def rename_flow_run(flow_run_id: str, name: str) -> None:
    """Give the flow run a name known only once it runs (e.g. the dataset version ``@latest`` meant)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id, name=name)


@dataclass(frozen=True)
class FlowEntry:
    """The flow function a run is inside: its source file, its name and the flow run's parameters."""

    file: str | None
    function: str
    qualname: str
    parameters: dict


def current_flow_entry() -> FlowEntry | None:
    if "prefect" not in sys.modules:
        return None
    import inspect

    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow is None:
        return None
    fn = ctx.flow.fn
    try:
        file = inspect.getsourcefile(fn)
    except TypeError:
        file = None
    return FlowEntry(file, fn.__name__, fn.__qualname__, dict(ctx.parameters or {}))
