"""Hostile requests against the real server process: huge chunked bodies, huge batches, wrong content types.

Memory is read from /proc/PID/status (VmRSS) of the server process; /health latency is measured
over a second connection while the big request is being read, parsed, predicted and logged.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import orjson

from provenflow.serving.app import DEFAULT_MAX_BODY_BYTES
from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import records_of, start_server

MB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """Samples a process's RSS every 10 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def feature_names(bundle) -> list[str]:
    return [i["name"] for i in json.loads((bundle / "metadata.json").read_text())["signature"]["inputs"]]


def test_text_plain_is_refused_with_415(forest_server, bundles, recorded):
    # A browser page can POST text/plain to any origin without a CORS preflight.
    body = orjson.dumps(records_of(recorded.frame.head(2), feature_names(bundles["forest"])))
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"content-type": kind} if kind else {}
        answer = httpx.post(f"{forest_server.url}/predict", content=body, headers=headers)
        assert answer.status_code == 415, (kind, answer.text)
        assert "application/json" in answer.json()["error"]
    for kind in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        answer = httpx.post(f"{forest_server.url}/predict", content=body, headers={"content-type": kind})
        assert answer.status_code == 200, (kind, answer.text)


def test_chunked_body_over_the_limit_is_refused_as_it_arrives(bundles, tmp_path):
    server = start_server(bundles["forest"], str(tmp_path / "store"))
    try:
        sent = 0
        piece = b" " * MB

        def body():  # no Content-Length: httpx sends it chunked
            nonlocal sent
            for _ in range(300):
                sent += len(piece)
                yield piece

        before = rss(server.process.pid)
        with PeakRss(server.process.pid) as peak:
            answer = httpx.post(
                f"{server.url}/predict",
                content=body(),
                headers={"content-type": "application/json"},
                timeout=60,
            )
        assert answer.status_code == 413 and "limit" in answer.json()["error"]
        # The server stopped reading at the limit: the client could not send the whole 300 MB.
        assert sent < 300 * MB
        grown = peak.peak - before
        assert grown <= 2 * DEFAULT_MAX_BODY_BYTES, f"server RSS grew by {grown / MB:.0f} MB"
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()


def test_health_answers_while_a_60_mb_request_is_processed(bundles, recorded, tmp_path):
    names = feature_names(bundles["forest"])
    rows = records_of(recorded.frame, names)
    # 100,000 rows (the default limit), padded with insignificant whitespace to 60 MB.
    n = 100_000
    compact = orjson.dumps({"records": [rows[i % len(rows)] for i in range(n)]})
    pad = (60 * MB - len(compact)) // n
    body = compact.replace(b"},{", b"}," + b" " * pad + b"{")
    assert 59 * MB < len(body) <= DEFAULT_MAX_BODY_BYTES
    server = start_server(bundles["forest"], str(tmp_path / "store"))
    try:
        httpx.get(f"{server.url}/health")  # warm
        latencies: list[float] = []
        slow: list[tuple[int, int]] = []  # (ms taken, ms into the request)
        done = threading.Event()
        result: dict = {}

        def big() -> None:
            try:
                result["answer"] = httpx.post(
                    f"{server.url}/predict", content=body, headers={"content-type": "application/json",
                                                                    "x-request-id": "big"}, timeout=120,
                )  # fmt: skip
            finally:
                done.set()

        before = rss(server.process.pid)
        with PeakRss(server.process.pid) as peak, httpx.Client(base_url=server.url, timeout=30) as probe:
            sender = threading.Thread(target=big)
            sender.start()
            began = time.perf_counter()
            while not done.is_set():
                start = time.perf_counter()
                assert probe.get("/health").status_code == 200
                latencies.append(time.perf_counter() - start)
                slow.append((round(latencies[-1] * 1e3), round((start - began) * 1e3)))
                time.sleep(0.01)
            sender.join()
        answer = result["answer"]
        assert answer.status_code == 200, answer.text[:500]
        assert len(answer.json()["predictions"]) == n
        worst = max(latencies)
        print(f"/health during a {len(body) / MB:.0f} MB request: {len(latencies)} probes, "
              f"max {worst * 1e3:.1f} ms (slowest: {sorted(slow)[-3:]}), peak RSS growth {(peak.peak - before) / MB:.0f} MB")  # fmt: skip
        assert len(latencies) >= 10
        # A parse that held the event loop would stall /health for the whole request (seconds); what
        # is left is the GIL shared with the parsing thread. 100 ms is the target, met on a quiet
        # machine (bench/serving_tail.py); CI's 2 busy cores have shown 167 ms, hence the slack.
        assert worst < 0.300, f"/health took {worst * 1e3:.0f} ms"
        assert sorted(latencies)[len(latencies) // 2] < 0.050, "the median /health was slow"
        assert peak.peak - before <= 2 * DEFAULT_MAX_BODY_BYTES
    finally:
        server.stop()
    frame, _ = read_predictions(str(tmp_path / "store"), "penguins-forest", 1)
    assert (frame["request_id"] == "big").sum() == n
