"""Naming the running flow run once what tells it apart (a dataset version) is known."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def name_run(name: str) -> None:
    """Rename the flow run once its dataset version is known (the run list then tells runs apart)."""
    from prefect.runtime import flow_run

    from provenflow.tracking.prefect_context import rename_flow_run

    rename_flow_run(flow_run.get_id(), name)
