"""Ending, in Prefect, the flow runs whose process died (Prefect is imported only when called).

Two paths, because neither alone covers every case in bounded time:

- Prefect's own zombie detection: every flow run sends a ``prefect.flow-run.heartbeat`` event
  each ``heartbeat_seconds`` (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, which ``server.connect`` sets for
  provenflow's commands), and an automation on the server sets ``Crashed`` when no heartbeat and
  no final state follows within three heartbeats. That works for a flow run on any machine, but
  only once its first heartbeat reached the server.
- provenflow's own: a run whose process is found dead on its host (provenflow.tracking.crashes) gets its
  flow run set ``Crashed`` at once by the command that found it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

AUTOMATION_NAME = "provenflow: crash flow runs whose heartbeats stopped"
MESSAGE = "Flow run marked as crashed: {why}"


def crash_automation(heartbeat_seconds: int):
    """Prefect's documented zombie-flow automation ("How to detect and respond to zombie flows")."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Created by `provenflow server start`: a flow run whose process died stops "
        f"sending heartbeats (every {heartbeat_seconds} s) and is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * heartbeat_seconds),
        ),
        actions=[
            ChangeFlowRunState(state=StateType.CRASHED, message=MESSAGE.format(why="its heartbeats stopped"))
        ],
    )


def ensure_crash_automation(heartbeat_seconds: int) -> str:
    """Create the automation on the current Prefect API unless it is there with this window; its id."""
    from prefect.client.orchestration import get_client

    wanted = crash_automation(heartbeat_seconds)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
        for automation in existing:
            if automation.trigger.within == wanted.trigger.within and automation.enabled:
                return str(automation.id)
        for automation in existing:  # another window (the setting changed): replace it
            client.delete_automation(automation.id)
        return str(client.create_automation(wanted))


def crash_flow_runs(flow_run_ids: Iterable[str], why: str) -> list[str]:
    """Set each flow run that has not ended to Crashed; returns those it set."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    crashed: list[str] = []
    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            flow_run = client.read_flow_run(UUID(flow_run_id))
            if flow_run.state is not None and flow_run.state.is_final():
                continue
            client.set_flow_run_state(UUID(flow_run_id), Crashed(message=MESSAGE.format(why=why)), force=True)
            crashed.append(flow_run_id)
    return crashed


def crashed_flow_runs(flow_run_ids: Iterable[str]) -> set[str]:
    """Those of the flow runs that Prefect has as Crashed (e.g. by the automation)."""
    ids = [UUID(i) for i in flow_run_ids]
    if not ids:
        return set()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    query = FlowRunFilter(
        id=FlowRunFilterId(any_=ids),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
    )
    with get_client(sync_client=True) as client:
        return {str(fr.id) for fr in client.read_flow_runs(flow_run_filter=query, limit=len(ids))}
