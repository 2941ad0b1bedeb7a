"""The Open Inference Protocol (V2), spoken by Triton's own HTTP client against the real server."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from provenflow.modeling import training
from provenflow.serving.bundle import load_bundle
from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import start_server

httpclient = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]' (dev extras)")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "v2-token"


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    server = start_server(bundles["forest"], str(tmp_path_factory.mktemp("v2-log")), token=TOKEN)
    yield server
    server.stop()


def client(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url.removeprefix("http://"))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def tensors(frame, signature: list[dict], binary: bool = False) -> list:
    """One V2 input per feature: BYTES for categoricals, FP64 for numbers (as the metadata says)."""
    out = []
    for spec in signature:
        column = frame[spec["name"]]
        if spec["datatype"] == "BYTES":
            values = column.to_numpy(dtype=object)
        else:
            values = column.to_numpy(dtype=np.float64)
        tensor = httpclient.InferInput(spec["name"], [len(frame)], spec["datatype"])
        tensor.set_data_from_numpy(values, binary_data=binary)
        out.append(tensor)
    return out


def test_triton_client_health_metadata_and_infer(server, bundles, recorded):
    triton = client(server)
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_model_metadata("penguins-forest", headers=AUTH)
    assert meta["versions"] == ["1"] and meta["platform"] == "provenflow-onnx"
    recorded_inputs = json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    assert [i["name"] for i in meta["inputs"]] == [i["name"] for i in recorded_inputs]
    kinds = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert kinds["island"] == "BYTES" and kinds["bill_length_mm"] == "FP64"
    assert triton.is_model_ready("penguins-forest", headers=AUTH)

    # Triton's client writes a missing FP64 as NaN (the server reads it as missing) but a missing
    # BYTES value as the string "None": it cannot send a missing category, so those rows stay out.
    frame = recorded.frame[recorded.frame["sex"].notna()].copy()
    frame.loc[frame.index[:5], "bill_length_mm"] = np.nan  # missing numbers are sent (as NaN)
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=False) for n in ("predictions", "probabilities")
    ]
    for version in ("", "1"):
        result = triton.infer(
            "penguins-forest", tensors(frame, meta["inputs"]), model_version=version, outputs=outputs,
            headers={**AUTH, "X-Request-ID": f"v2-{version or 'latest'}"},
        )  # fmt: skip
        pipeline = load_bundle(bundles["forest"], use_onnx=False).pipeline
        features = training.features_of(frame, "species")
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predictions").tolist()]
        assert got == pipeline.predict(features).tolist()
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(frame), 3)
        assert np.abs(probabilities - pipeline.predict_proba(features)).max() <= 1e-5
        assert result.get_response()["parameters"]["request_id"] == f"v2-{version or 'latest'}"

    # logged like /predict, under the request id
    server.stop()
    logged, skipped = read_predictions(server.log_url, "penguins-forest", 1)
    assert skipped == []
    assert set(logged["request_id"]) >= {"v2-latest", "v2-1"}
    assert (logged["request_id"] == "v2-1").sum() == len(frame)


@pytest.fixture
def fresh(bundles, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "log"), token=TOKEN)
    yield server
    server.stop()


def test_v2_errors_are_4xx_in_the_v2_shape(fresh, recorded):
    triton = client(fresh)
    meta = triton.get_model_metadata("penguins-forest", headers=AUTH)
    frame = recorded.frame.head(5)
    with pytest.raises(InferenceServerException, match="bearer token"):
        triton.infer("penguins-forest", tensors(frame, meta["inputs"]))
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        triton.infer("nope", tensors(frame, meta["inputs"]), headers=AUTH)
    with pytest.raises(InferenceServerException, match="no version '7'"):
        triton.infer("penguins-forest", tensors(frame, meta["inputs"]), model_version="7", headers=AUTH)
    url = f"{fresh.url}/v2/models/penguins-forest/infer"

    def post(inputs: list[dict]) -> httpx.Response:
        return httpx.post(url, json={"inputs": inputs}, headers=AUTH)

    good = [
        {"name": i["name"], "shape": [5, 1], "datatype": i["datatype"],
         "data": [[None if v != v else v] for v in frame[i["name"]].tolist()]}
        for i in meta["inputs"]
    ]  # fmt: skip
    assert post(good).status_code == 200  # shape [n, 1] with nested data works too
    cases = {
        "missing column 'sex'": [t for t in good if t["name"] != "sex"],
        "is numeric; send datatype FP64": [{**t, "datatype": "BYTES"} if t["name"] == "bill_length_mm" else t
                                           for t in good],
        "has shape [3, 1] but 5 values": [{**t, "shape": [3, 1]} if t["name"] == "island" else t for t in good],
        "unknown column 'islandd'": [*good, {**good[0], "name": "islandd"}],
    }  # fmt: skip
    for message, inputs in cases.items():
        answer = post(inputs)
        assert answer.status_code == 400, answer.text
        assert list(answer.json()) == ["error"] and message in answer.json()["error"], answer.json()
    wrong_value = [{**t, "data": [["long"]] * 5} if t["name"] == "bill_length_mm" else t for t in good]
    answer = post(wrong_value)
    assert answer.status_code == 400 and "bill_length_mm" in answer.json()["error"]
    assert httpx.post(url, content=b"x=1", headers={**AUTH, "content-type": "text/plain"}).status_code == 415
    # the binary tensor extension with a header length that cuts the JSON (tests/serving/test_binary.py: working ones)
    binary = httpx.post(url, json={"inputs": good}, headers={**AUTH, "Inference-Header-Content-Length": "10"})
    assert binary.status_code == 400 and "not valid JSON" in binary.json()["error"]
    assert httpx.get(f"{fresh.url}/v2/models/penguins-forest").status_code == 401
    assert httpx.get(f"{fresh.url}/v2/health/ready").json() == {"ready": True}
    metrics = httpx.get(f"{fresh.url}/metrics").text
    for status, count in {"200": 1, "400": 6, "401": 1, "404": 2, "415": 1}.items():
        assert f'provenflow_requests_total{{endpoint="v2_infer",status="{status}"}} {count}.0' in metrics


def test_v2_on_the_scikit_learn_runtime(centroid_server, recorded):
    """The fallback runtime (no ONNX converter); the metadata lists the outputs the answer has."""
    meta = httpx.get(f"{centroid_server.url}/v2/models/penguins-centroid").json()
    assert meta["platform"] == "provenflow-sklearn"
    frame = recorded.frame[recorded.frame["sex"].notna()].head(4)
    inputs = [
        {"name": i["name"], "datatype": i["datatype"], "shape": [4], "data": frame[i["name"]].tolist()}
        for i in meta["inputs"]
    ]
    answer = httpx.post(
        f"{centroid_server.url}/v2/models/penguins-centroid/versions/1/infer",
        json={"inputs": inputs, "id": "abc"},
    )
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["id"] == "abc" and got["model_version"] == "1"
    assert [o["name"] for o in got["outputs"]] == [o["name"] for o in meta["outputs"]]
    assert got["outputs"][0]["datatype"] == "BYTES" and got["outputs"][0]["shape"] == [4]
    assert set(got["outputs"][0]["data"]) <= {"Adelie", "Chinstrap", "Gentoo"}


def test_v2_regressor_answers_fp64_like_predict(bundles, recorded, tmp_path):
    server = start_server(bundles["forest-regressor"], str(tmp_path / "log"))
    try:
        meta = httpx.get(f"{server.url}/v2/models/penguins-forest-regressor").json()
        assert meta["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
        frame = recorded.frame[recorded.frame["sex"].notna()].head(6)
        inputs = [
            {"name": i["name"], "datatype": i["datatype"], "shape": [6], "data": frame[i["name"]].tolist()}
            for i in meta["inputs"]
        ]
        got = httpx.post(
            f"{server.url}/v2/models/penguins-forest-regressor/infer", json={"inputs": inputs}
        ).json()
        columns = {i["name"]: i["data"] for i in inputs}
        want = httpx.post(f"{server.url}/predict", json={"columns": columns}).json()["predictions"]
        assert got["outputs"][0]["datatype"] == "FP64" and got["outputs"][0]["data"] == want
        # a regressor's /metrics has the value histogram: 12 rows, all counted
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'provenflow_prediction_value_bucket{le="+Inf"} 12.0' in metrics
        assert f"provenflow_prediction_values_sum {sum(want) * 2}" in metrics
    finally:
        server.stop()
