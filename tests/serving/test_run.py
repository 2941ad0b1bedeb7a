"""``--workers N``: several server processes on one port, each with its own prediction-log files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import orjson

from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import bundles, recorded, records_of, start_server  # noqa: F401 (fixtures)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _post_each_on_a_new_connection(url: str, rows: list[dict], prefix: str, count: int) -> set[str]:
    answered = set()
    for i in range(count):
        request_id = f"{prefix}-{i}"
        # A new connection each time, so the kernel hands them to both workers.
        answer = httpx.post(
            f"{url}/predict", content=orjson.dumps(rows[i % len(rows) : i % len(rows) + 1]),
            headers={"content-type": "application/json", "x-request-id": request_id}, timeout=10,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        answered.add(request_id)
    return answered


def test_workers_share_the_port_log_separately_and_a_killed_worker_is_replaced(bundles, recorded, tmp_path):  # noqa: F811
    import json

    names = [
        i["name"]
        for i in json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    ]
    rows = records_of(recorded.frame, names)
    store = str(tmp_path / "store")
    server = start_server(bundles["forest"], store, extra=("--workers", "2"))
    try:
        workers = _children(server.process.pid)
        assert len(workers) == 2, workers
        answered = _post_each_on_a_new_connection(server.url, rows, "before", 120)
        os.kill(workers[0], signal.SIGKILL)  # its answered rows are only in its write-ahead file now
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            len(now := _children(server.process.pid)) != 2 or workers[0] in now
        ):
            time.sleep(0.2)
        assert len(now) == 2 and workers[0] not in now, now
        time.sleep(3)  # the replacement loads the model; meanwhile the other worker answers alone
        answered |= _post_each_on_a_new_connection(server.url, rows, "after", 120)
    finally:
        err = server.stop()
    assert server.process.returncode == 0, err
    assert "starting another" in err
    frame, skipped = read_predictions(store, "penguins-forest", 1)
    assert not skipped
    logged = set(frame["request_id"])
    assert answered <= logged, f"{len(answered - logged)} answered predictions not logged"
    # One prediction log per process: segments named after more than one process's files.
    ids = {p.name.rsplit("_", 1)[-1].split("-")[0] for p in Path(store).rglob("*.parquet")}
    assert len(ids) >= 2, ids


def test_a_label_for_a_row_another_worker_answered_moments_ago_is_known(bundles, recorded, tmp_path):  # noqa: F811
    """Labels reach whichever worker the kernel picks. A row the other worker answered is only in
    its write-ahead file until its next segment (flushes are an hour apart here): it was reported
    unknown; now the worker reads its siblings' write-ahead files on a miss."""
    import json

    names = [
        i["name"]
        for i in json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    ]
    rows = records_of(recorded.frame, names)
    store = str(tmp_path / "store")
    server = start_server(bundles["forest"], store, extra=("--workers", "2", "--flush-seconds", "3600"))
    try:
        answered = sorted(_post_each_on_a_new_connection(server.url, rows, "sib", 40))
        for request_id in answered:  # one label a connection, so both workers take some
            answer = httpx.post(f"{server.url}/feedback", json={"id": f"{request_id}:0", "label": "Adelie"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["unknown"] == 0, (request_id, answer.json())
        stranger = httpx.post(f"{server.url}/feedback", json={"id": "nobody:0", "label": "Adelie"}).json()
        assert stranger["unknown"] == 1 and stranger["unknown_ids"] == ["nobody:0"]
        late = httpx.post(f"{server.url}/feedback", json={"id": f"{answered[0]}:1", "label": "Adelie"}).json()
        assert late["unknown"] == 1  # a row past the request's one row
    finally:
        err = server.stop()
    assert server.process.returncode == 0, err


def test_workers_with_a_tampered_bundle_exit_1_with_one_error_line(bundles, tmp_path):  # noqa: F811
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["forest"], bundle)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    server = start_server(bundle, str(tmp_path / "log"), extra=("--workers", "3"), wait=False)
    assert server.process.wait(timeout=60) == 1
    err = server.stop()
    assert err.count("Error:") == 1 and "model.onnx" in err and "altered" in err, err
