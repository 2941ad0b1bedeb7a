"""A model that uses the team's own transformer, and whose code imports an installed distribution the
serving packages do not include (python-slugify), released as an image (real Docker engine) and run
as Kubernetes runs it (read-only root, /tmp a scratch mount, an unprivileged user): it loads its
carried code, finds the distribution installed in the image, and answers over HTTP."""

from __future__ import annotations

import importlib.metadata
import io
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

import provenflow as pf
from provenflow.deploy import release
from provenflow.serving.bundle import export_bundle
from tests.services import free_port
from tests.serving.conftest import records_of
from tests.test_log_model import FEATURES, penguins_frame, slugged_model, team_module, ws  # noqa: F401 - fixtures
from tests.test_release_deploy import docker_client  # noqa: F401 - a fixture

LIST = """
import importlib.metadata, os, zipfile
for root, _, files in sorted(os.walk("/model")):
    for name in sorted(files):
        path = os.path.join(root, name)
        print(path, os.path.getsize(path))
for name in zipfile.ZipFile("/model/model.pkl").namelist():
    print("  model.pkl:", name)
print("\\n".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())))
"""


def test_own_code_model_serves_from_a_release_image(ws, project, team_module, penguins_frame, docker_client, tmp_path):  # noqa: F811
    labelled = penguins_frame.dropna(subset=["species"])
    model = slugged_model(project, team_module, labelled)
    with pf.start("train", workspace=ws):
        logged = pf.log_model(model, name="penguins-species", input_example=labelled[FEATURES].head())
    bundle = tmp_path / "bundle"
    meta = export_bundle(ws, str(logged), bundle)
    # Shared between test runs: the wheels depend only on the installed serving packages' versions.
    cache = Path(tempfile.gettempdir()) / "provenflow-test-wheels"
    wheels = release.collect_wheels(cache)
    extra = release.collect_model_wheels(cache, release.model_requirements(meta.signature, wheels))
    assert {w.name.split("-")[0] for w in extra.glob("*.whl")} == {"python_slugify", "text_unidecode"}
    context = release.build_context(bundle, wheels, release.DEFAULT_BASE_IMAGE, tmp_path / "context", extra)
    image = f"provenflow-test/own-code:{logged.hash[:12]}"
    release.build_image(docker_client, context, image, {}, release.DEFAULT_BASE_IMAGE)
    carried = zipfile.ZipFile(io.BytesIO((context / "model" / "model.pkl").read_bytes())).namelist()
    assert sorted(carried) == sorted(["model.pkl", *(f"code/{p}" for p in logged.code)])
    port = free_port()
    container = docker_client.containers.run(
        image, detach=True, read_only=True, tmpfs={"/tmp": "rw,size=64m"}, user=str(release.SERVING_USER),
        ports={f"{release.SERVING_PORT}/tcp": ("127.0.0.1", port)},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            time.sleep(0.5)
        rows = labelled.sample(25, random_state=3)
        answer = httpx.post(f"{url}/predict", json={"records": records_of(rows, FEATURES)}, timeout=30)
        assert answer.status_code == 200, answer.text + container.logs().decode()[-2000:]
        assert answer.json()["predictions"] == model.predict(rows[FEATURES])  # slugs: "adelie", ...
        assert set(answer.json()["predictions"]) <= {"adelie", "chinstrap", "gentoo"}
        # What the image holds: the bundle (the code archive, its metadata) and the distribution installed.
        listing = container.exec_run(["/opt/venv/bin/python", "-c", LIST]).output.decode()
        print(listing)  # for the record: pytest -s shows it
        assert f"python-slugify=={importlib.metadata.version('python-slugify')}" in listing.splitlines()
        assert "/model/model.pkl" in listing
    finally:
        container.remove(force=True)
        docker_client.images.remove(image, force=True)
