"""A flow run's Kubernetes Job, rendered by prefect-kubernetes' own code, without a cluster or a server.

The work-pool template belongs to a later issue; this pins down that rendering works offline and that the
Job passes the official schema. Note: prefect-kubernetes 0.8's default template puts ``completions`` and
``parallelism`` inside the *pod* spec, so the Job fails a strict check (unknown fields); a real API server
drops them with a warning. Our own base job template should move them to the Job spec.
"""

from __future__ import annotations

import asyncio
import uuid

import kubernetes_validate
import pytest

IMAGE = "registry.local:5000/provenflow/flows@sha256:" + "1" * 64


class _NoPrefectApi:
    """Stands in for the Prefect client: a template without block or variable references never calls it."""


def _render_job(values: dict) -> tuple[dict, object]:
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    template = KubernetesWorker.get_default_base_job_template()
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(template, values, client=_NoPrefectApi())
    )
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="calm-otter")
    configuration.prepare_for_flow_run(flow_run)
    return configuration.job_manifest, flow_run


def test_prefect_kubernetes_renders_a_valid_job_for_a_flow_run():
    job, flow_run = _render_job({"image": IMAGE, "namespace": "flows"})
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "flows"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
    kubernetes_validate.validate(job, "1.33", strict=False)
    with pytest.raises(kubernetes_validate.ValidationError, match="completions"):
        kubernetes_validate.validate(job, "1.33", strict=True)
