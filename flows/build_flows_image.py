"""build-flows-image: an image of the project and its locked dependencies (air-gapped build) for the
Kubernetes work pool's flow runs; push it, record its digest."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import provenflow
from provenflow.deploy import flows_image as core
from provenflow.deploy.release import DEFAULT_BASE_IMAGE, check_registry, image_json
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.settings import get_settings
from provenflow.tasks.release import build_flows_image as build_image
from provenflow.tasks.release import collect_wheels, image_python, push_image
from provenflow.tasks.workspace import open_workspace
from provenflow.tracking.source import capture_code


@flow(name="build-flows-image", flow_run_name="build-flows-image")
def build_flows_image(
    registry: str = "127.0.0.1:5000",
    registry_block: str | None = None,
    base_image: str = DEFAULT_BASE_IMAGE,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Build an image of this provenflow checkout (flows, tasks, prefect.yaml) with its dependencies pinned
    to this environment's versions, from BASE_IMAGE and host-built wheels with no network inside the build;
    push it to REGISTRY (or the ContainerRegistry block REGISTRY_BLOCK) and record its digest. `provenflow
    pools create` then makes it the Kubernetes work pool's image."""
    workspace = open_workspace(ledger_block, store_block)
    auth, repository = None, f"{registry.rstrip('/')}/{core.REPOSITORY}"
    if registry_block:
        from provenflow.blocks.registry import ContainerRegistry

        block = ContainerRegistry.load(registry_block)
        auth, repository = block.auth_config(), block.repository("flows")
    parameters = {"registry": registry, "registry_block": registry_block, "base_image": base_image}
    scratch = Path(tempfile.mkdtemp(prefix="provenflow-flows-image-"))
    try:
        with provenflow.start("build-flows-image", kind="release", flow="build-flows-image",
                              parameters=parameters, workspace=workspace) as run:  # fmt: skip
            check_registry(repository)
            plan = core.plan(core.project_root(), image_python(base_image))
            code = capture_code(cwd=plan.project)  # the checkout in the image, wherever this was started
            labels = core.labels(plan, code.commit, code.dirty)
            wheels = collect_wheels(get_settings().cache_dir / "wheels", plan.requirements)
            image = core.image_name(repository, plan.version, code.commit, code.dirty)
            built = build_image(plan, wheels, base_image, image, labels, scratch, code.commit, code.dirty)
            pushed = push_image(image, auth)
            if code.dirty:
                run.warn("the image holds uncommitted changes of the project", level="notice")
            run.record(lambda session: session.add(m.FlowsImage(
                image=pushed.image, digest=pushed.digest, reference=pushed.reference, base_image=base_image,
                code_commit=code.commit, code_dirty=code.dirty, requirements_hash=plan.requirements_hash,
                labels=labels, run_id=run.id, created_at=datetime.now(UTC),
            )))  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "run_id": run.id,
        **image_json(pushed, built, base_image),
        "code_commit": code.commit,
        "code_dirty": code.dirty,
        "requirements": plan.requirements,
    }
