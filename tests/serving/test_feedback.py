"""POST /feedback on a real model server over HTTP: row ids, unknown ids, latest label wins, bad input."""

from __future__ import annotations

import httpx

from provenflow.serving.feedback import read_feedback
from tests.serving.conftest import records_of, start_server
from tests.serving.test_limits import MB, feature_names

TOKEN = "feedback-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def predict(server, bundle, frame) -> dict:
    rows = records_of(frame, feature_names(bundle))
    answer = httpx.post(f"{server.url}/predict", json={"records": rows}, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_row_ids_unknown_ids_and_latest_label_wins(bundles, recorded, tmp_path):
    store = str(tmp_path / "store")
    server = start_server(bundles["forest"], store, token=TOKEN)
    try:
        got = predict(server, bundles["forest"], recorded.frame.head(4))
        rid = got["request_id"]
        assert got["ids"] == [f"{rid}:{i}" for i in range(4)]

        labels = [{"id": got["ids"][0], "label": "Adelie"}, {"request_id": rid, "row": 1, "label": "Gentoo"},
                  {"id": f"{rid}:9", "label": "Adelie"}, {"id": "never-served:0", "label": "Adelie"}]  # fmt: skip
        assert httpx.post(f"{server.url}/feedback", json={"labels": labels}).status_code == 401
        # Posted at once: the rows are still in the server's write-ahead file, not yet in a segment.
        answer = httpx.post(f"{server.url}/feedback", json={"labels": labels}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["stored"] == 4 and body["unknown"] == 2
        assert sorted(body["unknown_ids"]) == sorted([f"{rid}:9", "never-served:0"])

        corrected = httpx.post(
            f"{server.url}/feedback", json={"id": got["ids"][0], "label": "Chinstrap"}, headers=AUTH
        )
        assert corrected.json() == {**corrected.json(), "stored": 1, "unknown": 0}
    finally:
        server.stop()

    name = recorded.models["forest"].split("@")[0]
    latest = read_feedback(store, name, 1).set_index(["request_id", "row"])["label"]
    assert latest[(rid, 0)] == "Chinstrap" and latest[(rid, 1)] == "Gentoo"
    history = read_feedback(store, name, 1, history=True)
    assert sorted(history[history["request_id"] == rid]["label"].tolist()) == [
        "Adelie",
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]

    # A new server process knows the old one's rows from the stored segments.
    again = start_server(bundles["forest"], store, token=TOKEN)
    try:
        answer = httpx.post(f"{again.url}/feedback", json={"id": f"{rid}:3", "label": "Adelie"}, headers=AUTH)
        assert answer.json()["unknown"] == 0
    finally:
        again.stop()


def test_bad_feedback_gets_a_one_line_error(bundles, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "store"))
    try:
        url = f"{server.url}/feedback"
        json_type = {"content-type": "application/json"}
        cases = {
            b"{not json": "not valid JSON",
            b'{"id": "abc:0"}': "no 'label' field",
            b'{"id": "abc", "label": 1}': "not a row id",
            b'{"label": 1}': "names no row",
            b'{"labels": [{"request_id": "a", "row": -1, "label": 1}]}': "row number >= 0",
            b'{"labels": []}': "empty",
            b'"just a string"': "send {",
        }
        for body, expected in cases.items():
            answer = httpx.post(url, content=body, headers=json_type)
            assert answer.status_code == 400, (body, answer.text)
            message = answer.json()["error"]
            assert expected in message and "\n" not in message, (body, message)
        answer = httpx.post(url, content=b'{"id": "a:0", "label": 1}', headers={"content-type": "text/plain"})
        assert answer.status_code == 415
        sent = 0

        def chunks():  # no Content-Length: refused as it arrives, like /predict
            nonlocal sent
            for _ in range(200):
                sent += MB
                yield b" " * MB

        big = httpx.post(url, content=chunks(), headers=json_type, timeout=60)
        assert sent < 200 * MB
        assert big.status_code == 413 and "limit" in big.json()["error"]
        assert httpx.get(f"{server.url}/health").status_code == 200

        # The store cannot take the segment (a file where its folder belongs): 503, nothing acknowledged.
        (tmp_path / "store" / "feedback").write_text("in the way")
        answer = httpx.post(url, json={"id": "abc:0", "label": "Adelie"})
        assert answer.status_code == 503 and "could not be stored" in answer.json()["error"], answer.text
    finally:
        server.stop()
