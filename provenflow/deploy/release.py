"""Releasing a model version as a container image, built air-gapped.

The image is a base image (a minimal Debian with Python, made with debootstrap: see
infra/serving/make-base-image.sh) plus wheels downloaded or built on the host and copied into the
build context, so nothing inside the build touches a network (``network_mode="none"``), plus the
model bundle. Serving packages are pinned to the versions installed on the host, so the image
unpickles the model with the scikit-learn that trained it. A model logged by the team's own code
also gets the installed distributions its code imports (``signature.requirements``, recorded by
``log_model``) and their dependencies, as wheels built on the host. When the bundle has a checked ONNX graph,
the image gets no pickle at all: nothing in it can run code when the model is loaded (SECURITY.md).
OCI labels carry the model's identity.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provenflow.errors import ProvenflowError
from provenflow.tracking.environment import capture_environment

DEFAULT_BASE_IMAGE = "provenflow/serving-base:bookworm"
SERVING_USER = 10001
SERVING_PORT = 8080
# What the model server imports; their dependencies follow, pinned to the host's versions.
SERVING_PACKAGES = (
    "fastapi", "uvicorn", "orjson", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy",
    "onnxruntime", "blake3", "fsspec", "pydantic", "pydantic-settings", "prometheus-client",
)  # fmt: skip


class ReleaseError(ProvenflowError):
    pass


@dataclass(frozen=True)
class BuiltImage:
    image: str  # repository:tag
    image_id: str


@dataclass(frozen=True)
class PushedImage:
    image: str
    digest: str  # sha256:…
    reference: str  # repository@sha256:…


def serving_requirements() -> list[str]:
    installed = dict(p.split("==", 1) for p in capture_environment().packages)
    missing = [p for p in SERVING_PACKAGES if p not in installed]
    if missing:
        raise ReleaseError(f"cannot pin the serving packages {missing}: they are not installed here")
    return [f"{p}=={installed[p]}" for p in SERVING_PACKAGES]


def collect_wheels(cache: Path, requirements: list[str] | None = None) -> Path:
    """Wheels for REQUIREMENTS (default: the serving packages) and their dependencies, pinned to this
    environment's versions.

    Downloaded (or built) on the host once per set of versions and kept in ``cache``; the image
    build then needs no network at all.
    """

    def pinned() -> str:
        return "\n".join(p for p in capture_environment().packages if not p.startswith("provenflow=="))

    return _wheels_once(cache, "", requirements or serving_requirements(), "the image", pinned)


def _wheels_once(
    cache: Path, prefix: str, requirements: list[str], what: str, constraints: Callable[[], str] | None
) -> Path:
    """``pip wheel`` of REQUIREMENTS into a folder of ``cache`` named by their hash, kept once built:
    built in a staging folder and renamed, so a failed or interrupted build leaves no half folder.
    With CONSTRAINTS (the pins, computed only when building) their dependencies come too; without,
    REQUIREMENTS alone (``--no-deps``)."""
    key = prefix + hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    folder = cache / key
    if (folder / "requirements.txt").exists():
        return folder
    staging = cache / f".{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pins = staging / "constraints.txt"
    if constraints is None:
        options = ["--no-deps"]
    else:
        pins.write_text(constraints())
        options = ["-c", str(pins)]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(staging), *options, *requirements],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ReleaseError(f"could not collect wheels for {what}: {done.stderr.strip()[-800:]}")
    (staging / "requirements.txt").write_text("\n".join(requirements) + "\n")
    pins.unlink(missing_ok=True)
    staging.rename(folder)
    return folder


def _wheel_names(folder: Path) -> set[str]:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(w.name.split("-", 1)[0]) for w in folder.glob("*.whl")}


def model_requirements(signature: dict, serving_wheels: Path) -> list[str]:
    """What the model's own code needs that the serving wheels do not hold: the distributions
    ``log_model`` recorded (``signature.requirements``) and, from this environment's metadata, their
    dependencies, each pinned to the version installed here (it must be the one the model was logged
    with). ReleaseError naming the distribution when this environment cannot provide it."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from provenflow.modeling.owncode import installed_version

    have = _wheel_names(serving_wheels)
    wanted = [r.partition("==") for r in signature.get("requirements") or []]
    out: dict[str, str] = {}
    todo = [(dist, version) for dist, _, version in wanted]
    while todo:
        dist, version = todo.pop()
        key = canonicalize_name(dist)
        if key in have or key in out:
            continue
        installed = installed_version(dist)
        if installed is None:
            raise ReleaseError(
                f"the model needs the distribution {dist}{'==' + version if version else ''} (its code imports it), "
                f"which is not installed where the image is built; install it here (pip install '{dist}"
                f"{'==' + version if version else ''}') and release again"
            )
        if version and installed != version:
            raise ReleaseError(
                f"the model was logged with {dist}=={version}, but {installed} is installed where the image is "
                f"built; install {dist}=={version} here (the image pins what is installed) and release again"
            )
        out[key] = f"{dist}=={installed}"
        for raw in importlib.metadata.requires(dist) or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append((requirement.name, ""))
    return sorted(out.values(), key=str.lower)


def collect_model_wheels(cache: Path, requirements: list[str]) -> Path | None:
    """Wheels for REQUIREMENTS alone (their dependencies are listed in them already), kept in
    ``cache`` per set, as the serving wheels are; None when there are none."""
    if not requirements:
        return None
    return _wheels_once(cache, "model-", requirements, "the model's own requirements", None)


def oci_labels(metadata: dict) -> dict[str, str]:
    """Standard OCI annotations plus provenflow's own: what model, from which run, data and code."""
    return {
        "org.opencontainers.image.title": f"{metadata['name']} model server",
        "org.opencontainers.image.version": str(metadata["version"]),
        "org.opencontainers.image.created": datetime.now(UTC).isoformat(),
        "org.opencontainers.image.revision": metadata.get("code_commit") or "",
        "org.opencontainers.image.description": f"provenflow model {metadata['name']}@{metadata['version']}",
        "io.provenflow.model.name": metadata["name"],
        "io.provenflow.model.version": str(metadata["version"]),
        "io.provenflow.model.hash": metadata["hash"],
        "io.provenflow.training-run": metadata.get("training_run") or "",
        "io.provenflow.datasets": ",".join(metadata.get("datasets") or []),
        "io.provenflow.code.dirty": str(metadata.get("code_dirty")),
    }


DOCKERFILE = """\
FROM {base}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-index --no-cache-dir --find-links /tmp/wheels -r /tmp/wheels/requirements.txt \\
 && rm -rf /tmp/wheels
COPY provenflow /opt/provenflow/provenflow
COPY model /model
# The prediction log goes to a store mounted (or an fsspec URL set) at deploy time; /tmp otherwise.
ENV PYTHONPATH=/opt/provenflow PYTHONDONTWRITEBYTECODE=1 PROVENFLOW_PREDICTION_LOG_URL=/tmp/provenflow-store
USER {user}
EXPOSE {port}
ENTRYPOINT ["/opt/venv/bin/python", "-m", "provenflow.serving", "--bundle", "/model", "--host", "0.0.0.0", "--port", "{port}"]
"""


def build_context(bundle: Path, wheels: Path, base_image: str, dest: Path, model_wheels: Path | None = None) -> Path:
    """The folder docker builds from: Dockerfile, wheels (the serving packages', and MODEL_WHEELS for
    what the model's own code imports: collect_model_wheels), the provenflow package, the bundle."""
    import provenflow
    from provenflow.serving.bundle import MODEL_FILE, ONNX_FILE

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(wheels, dest / "wheels")
    if model_wheels is not None:
        for wheel in model_wheels.glob("*.whl"):
            shutil.copy2(wheel, dest / "wheels" / wheel.name)
        listed = (dest / "wheels" / "requirements.txt").read_text() + (model_wheels / "requirements.txt").read_text()
        (dest / "wheels" / "requirements.txt").write_text(listed)
    shutil.copytree(
        Path(provenflow.__file__).parent,
        dest / "provenflow",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "demo"),
    )
    # With a checked ONNX graph the server needs no pickle: leave it out, so none can ever be loaded.
    onnx_only = (bundle / ONNX_FILE).exists()
    shutil.copytree(bundle, dest / "model", ignore=shutil.ignore_patterns(MODEL_FILE) if onnx_only else None)
    (dest / "Dockerfile").write_text(DOCKERFILE.format(base=base_image, user=SERVING_USER, port=SERVING_PORT))
    return dest


def docker_client() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise ReleaseError(
            f"cannot reach the Docker engine ({exc}); is dockerd running and DOCKER_HOST right?"
        ) from None
    return client


def build_image(
    client: Any, context: Path, image: str, labels: dict[str, str], base_image: str
) -> BuiltImage:
    """``docker build`` with no network inside the build."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(base_image)
    except ImageNotFound:
        raise ReleaseError(
            f"base image {base_image!r} is not on this Docker engine; build it with "
            "infra/serving/make-base-image.sh (no registry needed) or pull it"
        ) from None
    log: list[str] = []
    image_id = None
    for chunk in client.api.build(path=str(context), tag=image, labels=labels, rm=True, forcerm=True,
                                  network_mode="none", decode=True):  # fmt: skip
        if "error" in chunk:
            raise ReleaseError(
                f"docker build of {image} failed: {chunk['error'].strip()}\n{''.join(log[-20:])}"
            )
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    if image_id is None:
        raise ReleaseError(f"docker build of {image} reported no image id:\n{''.join(log[-20:])}")
    return BuiltImage(image, image_id)


def check_registry(repository: str, timeout: float = 5.0) -> None:
    """Refuse before the build (tens of seconds) when nothing listens at REPOSITORY's registry: the
    push failed only at the end, and left the built image behind. A name without a registry host
    (``team/model``, Docker Hub) is not checked."""
    host = repository.split("/", 1)[0]
    if "/" not in repository or not ("." in host or ":" in host or host == "localhost"):
        return
    name, _, port = host.rpartition(":") if ":" in host else (host, "", "443")
    try:
        socket.create_connection((name.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ReleaseError(
            f"no container registry answers at {host} ({type(exc).__name__}: {exc}); start one there "
            "(e.g. Debian's docker-registry, or `docker run -d -p 5000:5000 registry:2`) or give --registry "
            "HOST:PORT / --registry-block"
        ) from None


def push_image(client: Any, image: str, auth: dict | None) -> PushedImage:
    repository, _, tag = image.rpartition(":")
    digest = None
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in chunk:
            raise ReleaseError(f"pushing {image} failed: {chunk['error']}")
        digest = chunk.get("aux", {}).get("Digest", digest)
    if digest is None:
        raise ReleaseError(f"the registry reported no digest for {image}")
    return PushedImage(image, digest, f"{repository}@{digest}")


def image_labels(client: Any, reference: str) -> dict[str, str]:
    return client.images.get(reference).labels or {}


def image_json(pushed: PushedImage, built: BuiltImage, base_image: str) -> dict:
    """What a flow run answers about an image it built and pushed (a model's or the flows image)."""
    return {
        "image": pushed.image,
        "digest": pushed.digest,
        "reference": pushed.reference,
        "image_id": built.image_id,
        "base_image": base_image,
    }


def release_json(pushed: PushedImage, built: BuiltImage, base_image: str, runtime: str, labels: dict) -> dict:
    return {**image_json(pushed, built, base_image), "runtime": runtime, "labels": json.loads(json.dumps(labels))}
