"""A flow run with heartbeats on ends as fast as one without them, and still sends heartbeats."""

from __future__ import annotations

import time

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from provenflow.flows._flow import flow


@flow(name="heartbeat-probe")
def _probe() -> int:
    return 1


def _seconds(frequency: int | None) -> float:
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: frequency}):
        began = time.perf_counter()
        assert _probe() == 1
        return time.perf_counter() - began


def test_heartbeats_cost_no_wait_at_flow_exit(prefect_api):
    _seconds(None)  # warm: the flow is registered, the client connected
    without = min(_seconds(None) for _ in range(3))
    with_heartbeats = min(_seconds(30) for _ in range(3))
    # Prefect's own thread sleeps in 1 s steps and is joined at exit: +0.9 s measured.
    assert with_heartbeats - without < 0.4, (with_heartbeats, without)


def test_heartbeat_is_sent_at_flow_start(prefect_api):
    import prefect.flow_engine as engine

    sent = []
    original = engine.FlowRunEngine._emit_flow_run_heartbeat

    def counting(self, *args):
        sent.append(self.flow_run.id)
        return original(self, *args)

    engine.FlowRunEngine._emit_flow_run_heartbeat = counting
    try:
        _seconds(30)
    finally:
        engine.FlowRunEngine._emit_flow_run_heartbeat = original
    assert len(sent) == 1
