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


@task(cache_policy=NO_CACHE)
def deployment_that_trained(flow_run_id: str | None) -> tuple[str, dict[str, Any]] | None:
    """The deployment (FLOW/DEPLOYMENT) and parameters of the Prefect flow run that trained a model,
    when a deployment started it: retraining runs the same deployment again, so a model a team's own
    flow made is retrained by that flow, on drift or on decay, with no policy to configure. None when
    the run was not started from a deployment (a script, a notebook) or Prefect no longer knows it."""
    if not flow_run_id:
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.deployment_id is None:
                return None
            deployment = client.read_deployment(flow_run.deployment_id)
            flow = client.read_flow(deployment.flow_id)
        except ObjectNotFound:
            return None
    return f"{flow.name}/{deployment.name}", dict(flow_run.parameters or {})


@task(cache_policy=NO_CACHE)
def rerun_training_code(workspace: Any, run_id: str) -> list[str]:
    """Run again the notebook, script or flow that trained a model (the entry point run RUN_ID
    recorded), in the project as it is now, in its own process: the team's current code, reading the
    newest data (no dataset is pinned, unlike a reproduction) and registering what it logs. A notebook
    runs in a real Jupyter kernel, as ``provenflow reproduce`` runs it. The run's code seal is checked
    first, as ``reproduce`` checks it: an entry point changed in the ledger is refused before anything
    runs. Returns the ids of the runs it started."""
    import tempfile
    from pathlib import Path

    from provenflow.modeling import reproduce, signing
    from provenflow.project import project_root
    from provenflow.tasks.reproduce import child_env

    with workspace.ledger.reader() as session:
        entry = reproduce.recorded_run(session, run_id, signing.signing_key()).entry
    root = project_root().resolve()
    path = (root / entry["path"]).resolve() if entry else None
    cwd = (root / (entry.get("cwd") or ".")).resolve() if entry else root
    if path is None or not path.is_relative_to(root) or not cwd.is_relative_to(root) or not path.is_file():
        raise PromotionError(
            f"the {entry['kind'] if entry else 'code'} that trained the model ({entry['path'] if entry else 'none recorded'}) "
            f"is not in the project at {root}; run retrain from the project's folder, or name a training "
            "deployment (deployment=)"
        )
    with tempfile.TemporaryDirectory(prefix="provenflow-retrain-") as scratch:
        runs = Path(scratch) / "runs.txt"
        runs.write_text("")
        env = {**child_env(workspace), "PROVENFLOW_REPRODUCTION_RUNS": str(runs)}
        try:
            reproduce.replay("retrain", {}, root, reproduce.replay_env(env), entry=entry)
        except reproduce.ReproductionError as exc:
            raise PromotionError(f"retraining by running {entry['kind']} {entry['path']} again failed: {exc}") from None
        from provenflow.tracking.pins import read_noted

        return read_noted(runs.read_text())[0]
