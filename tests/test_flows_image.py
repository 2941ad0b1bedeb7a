"""The flows image's plan and build context (no Docker here: tests/workpools/test_flows_image.py builds and runs it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement

from provenflow.deploy import flows_image
from provenflow.ledger import models as m


@pytest.fixture(scope="module")
def plan():
    return flows_image.plan(flows_image.project_root(), "3.11.2")


def test_every_dependency_is_pinned_to_the_version_installed_here(plan):
    pinned = [Requirement(r) for r in plan.requirements if "==" in r]
    names = {r.name for r in pinned}
    assert {"prefect", "prefect-kubernetes", "scikit-learn", "sqlalchemy", "psycopg"} <= names
    for req in pinned:
        (spec,) = req.specifier
        assert spec.version == version(req.name), req
    assert "psycopg[binary]==" + version("psycopg") in plan.requirements  # extras kept
    assert len(plan.requirements_hash) == 64


def test_what_only_the_images_python_needs_is_named_without_its_marker():
    # redis (which prefect needs) needs async-timeout below Python 3.11.3 (bookworm's 3.11.2), not on newer
    # patch releases: pip, resolving for the Python it runs on, would leave it out of the wheels.
    requirements = [f"prefect=={version('prefect')}"]
    older = flows_image.image_only_requirements(requirements, "3.11.2")
    assert [Requirement(r).name for r in older] == ["async-timeout"]
    assert all(Requirement(r).marker is None for r in older)
    assert flows_image.image_only_requirements(requirements, "3.11.9") == []


def test_build_context_holds_the_project_not_caches(plan, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "requirements.txt").write_text("\n".join(plan.requirements))
    context = flows_image.build_context(plan, wheels, "base:1", tmp_path / "context", "c" * 40, False)
    project = context / "project"
    for part in ("flows/model_run.py", "flows/_flow.py", "tasks/model.py", "provenflow/tracking/run.py",
                 "blocks/registry.py", "prefect.yaml", "deployments/kubernetes-base-job-template.json"):  # fmt: skip
        assert (project / part).is_file(), part
    assert not list(project.rglob("__pycache__")) and not list(project.rglob("*.pyc"))

    assert (context / "requirements.txt").read_text().split() == plan.requirements
    dockerfile = (context / "Dockerfile").read_text()
    # The wheels stay in the first stage; the flow runs find the project where prefect.yaml's pull step looks.
    assert "FROM base:1 AS install" in dockerfile and "COPY --from=install /opt/venv /opt/venv" in dockerfile
    assert f"WORKDIR {flows_image.PROJECT_DIR}" in dockerfile and "USER 10001" in dockerfile
    assert flows_image.PROJECT_DIR in (project / "prefect.yaml").read_text()
    # No git in the image: a run started in it records the commit it was built from.
    from provenflow.tracking.source import capture_code

    code = capture_code(cwd=project / "flows")
    assert (code.commit, code.dirty) == ("c" * 40, False)


def test_image_name_says_version_and_commit():
    assert flows_image.image_name("r:5000/provenflow/flows", "0.1.0", "a" * 40, False) == (
        "r:5000/provenflow/flows:0.1.0-aaaaaaaaaaaa"
    )
    assert flows_image.image_name("r/f", "0.1.0", "b" * 40, True).endswith(":0.1.0-bbbbbbbbbbbb-dirty")
    assert flows_image.image_name("r/f", "0.1.0", None, None).endswith(":0.1.0-nogit")


def test_last_reference_is_the_newest_recorded(workspace):
    assert flows_image.last_reference(workspace) is None
    now = datetime.now(UTC)
    with workspace.ledger.transaction() as session:
        for minutes, digest in ((5, "1"), (0, "2"), (10, "3")):
            session.add(m.FlowsImage(image="r/f:0.1.0-x", digest="sha256:" + digest * 64,
                                     reference="r/f@sha256:" + digest * 64, requirements_hash="0" * 64,
                                     created_at=now - timedelta(minutes=minutes)))  # fmt: skip
    assert flows_image.last_reference(workspace) == "r/f@sha256:" + "2" * 64


def test_only_tracked_files_of_a_checkout_go_into_the_image(tmp_path):
    import subprocess

    for part in flows_image.PROJECT_PARTS:
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        if part.endswith((".yaml", ".toml")):
            (tmp_path / part).write_text("x")
        else:
            (tmp_path / part).mkdir()
            (tmp_path / part / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    (tmp_path / "flows" / ".env").write_text("PASSWORD=hunter2")  # untracked: stays out
    (tmp_path / "flows" / "__init__.py").write_text("# changed, tracked: goes in as it is now")
    files = flows_image.project_files(tmp_path)
    assert "flows/__init__.py" in files and "prefect.yaml" in files and "flows/.env" not in files
