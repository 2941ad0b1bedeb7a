"""release: build a container image of a model version (air-gapped), push it, record its digest."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import provenflow
from provenflow.deploy import release as core
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_model
from provenflow.settings import get_settings
from provenflow.tasks.release import (
    build_image,
    collect_model_wheels,
    collect_wheels,
    export_model_bundle,
    push_image,
)
from provenflow.tasks.workspace import open_workspace


@flow(name="release", flow_run_name="release-{model}")
def release(
    model: str,
    registry: str = "127.0.0.1:5000",
    registry_block: str | None = None,
    base_image: str = core.DEFAULT_BASE_IMAGE,
    onnx: bool = True,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Build an image that serves MODEL (NAME@VERSION or NAME@ALIAS) from BASE_IMAGE with host-built
    wheels and no network inside the build, push it to REGISTRY (or the ContainerRegistry block
    REGISTRY_BLOCK) and record the image digest with the model version."""
    workspace = open_workspace(ledger_block, store_block)
    auth, repository_of = None, lambda name: f"{registry.rstrip('/')}/provenflow/{name.lower()}"
    if registry_block:
        from provenflow.blocks.registry import ContainerRegistry

        block = ContainerRegistry.load(registry_block)
        auth, repository_of = block.auth_config(), block.repository
    scratch = Path(tempfile.mkdtemp(prefix="provenflow-release-"))
    parameters = {
        "model": model,
        "registry": registry,
        "registry_block": registry_block,
        "base_image": base_image,
        "onnx": onnx,
    }
    try:
        with provenflow.start(f"release-{model}", kind="release", flow="release", parameters=parameters,
                              workspace=workspace) as run:  # fmt: skip
            with workspace.ledger.reader() as session:
                version = resolve_model(session, model)
            run.input(version)
            core.check_registry(repository_of(version.name))
            bundle = export_model_bundle(workspace, version.ref, scratch / "bundle", onnx)
            metadata = dataclasses.asdict(bundle)
            labels = core.oci_labels(metadata)
            wheels = collect_wheels(get_settings().home_dir / "wheels")
            # What the team's own code imports that the serving packages are not (none for model-run's).
            extra = collect_model_wheels(get_settings().home_dir / "wheels", bundle.signature or {}, wheels)
            image = f"{repository_of(version.name)}:{version.version}-{version.hash[:12]}"
            built = build_image(scratch / "bundle", wheels, base_image, image, labels, scratch, extra)
            pushed = push_image(image, auth)
            runtime = "onnx" if bundle.onnx else "sklearn"
            if bundle.onnx_reason:  # e.g. date features or native categories: no ONNX graph
                run.warn(f"served by scikit-learn, not ONNX: {bundle.onnx_reason}", level="notice")
            run.record(lambda session: session.add(m.Release(
                model_version_id=version.id, image=pushed.image, digest=pushed.digest, reference=pushed.reference,
                base_image=base_image, runtime=runtime, labels=labels, run_id=run.id, created_at=datetime.now(UTC),
            )))  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "run_id": run.id,
        "model": version.ref,
        **core.release_json(pushed, built, base_image, runtime, labels),
        "runtime_reason": bundle.onnx_reason,
    }
