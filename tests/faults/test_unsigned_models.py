"""Issue 9, case 6: whoever can write the ledger and the store must not be able to run code in
whatever loads a model. The attack: a malicious pickle stored under its own BLAKE3 name, and the
model version's hash in the ledger pointed at it. Every loader must refuse it before unpickling."""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import provenflow
from provenflow.data import datasets
from provenflow.modeling import training
from provenflow.tracking.run import DatasetOutput, ModelOutput
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS, REPO
from tests.services import free_port

PROVENFLOW = [sys.executable, "-c", "from provenflow.cli.main import run; run()"]


class Payload:
    """Unpickling this writes a marker file: proof that the attacker's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def record_model(workspace: Workspace, name: str = "penguins-forest") -> str:
    frame = datasets.read_table(str(PENGUINS))
    with provenflow.start("penguins", kind="data", flow="data-run", workspace=workspace) as run:
        stored = datasets.store_table(workspace.store, frame)
        run.output(
            DatasetOutput(
                name="penguins", digest=stored.digest, size=stored.size, uri=stored.uri,
                format=datasets.PARQUET, rows=len(frame), columns=frame.shape[1],
                schema=datasets.schema_of(frame), profile=datasets.profile_of(frame),
            )
        )  # fmt: skip
    with provenflow.start(name, kind="model", flow="model-run", workspace=workspace) as run:
        run.input(f"penguins@{stored.digest.short}")
        estimator = "sklearn.linear_model.LogisticRegression"
        model = training.import_estimator(estimator, {"max_iter": 500}, seed=7)
        trained = training.train_and_evaluate(frame, "species", model, seed=7, test_size=0.25)
        blob = workspace.store.put_bytes(training.serialize(trained.pipeline))
        run.output(
            ModelOutput(
                name=name, digest=blob.digest, size=blob.size, uri=workspace.store.uri(blob.digest),
                format=training.MODEL_FORMAT, estimator=estimator, task=trained.task,
                signature=trained.signature, params=trained.params, metrics=trained.metrics,
            )
        )  # fmt: skip
    return f"{name}@1"


def swap_in_payload(project: Path, workspace: Workspace, marker: Path) -> str:
    """What an attacker with write access to the ledger and the store does; returns the new hash."""
    blob = workspace.store.put_bytes(pickle.dumps(Payload(marker), protocol=5))
    with sqlite3.connect(project / ".provenflow" / "ledger.db") as db:
        db.execute("UPDATE model_versions SET hash = ?, size = ?", (blob.digest.hex, blob.size))
    return blob.digest.hex


@pytest.fixture
def tampered(project, tmp_path):
    workspace = Workspace.default()
    ref = record_model(workspace)
    marker = tmp_path / "payload-ran"
    swap_in_payload(project, workspace, marker)
    return workspace, ref, marker


def test_serve_refuses_a_swapped_pickle_without_running_it(tampered, project):
    _, ref, marker = tampered
    server = subprocess.Popen(
        [*PROVENFLOW, "serve", ref, "--port", str(free_port())],
        cwd=project, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # today's main: it unpickles the payload and serves
        server.kill()
        _, stderr = server.communicate()
    assert not marker.exists(), "the attacker's pickle was unpickled"
    assert server.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "seal" in lines[0] and ref in lines[0], lines[0]


def test_every_loader_refuses_it(tampered, tmp_path):
    """The export (release, serve), promotion's scoring and reproduction all load through one door."""
    from provenflow.errors import SignatureError
    from provenflow.ledger.refs import resolve_model
    from provenflow.serving.bundle import export_bundle

    workspace, ref, marker = tampered
    with pytest.raises(SignatureError):
        export_bundle(workspace, ref, tmp_path / "bundle")
    with workspace.ledger.reader() as session:
        version = resolve_model(session, ref)
    with pytest.raises(SignatureError):
        training.load_model(workspace.store, version)
    assert not marker.exists()


def test_a_container_given_the_key_refuses_a_swapped_bundle(project, tmp_path):
    """The image's entry point checks the bundle's seal at start when PROVENFLOW_SIGNING_KEY is set."""
    import json

    from provenflow.digest import Digest
    from provenflow.modeling import signing
    from provenflow.serving.bundle import export_bundle

    workspace = Workspace.default()
    ref = record_model(workspace)
    bundle = tmp_path / "bundle"
    export_bundle(workspace, ref, bundle)
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(Payload(marker), protocol=5)
    (bundle / "model.pkl").write_bytes(payload)
    (bundle / "model.onnx").unlink(missing_ok=True)
    meta = json.loads((bundle / "metadata.json").read_text())
    meta.update(hash=Digest.of_bytes(payload).hex, onnx=None)
    (bundle / "metadata.json").write_text(json.dumps(meta))
    key = signing.signing_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "provenflow.serving", "--bundle", str(bundle), "--port", str(free_port())],
        cwd=REPO, env={**env, "PROVENFLOW_SIGNING_KEY": key.public_text(), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert not marker.exists(), "the attacker's pickle was unpickled"
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: ") and "seal does not match" in done.stderr, done.stderr
    assert key.public_text() not in done.stderr + done.stdout and key.text() not in done.stderr
