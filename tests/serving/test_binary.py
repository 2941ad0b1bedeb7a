"""Binary bodies over real HTTP: Arrow IPC streams on /predict, V2's binary tensor extension (Triton's client)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from provenflow.serving.arrow import CONTENT_TYPE as ARROW
from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import records_of, start_server

httpclient = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]' (dev extras)")


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    server = start_server(
        bundles["forest"], str(tmp_path_factory.mktemp("binary-log")), extra=("--max-rows", "500")
    )
    yield server
    server.stop()


def names(bundles) -> list[str]:
    return [
        i["name"]
        for i in json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    ]


def stream(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=100):  # several record batches
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def arrow_table(frame, columns: list[str]) -> pa.Table:
    return pa.Table.from_pandas(frame[columns], preserve_index=False)


def test_arrow_body_predicts_like_json_and_answers_arrow(server, bundles, recorded):
    columns = names(bundles)
    frame = recorded.frame.copy()  # with its missing values (NaN numbers, missing sex)
    url = f"{server.url}/predict"
    want = httpx.post(url, json={"records": records_of(frame, columns)}).json()

    answer = httpx.post(url, content=stream(arrow_table(frame, columns)),
                        headers={"content-type": ARROW, "x-request-id": "arrow-json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["predictions"] == want["predictions"]
    assert np.abs(np.array(got["probabilities"]) - np.array(want["probabilities"])).max() < 1e-9

    # dictionary-encoded strings (pandas categoricals) read the same
    categorical = frame.astype({"island": "category", "sex": "category"})
    answer = httpx.post(url, content=stream(arrow_table(categorical, columns)),
                        headers={"content-type": ARROW, "accept": ARROW, "x-request-id": "arrow-arrow"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == ARROW and answer.headers["x-request-id"] == "arrow-arrow"
    table = pa.ipc.open_stream(answer.content).read_all()
    assert table.column("prediction").to_pylist() == want["predictions"]
    for i, cls in enumerate(want["classes"]):
        got_proba = table.column(f"proba_{cls}").to_numpy()
        assert np.abs(got_proba - np.array(want["probabilities"])[:, i]).max() < 1e-9
    meta = json.loads(table.schema.metadata[b"provenflow"])
    assert meta["request_id"] == "arrow-arrow" and meta["model"]["name"] == "penguins-forest"

    # logged like JSON requests, row for row
    server.stop()
    logged, skipped = read_predictions(server.log_url, "penguins-forest", 1)
    assert skipped == []
    for request_id in ("arrow-json", "arrow-arrow"):
        rows = logged[logged["request_id"] == request_id].sort_values("row")
        assert rows["prediction"].tolist() == want["predictions"]
        assert rows["island"].tolist() == frame["island"].tolist()
        # strings written to the log as the body held them (large_string), missing ones missing
        assert rows["sex"].isna().tolist() == frame["sex"].isna().tolist() and frame["sex"].isna().any()
        assert rows["sex"].dropna().tolist() == frame["sex"].dropna().tolist()
        np.testing.assert_array_equal(rows["bill_length_mm"].to_numpy(), frame["bill_length_mm"].to_numpy())


@pytest.fixture
def fresh(bundles, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "log"), extra=("--max-rows", "500"))
    yield server
    server.stop()


def test_bad_arrow_bodies_are_refused_with_one_clear_answer(fresh, bundles, recorded):
    columns = names(bundles)
    frame = recorded.frame.head(20)
    url = f"{fresh.url}/predict"

    def post(body: bytes) -> httpx.Response:
        return httpx.post(url, content=body, headers={"content-type": ARROW})

    good = stream(arrow_table(frame, columns))
    too_many = recorded.frame.sample(600, replace=True, random_state=1)
    cases = {
        400: {
            "not an Arrow IPC stream": b'{"records": []}',
            "Expected to read": good[: len(good) // 2],  # torn
            "buffers are compressed": stream(arrow_table(frame, columns), compression="zstd"),
        },
        422: {
            "missing column 'sex'": stream(arrow_table(frame, [c for c in columns if c != "sex"])),
            "column 'bill_length_mm': expected a number": stream(
                arrow_table(frame.astype({"bill_length_mm": str}), columns)
            ),
            "infinity": stream(arrow_table(frame.assign(bill_length_mm=np.inf), columns)),
        },
        413: {"more than this server's limit of 500": stream(arrow_table(too_many, columns))},
    }
    for status, bodies in cases.items():
        for message, body in bodies.items():
            answer = post(body)
            assert answer.status_code == status, (message, answer.text)
            assert message in answer.json()["error"], answer.json()
    # an Arrow request still answers; nothing half-written: only it is logged
    assert post(good).status_code == 200
    fresh.stop()
    logged, _ = read_predictions(fresh.log_url, "penguins-forest", 1)
    assert len(logged) == 20


def test_triton_client_sends_and_receives_binary_tensors(server, bundles, recorded, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "log"))
    try:
        triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        meta = triton.get_model_metadata("penguins-forest")
        # Triton's client cannot send a missing category: rows with one stay out
        frame = recorded.frame[recorded.frame["sex"].notna()].copy()
        frame.loc[frame.index[:5], "bill_length_mm"] = np.nan  # a missing number travels as NaN
        inputs = []
        for spec in meta["inputs"]:
            dtype = object if spec["datatype"] == "BYTES" else np.float64
            tensor = httpclient.InferInput(spec["name"], [len(frame)], spec["datatype"])
            tensor.set_data_from_numpy(frame[spec["name"]].to_numpy(dtype=dtype), binary_data=True)
            inputs.append(tensor)
        outputs = [
            httpclient.InferRequestedOutput(n, binary_data=True) for n in ("predictions", "probabilities")
        ]
        result = triton.infer(
            "penguins-forest", inputs, outputs=outputs, headers=StrHeaders({"X-Request-ID": "bin"})
        )
        response = result.get_response()
        assert all("binary_data_size" in o["parameters"] for o in response["outputs"])  # really binary
        columns = {c: [None if v != v else v for v in frame[c].tolist()] for c in names(bundles)}
        want = httpx.post(f"{server.url}/predict", json={"columns": columns}).json()
        assert [v.decode() for v in result.as_numpy("predictions").tolist()] == want["predictions"]
        assert np.abs(result.as_numpy("probabilities") - np.array(want["probabilities"])).max() < 1e-9
        # no outputs named: the client asks for everything binary
        result = triton.infer("penguins-forest", inputs, headers=StrHeaders())
        assert [v.decode() for v in result.as_numpy("predictions").tolist()] == want["predictions"]

        url = f"{server.url}/v2/models/penguins-forest/infer"
        header = orjson.dumps({"inputs": [{"name": "bill_length_mm", "datatype": "FP64", "shape": [2],
                                           "parameters": {"binary_data_size": 16}}]})  # fmt: skip
        bad = {
            "but the body has": (header, len(header) + 5),
            "declare 16 bytes of binary data, but 24 follow": (header + b"\0" * 24, len(header)),
            "runs past the end of the body": (header + b"\0" * 8, len(header)),
            "must be the JSON header's length": (header, "ten"),
        }
        for message, (body, length) in bad.items():
            answer = httpx.post(url, content=body, headers={"inference-header-content-length": str(length)})
            assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    finally:
        server.stop()
    logged, _ = read_predictions(server.log_url, "penguins-forest", 1)
    assert (logged["request_id"] == "bin").sum() == len(frame)


class StrHeaders(dict):
    """tritonclient 2.73 sets Inference-Header-Content-Length as an int, which geventhttpclient cannot
    send; this dict stores every header value as a string."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, str(value))
