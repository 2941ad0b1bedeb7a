from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.deploy import flows_image, release
from provenflow.serving.bundle import BundleMetadata, export_bundle
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def export_model_bundle(workspace: Workspace, model: str, dest: Path, onnx: bool) -> BundleMetadata:
    return export_bundle(workspace, model, dest, onnx=onnx)


@task(cache_policy=NO_CACHE, retries=1)
def collect_wheels(cache: Path, requirements: list[str] | None = None) -> Path:
    return release.collect_wheels(cache, requirements)


@task(cache_policy=NO_CACHE, retries=1)
def collect_model_wheels(cache: Path, signature: dict, serving_wheels: Path) -> Path | None:
    """Wheels for what the model's own code imports and the serving wheels lack."""
    return release.collect_model_wheels(cache, release.model_requirements(signature, serving_wheels))


@task(cache_policy=NO_CACHE)
def build_image(
    bundle: Path, wheels: Path, base_image: str, image: str, labels: dict, scratch: Path,
    model_wheels: Path | None = None,
) -> release.BuiltImage:  # fmt: skip
    context = release.build_context(bundle, wheels, base_image, scratch / "context", model_wheels)
    return release.build_image(release.docker_client(), context, image, labels, base_image)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def push_image(image: str, auth: dict | None) -> release.PushedImage:
    return release.push_image(release.docker_client(), image, auth)


@task(cache_policy=NO_CACHE)
def build_flows_image(
    plan: flows_image.FlowsImagePlan, wheels: Path, base_image: str, image: str, labels: dict, scratch: Path,
    commit: str | None, dirty: bool | None,
) -> release.BuiltImage:
    context = flows_image.build_context(plan, wheels, base_image, scratch / "context", commit, dirty)
    return release.build_image(release.docker_client(), context, image, labels, base_image)


@task(cache_policy=NO_CACHE)
def image_python(base_image: str) -> str:
    return flows_image.image_python(release.docker_client(), base_image)
