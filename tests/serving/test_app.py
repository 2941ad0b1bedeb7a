"""The real app under uvicorn (the container's entry point), called over HTTP."""

from __future__ import annotations

import json
import signal

import httpx
import numpy as np
import pytest

from provenflow.modeling import training
from provenflow.serving.bundle import load_bundle
from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import records_of, start_server


def feature_names(bundle) -> list[str]:
    return [i["name"] for i in json.loads((bundle / "metadata.json").read_text())["signature"]["inputs"]]


def test_probes_and_metadata(forest_server, recorded):
    assert httpx.get(f"{forest_server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{forest_server.url}/ready").json()
    assert ready["status"] == "ready" and ready["runtime"] == "onnx"
    meta = httpx.get(f"{forest_server.url}/metadata").json()
    assert meta["model"]["name"] == "penguins-forest" and meta["model"]["version"] == 1
    assert meta["runtime"] == "onnx" and meta["runtime_reason"] is None
    assert meta["datasets"] == [recorded.dataset_ref]
    assert meta["training_run"] and meta["code"]["commit"]


@pytest.mark.parametrize("shape", ["records", "columns", "bare-list"])
def test_predictions_match_sklearn(forest_server, bundles, recorded, shape):
    names = feature_names(bundles["forest"])
    records = records_of(recorded.frame, names)
    if shape == "records":
        body = {"records": records}
    elif shape == "columns":
        body = {"columns": {n: [r[n] for r in records] for n in names}}
    else:
        body = records
    answer = httpx.post(f"{forest_server.url}/predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    pipeline = load_bundle(bundles["forest"], use_onnx=False).pipeline
    frame = training.features_of(recorded.frame, "species")
    assert got["predictions"] == pipeline.predict(frame).tolist()
    assert np.abs(np.array(got["probabilities"]) - pipeline.predict_proba(frame)).max() <= 1e-5
    assert got["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert got["model"]["hash"] == json.loads((bundles["forest"] / "metadata.json").read_text())["hash"]
    assert len(got["request_id"]) == 32


def test_fallback_model_serves_with_sklearn_and_says_why(centroid_server, bundles, recorded):
    meta = httpx.get(f"{centroid_server.url}/metadata").json()
    assert meta["runtime"] == "sklearn" and "NearestCentroid" in meta["runtime_reason"]
    names = feature_names(bundles["centroid"])
    got = httpx.post(f"{centroid_server.url}/predict", json=records_of(recorded.frame.head(20), names)).json()
    pipeline = load_bundle(bundles["centroid"]).pipeline
    assert (
        got["predictions"]
        == pipeline.predict(training.features_of(recorded.frame.head(20), "species")).tolist()
    )


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b'{"records": []}', None, "no rows"),
        (b'[{"island": "Dream"}]', "bill_length_mm", "missing column"),
        (b'[{"island": "Dream", "bill_length_mm": "long", "bill_depth_mm": 1, "flipper_length_mm": 1, '
         b'"body_mass_g": 1, "sex": "male", "year": 2007}]', "bill_length_mm", "expected a number"),
        (b'[{"island": "Dream", "bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 1, '
         b'"body_mass_g": 1, "sex": "male", "year": 2007, "colour": "red"}]', "colour", "unknown column"),
    ],
)  # fmt: skip
def test_bad_requests_get_422_naming_the_field(forest_server, content, field, message):
    answer = httpx.post(
        f"{forest_server.url}/predict", content=content, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["problems"][0]["field"] == field and message in body["error"]
    assert httpx.get(f"{forest_server.url}/ready").status_code == 200  # and it keeps serving


def test_whole_rows_of_the_training_table_are_taken_and_the_columns_it_left_out_ignored(
    forest_server, bundles, recorded
):
    """A client posting rows as the training table has them (the target, an identifier the model
    left out) gets the answer the model's own columns give; a column the table never had is
    still refused, with its name."""
    names = feature_names(bundles["forest"])
    frame = recorded.frame.head(8)
    plain = httpx.post(f"{forest_server.url}/predict", json=records_of(frame, names)).json()
    whole = httpx.post(f"{forest_server.url}/predict", json=records_of(frame, [*names, "species"]))
    assert whole.status_code == 200, whole.text
    assert whole.json()["predictions"] == plain["predictions"]
    rows = records_of(frame, [*names, "species"])
    columns = {name: [row[name] for row in rows] for name in [*names, "species"]}
    assert httpx.post(f"{forest_server.url}/predict", json={"columns": columns}).json()["predictions"] == (
        plain["predictions"]
    )
    row = {**records_of(frame, names)[0], "species": "Adelie", "colour": "red"}
    wrong = httpx.post(f"{forest_server.url}/predict", json=[row])
    assert wrong.status_code == 422 and wrong.json()["problems"][0]["field"] == "colour"
    assert [p["field"] for p in wrong.json()["problems"]] == ["colour"]


def test_request_id_is_taken_from_the_header(forest_server, bundles, recorded):
    names = feature_names(bundles["forest"])
    answer = httpx.post(
        f"{forest_server.url}/predict",
        json=records_of(recorded.frame.head(1), names),
        headers={"X-Request-ID": "abc-123"},
    )
    assert answer.json()["request_id"] == "abc-123"


def test_bearer_token(bundles, recorded, tmp_path):
    server = start_server(bundles["logistic"], str(tmp_path / "log"), token="s3cret")
    try:
        body = records_of(recorded.frame.head(3), feature_names(bundles["logistic"]))
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            assert httpx.post(f"{server.url}/predict", json=body, headers=headers).status_code == 401
            assert httpx.get(f"{server.url}/metadata", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{server.url}/predict", json=body, headers=good).status_code == 200
        assert httpx.get(f"{server.url}/metadata", headers=good).json()["runtime"] == "onnx"
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.get(f"{server.url}/ready").status_code == 200
    finally:
        err = server.stop()
    assert "s3cret" not in err


def test_every_prediction_is_logged_after_a_clean_shutdown(bundles, recorded, tmp_path):
    # A long flush interval and a large segment size: the rows can only reach the log at shutdown.
    server = start_server(
        bundles["forest"], str(tmp_path / "store"), extra=("--flush-seconds", "600", "--flush-rows", "100000")
    )
    names = feature_names(bundles["forest"])
    served, ids = 0, []
    with httpx.Client() as client:
        for size in (1, 7, 50, 1, 344):
            got = client.post(
                f"{server.url}/predict", json=records_of(recorded.frame.head(size), names)
            ).json()
            served += len(got["predictions"])
            ids.append(got["request_id"])
        client.post(f"{server.url}/predict", content=b"[]")  # rejected requests are not predictions
    err = server.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why it stopped.
    assert server.process.returncode in (0, -signal.SIGTERM), err
    frame, skipped = read_predictions(str(tmp_path / "store"), "penguins-forest", 1)
    assert skipped == [] and len(frame) == served == 403
    assert sorted(frame["request_id"].unique()) == sorted(ids)
    assert set(frame.columns) >= {"time", "model_version", "model_hash", "prediction", "proba_Adelie", *names}
    last = frame[frame["request_id"] == ids[-1]].sort_values("row")
    assert (
        last["prediction"].tolist()
        == load_bundle(bundles["forest"])
        .pipeline.predict(training.features_of(recorded.frame, "species"))
        .tolist()
    )
    assert str(frame["bill_length_mm"].dtype) == "float64" and frame["time"].dt.tz is not None


def test_server_keeps_serving_a_batch_over_the_limit(bundles, recorded, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "store"), extra=("--max-rows", "10"))
    try:
        names = feature_names(bundles["forest"])
        big = httpx.post(f"{server.url}/predict", json=records_of(recorded.frame.head(11), names))
        assert big.status_code == 413 and "limit of 10" in big.json()["error"]
        assert (
            httpx.post(f"{server.url}/predict", json=records_of(recorded.frame.head(10), names)).status_code
            == 200
        )
    finally:
        server.stop()


def test_serve_exports_from_the_workspace_and_logs_into_its_store(recorded, bundles, tmp_path):
    """``serve()`` as the CLI will call it, in its own process, stopped with SIGTERM."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.serving.conftest import Server, _wait_ready, free_port

    port = free_port()
    ledger_url = recorded.workspace.ledger.url
    code = (
        "from provenflow.serving import serve\n"
        "from provenflow.workspace import Workspace\n"
        f"serve('penguins-logistic@latest', port={port}, workspace=Workspace.open({ledger_url!r}, {recorded.store_url!r}))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True)
    server = Server(f"http://127.0.0.1:{port}", process, recorded.store_url)
    _wait_ready(server)
    names = feature_names(bundles["logistic"])
    answer = httpx.post(f"{server.url}/predict", json=records_of(recorded.frame.head(5), names)).json()
    assert httpx.get(f"{server.url}/metadata").json()["runtime"] == "onnx"
    server.stop()
    frame, _ = read_predictions(recorded.store_url, "penguins-logistic", 1)
    assert answer["request_id"] in set(frame["request_id"])


def test_log_fsync_serves_and_logs(bundles, recorded, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "store"), extra=("--log-fsync",))
    names = feature_names(bundles["forest"])
    ids = [
        httpx.post(f"{server.url}/predict", json=records_of(recorded.frame.head(n), names)).json()[
            "request_id"
        ]
        for n in (1, 5)
    ]
    server.stop()
    frame, _ = read_predictions(str(tmp_path / "store"), "penguins-forest", 1)
    assert sorted(frame["request_id"].unique()) == sorted(ids) and len(frame) == 6
