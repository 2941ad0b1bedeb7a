"""Retraining through the team's own training deployment instead of the built-in recipe."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.errors import ConfigError
from provenflow.modeling.registry import PromotionError


def check_deployment_name(name: str) -> str:
    """``flow-name/deployment-name``, as ``prefect deployment run`` takes it."""
    flow, _, deployment = name.partition("/")
    if not flow or not deployment or "/" in deployment:
        raise ConfigError(
            f"retrain deployment {name!r} is not FLOW/DEPLOYMENT (e.g. 'train/train', as "
            "`prefect deployment ls` lists them)"
        )
    return name


@task(cache_policy=NO_CACHE)
def run_training_deployment(name: str, parameters: dict[str, Any], timeout: float) -> str:
    """Run deployment NAME (the team's own training flow, from its prefect.yaml) with PARAMETERS as a
    sub-flow run of this one, wait for it, and return its flow-run id; PromotionError when it did
    not complete (a worker of its pool must be running)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run = run_deployment(check_deployment_name(name), parameters=parameters, timeout=timeout)
    except ObjectNotFound:
        raise ConfigError(
            f"no deployment {name!r} on the Prefect server; deploy the team's flow first "
            "(prefect deploy --all in its project)"
        ) from None
    state = flow_run.state
    if state is None or not state.is_completed():
        what = state.name if state else "no state"
        raise PromotionError(
            f"the training deployment {name!r} (flow run {flow_run.id}) ended {what} within {timeout:g} s, not "
            "Completed; nothing to promote. Is a worker of its work pool running? See its logs in the Prefect UI"
        )
    return str(flow_run.id)
