"""The flows image: the project (provenflow, flows, tasks, blocks, prefect.yaml) and its locked
dependencies, in which a Kubernetes work pool's Jobs run flow runs (``prefect flow-run execute``).

Built like a model-serving image (provenflow/release.py): the base image from
infra/serving/make-base-image.sh, wheels downloaded or built on the host, nothing in the build touching a
network. The dependencies are the project's own (pyproject.toml), each pinned, with everything they pull
in, to the version installed here: the environment the flows were tested in. A multi-stage build keeps
the wheels out of the final image's layers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from provenflow.deploy.release import SERVING_USER, ReleaseError
from provenflow.tracking.environment import capture_environment
from provenflow.tracking.source import CODE_STAMP

# Where prefect.yaml's `pull: *pull_in_image` step sets the working directory of a flow run.
PROJECT_DIR = "/opt/provenflow/project"
PROJECT_PARTS = ("provenflow", "flows", "tasks", "blocks", "deployments", "expectations",
                 "prefect.yaml", "pyproject.toml")  # fmt: skip
REPOSITORY = "provenflow/flows"


@dataclass(frozen=True)
class FlowsImagePlan:
    project: Path  # the checkout the image is built from
    requirements: list[str]  # name[extras]==version, the project's own dependencies
    version: str  # the project's version (pyproject.toml)

    @property
    def requirements_hash(self) -> str:
        return hashlib.sha256("\n".join(self.requirements).encode()).hexdigest()


def project_root() -> Path:
    """The provenflow checkout this code runs from: flows and prefect.yaml live beside the package."""
    import provenflow

    root = Path(provenflow.__file__).resolve().parent.parent
    missing = [part for part in PROJECT_PARTS if not (root / part).exists()]
    if missing:
        raise ReleaseError(
            f"{root} is not a provenflow checkout (no {', '.join(missing)}); build the flows image from the "
            "project's source folder (pip install -e .)"
        )
    return root


def plan(project: Path, python_version: str, extras: tuple[str, ...] = ("s3",)) -> FlowsImagePlan:
    """The project's dependencies (and the EXTRAS installed here), pinned to this environment's versions,
    plus what the image's PYTHON_VERSION needs besides."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    installed = {
        canonicalize_name(name): version
        for name, _, version in (p.partition("==") for p in capture_environment().packages)
    }
    wanted = [Requirement(r) for r in meta.get("dependencies", [])]
    for extra in extras:
        optional = [Requirement(r) for r in meta.get("optional-dependencies", {}).get(extra, [])]
        # An extra goes in only when installed here: that is the environment the flows were tested in.
        if optional and all(canonicalize_name(r.name) in installed for r in optional):
            wanted += optional
    pinned, missing = [], []
    for req in wanted:
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = installed.get(canonicalize_name(req.name))
        if version is None:
            missing.append(req.name)
            continue
        extra = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        pinned.append(f"{canonicalize_name(req.name)}{extra}=={version}")
    if missing:
        raise ReleaseError(
            f"cannot pin the project's dependencies {missing}: they are not installed here; "
            "run `pip install -e .` in the project first"
        )
    pinned = sorted(set(pinned))
    return FlowsImagePlan(project, pinned + image_only_requirements(pinned, python_version),
                          str(meta.get("version", "0")))  # fmt: skip


def image_python(client, base_image: str) -> str:
    """The base image's Python version (3.11.2 on bookworm), run with no network."""
    output = client.containers.run(base_image, ["python3", "-c", "import platform; print(platform.python_version())"],
                                   network_mode="none", remove=True)  # fmt: skip
    return output.decode().strip()


def image_only_requirements(requirements: list[str], python_version: str) -> list[str]:
    """Dependencies the image's Python needs and this one does not (a marker such as
    ``python_full_version < "3.11.3"`` on a patch release apart): pip resolves markers for the Python it
    runs on, so they are named for it explicitly, without their marker."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    host = default_environment()
    image = {**host, "python_full_version": python_version,
             "python_version": ".".join(python_version.split(".")[:2])}  # fmt: skip
    needed: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue  # not installed here: its own requirements are pip's to resolve
        for dep in map(Requirement, dist.requires or []):
            wanted = [{**env, "extra": extra} for env in (host, image) for extra in (*req.extras, "")]
            in_host = dep.marker is None or any(dep.marker.evaluate(e) for e in wanted[: len(wanted) // 2])
            in_image = dep.marker is None or any(dep.marker.evaluate(e) for e in wanted[len(wanted) // 2 :])
            if in_image and not in_host:
                extra = f"[{','.join(sorted(dep.extras))}]" if dep.extras else ""
                needed[canonicalize_name(dep.name)] = f"{canonicalize_name(dep.name)}{extra}{dep.specifier}"
            if in_image:
                todo.append(dep)
    return sorted(needed.values())


def image_name(registry_repository: str, version: str, commit: str | None, dirty: bool | None) -> str:
    """repository:VERSION-COMMIT (-dirty when the tree had uncommitted changes); the digest is what counts."""
    tag = f"{version}-{commit[:12] if commit else 'nogit'}{'-dirty' if dirty else ''}"
    return f"{registry_repository}:{tag}"


def labels(plan_: FlowsImagePlan, commit: str | None, dirty: bool | None) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": "provenflow flows",
        "org.opencontainers.image.version": plan_.version,
        "org.opencontainers.image.created": datetime.now(UTC).isoformat(),
        "org.opencontainers.image.revision": commit or "",
        "org.opencontainers.image.description": "provenflow's flows and their locked dependencies, "
        "for flow runs of a Kubernetes work pool",
        "io.provenflow.code.dirty": str(dirty),
        "io.provenflow.requirements.sha256": plan_.requirements_hash,
    }


DOCKERFILE = """\
FROM {base} AS install
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-index --no-cache-dir --find-links /tmp/wheels -r /tmp/wheels/requirements.txt

# The wheels stay in the first stage: only the installed environment is copied on.
FROM {base}
COPY --from=install /opt/venv /opt/venv
COPY project {project}
COPY requirements.txt /opt/provenflow/requirements.txt
# HOME for Prefect's own settings folder; PROVENFLOW_HOME only for what a run keeps locally (the Job's
# env sets the ledger and the store).
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin PYTHONPATH={project} PYTHONDONTWRITEBYTECODE=1 \\
    HOME=/tmp PROVENFLOW_HOME=/tmp/provenflow
WORKDIR {project}
USER {user}
"""


def project_files(project: Path) -> list[str]:
    """The files of the project's parts that go into the image: in a git checkout only tracked ones (as they
    are in the working tree), so an untracked file (a local .env, a notebook's output) never ships."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *PROJECT_PARTS], cwd=project,
                                capture_output=True, check=False)  # fmt: skip
    except FileNotFoundError:
        listed = None
    if listed is not None and listed.returncode == 0 and listed.stdout:
        return [f for f in listed.stdout.decode().split("\0") if f and (project / f).is_file()]
    found = []
    for part in PROJECT_PARTS:
        path = project / part
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        found += [str(p.relative_to(project)) for p in candidates
                  if "__pycache__" not in p.parts and ".provenflow" not in p.parts and p.suffix != ".pyc"]  # fmt: skip
    return found


def build_context(
    plan_: FlowsImagePlan, wheels: Path, base_image: str, dest: Path, commit: str | None, dirty: bool | None
) -> Path:
    """The folder docker builds from: Dockerfile, wheels, the project's flows and code, stamped with its
    COMMIT (the image has no git; runs in it record the commit from the stamp: provenflow/source.py)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(wheels, dest / "wheels")
    for relative in project_files(plan_.project):
        target = dest / "project" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plan_.project / relative, target)
    (dest / "project" / CODE_STAMP).write_text(json.dumps({"commit": commit, "dirty": dirty}))
    (dest / "requirements.txt").write_text("\n".join(plan_.requirements) + "\n")
    (dest / "Dockerfile").write_text(DOCKERFILE.format(base=base_image, project=PROJECT_DIR, user=SERVING_USER))
    return dest


def last_reference(workspace) -> str | None:
    """The newest recorded flows image, by digest (repository@sha256:…); None when none was built."""
    from sqlalchemy import select

    from provenflow.ledger import models as m

    newest = select(m.FlowsImage.reference).order_by(m.FlowsImage.created_at.desc(), m.FlowsImage.id.desc())
    with workspace.ledger.reader() as session:
        return session.scalars(newest.limit(1)).first()
