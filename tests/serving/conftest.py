"""Real models recorded with the core API (no Prefect), their bundles, and real servers over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

import provenflow
from provenflow.data import datasets
from provenflow.modeling import training
from provenflow.tracking.run import DatasetOutput, ModelOutput
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS, REPO
from tests.services import free_port

# (model name, estimator, params, target): ONNX converts the first three; NearestCentroid has no converter.
MODELS = {
    "forest": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100}, "species"),
    "logistic": ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}, "species"),
    "forest-regressor": ("sklearn.ensemble.RandomForestRegressor", {"n_estimators": 30}, "body_mass_g"),
    "centroid": ("sklearn.neighbors.NearestCentroid", {}, "species"),
}


@dataclass
class Recorded:
    workspace: Workspace
    store_url: str
    dataset_ref: str
    frame: pd.DataFrame
    models: dict[str, str]  # short name -> NAME@VERSION


@pytest.fixture(scope="session")
def recorded(tmp_path_factory) -> Recorded:
    root = tmp_path_factory.mktemp("serving-workspace")
    store_url = str(root / "store")
    workspace = Workspace.open(f"sqlite:///{root}/ledger.db", store_url, fsync=False)
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
    dataset_ref = f"penguins@{stored.digest.short}"
    models = {}
    for short, (estimator, params, target) in MODELS.items():
        name = f"penguins-{short}"
        with provenflow.start(name, kind="model", flow="model-run", workspace=workspace) as run:
            run.input(dataset_ref)
            model = training.import_estimator(estimator, params, seed=7)
            trained = training.train_and_evaluate(frame, target, model, seed=7, test_size=0.25)
            blob = workspace.store.put_bytes(training.serialize(trained.pipeline))
            run.output(
                ModelOutput(
                    name=name, digest=blob.digest, size=blob.size, uri=workspace.store.uri(blob.digest),
                    format=training.MODEL_FORMAT, estimator=estimator, task=trained.task,
                    signature=trained.signature, params=trained.params, metrics=trained.metrics,
                )
            )  # fmt: skip
        models[short] = f"{name}@1"
    return Recorded(workspace, store_url, dataset_ref, frame, models)


@pytest.fixture(scope="session")
def bundles(recorded, tmp_path_factory) -> dict[str, Path]:
    from provenflow.serving.bundle import export_bundle

    out = {}
    for short, ref in recorded.models.items():
        dest = tmp_path_factory.mktemp("bundles") / short
        export_bundle(recorded.workspace, ref, dest)
        out[short] = dest
    return out


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_url: str

    def stop(self) -> str:
        """SIGTERM (a clean shutdown, as Kubernetes does it); returns what the server wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return err


def start_server(
    bundle: Path,
    log_url: str,
    token: str | None = None,
    extra: tuple[str, ...] = (),
    wait: bool = True,
    env: dict[str, str] | None = None,
) -> Server:
    """The container's entry point (python -m provenflow.serving) in a subprocess on a free port."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}, **(env or {})}
    env["PROVENFLOW_PREDICTION_LOG_URL"] = log_url
    if token:
        env["PROVENFLOW_SERVE_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "provenflow.serving", "--bundle", str(bundle), "--host", "127.0.0.1",
         "--port", str(port), *extra],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log_url)
    if wait:
        _wait_ready(server)
    return server


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited with {server.process.returncode}: {server.stop()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.process.kill()
    raise AssertionError(f"the server did not become ready within {timeout} s")


@pytest.fixture(scope="session")
def forest_server(bundles, tmp_path_factory) -> Iterator[Server]:
    server = start_server(bundles["forest"], str(tmp_path_factory.mktemp("forest-log")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def centroid_server(bundles, tmp_path_factory) -> Iterator[Server]:
    server = start_server(bundles["centroid"], str(tmp_path_factory.mktemp("centroid-log")))
    yield server
    server.stop()


def records_of(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as JSON-ready records: NaN as null, numpy scalars as Python ones."""
    out = []
    for row in frame[columns].itertuples(index=False):
        out.append(
            {
                c: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v))
                for c, v in zip(columns, row, strict=True)
            }
        )
    return out
