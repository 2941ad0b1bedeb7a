"""Every body-taking endpoint is bounded like /predict: V2 ``infer`` and ``/feedback`` against the real
server process over HTTP (uvicorn, as the release image runs it).

Four bodies at the body limit are sent at once while /health is probed over its own connection; the
server's RSS is sampled from /proc. The limit is set to LIMIT_MB (the default 64 MB behaves the same,
only slower to send: ``PROVENFLOW_TEST_BODY_MB=64`` measures it). Malformed bodies answer 400, never 500.
"""

from __future__ import annotations

import os
import threading
import time

import httpx
import orjson
import pytest

from tests.serving.conftest import bundles, recorded, start_server  # noqa: F401  (session fixtures)
from tests.serving.test_limits import MB, PeakRss, rss

LIMIT_MB = int(os.environ.get("PROVENFLOW_TEST_BODY_MB", "16"))
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):  # noqa: F811
    server = start_server(
        bundles["forest"], str(tmp_path_factory.mktemp("bounds-log")),
        extra=("--max-body-bytes", str(LIMIT_MB * MB)),
    )  # fmt: skip
    yield server
    server.stop()


def signature(server) -> list[dict]:
    return httpx.get(f"{server.url}/v2/models/penguins-forest").json()["inputs"]


def dense_v2(inputs: list[dict], size: int) -> bytes:
    """A V2 body of about SIZE bytes, as many short values as fit (far more rows than the server takes)."""
    per_row = sum(4 if i["datatype"] == "FP64" else 8 for i in inputs)
    n = size // per_row
    tensors = [
        {"name": i["name"], "shape": [n], "datatype": i["datatype"],
         "data": [1.5] * n if i["datatype"] == "FP64" else ["Dream"] * n}
        for i in inputs
    ]  # fmt: skip
    return orjson.dumps({"inputs": tensors})


def padded_v2(inputs: list[dict], size: int, rows: int = 100_000) -> bytes:
    """A valid V2 body of ROWS rows (the server's limit), padded with whitespace to SIZE bytes."""
    tensors = [
        {"name": i["name"], "shape": [rows], "datatype": i["datatype"],
         "data": [40.5] * rows if i["datatype"] == "FP64" else ["Dream"] * rows}
        for i in inputs
    ]  # fmt: skip
    body = orjson.dumps({"inputs": tensors})
    return body[:-1] + b" " * (size - len(body)) + body[-1:]


def dense_feedback(size: int) -> bytes:
    one = b'{"id":"req:1","label":"Adelie"},'
    n = (size - 20) // len(one)
    return b'{"labels":[' + one * (n - 1) + one[:-1] + b"]}"


def four_at_once(server, path: str, body: bytes) -> tuple[list[int], float, float, int]:
    """Send BODY four times concurrently; (statuses, max and median /health seconds, peak RSS growth)."""
    statuses: list[int] = []
    done = threading.Barrier(5)

    def send() -> None:
        try:
            answer = httpx.post(f"{server.url}{path}", content=body, headers=JSON, timeout=120)
            statuses.append(answer.status_code)
        finally:
            done.wait()

    latencies: list[float] = []
    before = rss(server.process.pid)
    with PeakRss(server.process.pid) as peak, httpx.Client(base_url=server.url, timeout=30) as probe:
        probe.get("/health")
        senders = [threading.Thread(target=send) for _ in range(4)]
        for sender in senders:
            sender.start()
        while len(statuses) < 4:
            start = time.perf_counter()
            assert probe.get("/health").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.005)
        done.wait()
    latencies.sort()
    return statuses, latencies[-1], latencies[len(latencies) // 2], peak.peak - before


@pytest.mark.parametrize("kind", ["v2-dense", "v2-valid", "feedback-dense"])
def test_four_bodies_at_the_limit_stay_within_a_memory_budget(server, kind):
    inputs = signature(server)
    size = LIMIT_MB * MB - 1024
    if kind == "v2-dense":
        path, body, expected = "/v2/models/penguins-forest/infer", dense_v2(inputs, size), 413
    elif kind == "v2-valid":
        path, body, expected = "/v2/models/penguins-forest/infer", padded_v2(inputs, size), 200
    else:
        path, body, expected = "/feedback", dense_feedback(min(size, 16 * MB - 1024)), 413
    assert len(body) <= LIMIT_MB * MB
    statuses, worst, median, grown = four_at_once(server, path, body)
    print(f"\n{kind}: 4 x {len(body) / MB:.1f} MB -> {statuses}; peak RSS growth {grown / MB:.0f} MB; "
          f"/health max {worst * 1e3:.0f} ms, median {median * 1e3:.1f} ms")  # fmt: skip
    assert statuses == [expected] * 4
    # The budget: one large body parsed at a time (the others wait, unread), the one being parsed and
    # the scan's arrays a small multiple of the limit. Before: a dense 16 MB V2 body grew the server
    # by ~100 MB each (4 at once: 411 MB), a dense /feedback body by ~250 MB (4 at once: 1,021 MB).
    budget = 3 * LIMIT_MB * MB + 32 * MB
    if kind == "v2-valid":
        # Plus what 100,000 rows (the row limit) cost whatever the body's size: their values,
        # the model's intermediate arrays and the prediction log's buffer (/predict: 88-102 MB).
        budget += 160 * MB
    assert grown <= budget, f"the server grew by {grown / MB:.0f} MB, budget {budget / MB:.0f} MB"
    # 100 ms is the target: met with the machine at load ~9 (40-70 ms); at load 13 on the 2 shared
    # cores, 470-510 ms were seen while the median stayed at 15-25 ms. A parse on the event loop
    # stalls it for the whole parse of every body (seconds), which this still catches.
    assert worst < 1.0 and median < 0.1, (worst, median)
    assert httpx.get(f"{server.url}/health").status_code == 200


def _v2(tensor_data: bytes, name: bytes = b"island", kind: bytes = b"BYTES") -> bytes:
    return (
        b'{"inputs":[{"name":"'
        + name
        + b'","shape":[1],"datatype":"'
        + kind
        + b'","data":'
        + tensor_data
        + b"}]}"
    )


MALFORMED_V2 = {
    "deep brackets": b"[" * 50_000,
    "deep after NaN": b"[NaN," + b"[" * 50_000,
    "NaN then deep object": b'{"inputs":[NaN,' + b'{"a":' * 50_000,
    "lone surrogate escape": _v2(b'["\\ud800"]'),
    "lone surrogate in a name": b'{"inputs":[{"name":"\\udfff","shape":[1],"datatype":"BYTES","data":["x"]}]}',
    "invalid UTF-8": _v2(b'["\xff\xfe"]'),
    "Infinity": _v2(b"[Infinity]", b"bill_length_mm", b"FP64"),
    "not JSON": b"{inputs: 1",
    "shape of booleans": b'{"inputs":[{"name":"island","shape":[true, true],"datatype":"BYTES","data":[["x"]]}]}',
    "nested rows": b'{"inputs":[{"name":"island","shape":[1,1],"datatype":"BYTES","data":[[["x"]]]}]}',
    "row of a dict": b'{"inputs":[{"name":"island","shape":[1,1],"datatype":"BYTES","data":[[{"a":1}]]}]}',
    "id not a string": b'{"id":{"a":1},"inputs":"x"}',
    "top-level string": b'"\\ud800"',
}
MALFORMED_FEEDBACK = {
    "deep brackets": b"[" * 50_000,
    "NaN first": b'[NaN,{"id":"a:0","label":"Adelie"}]',
    "lone surrogate": b'{"labels":[{"id":"a:0","label":"\\ud800"}]}',
    "invalid UTF-8": b'{"labels":[{"id":"a:0","label":"\xff"}]}',
    "label an object": b'{"labels":[{"id":"a:0","label":{"x":[1]}}]}',
    "row out of range": b'{"labels":[{"request_id":"abc","row":99999999999,"label":"Adelie"}]}',
    "request id with a path": b'{"labels":[{"request_id":"../../../x\\n\\u0000","row":0,"label":"Adelie"}]}',
}


@pytest.mark.parametrize("name", sorted(MALFORMED_V2))
def test_malformed_v2_bodies_answer_400(server, name):
    answer = httpx.post(
        f"{server.url}/v2/models/penguins-forest/infer", content=MALFORMED_V2[name], headers=JSON
    )
    assert answer.status_code == 400, (name, answer.status_code, answer.text[:300])
    assert answer.json()["error"]


@pytest.mark.parametrize("name", sorted(MALFORMED_FEEDBACK))
def test_malformed_feedback_bodies_answer_400(server, name):
    answer = httpx.post(f"{server.url}/feedback", content=MALFORMED_FEEDBACK[name], headers=JSON)
    assert answer.status_code == 400, (name, answer.status_code, answer.text[:300])
    assert answer.json()["error"]


def test_nan_in_a_v2_number_tensor_is_still_a_missing_value(server):
    # Triton's client writes a missing FP64 as NaN: read as missing, without the slow stdlib parser.
    inputs = signature(server)
    tensors = [
        {"name": i["name"], "shape": [2], "datatype": i["datatype"],
         "data": "[NaN, 40.5]" if i["datatype"] == "FP64" else ["Dream", "NaN"]}
        for i in inputs
    ]  # fmt: skip
    body = orjson.dumps({"inputs": tensors}).replace(b'"[NaN, 40.5]"', b"[NaN, 40.5]")
    answer = httpx.post(f"{server.url}/v2/models/penguins-forest/infer", content=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["shape"] == [2]
