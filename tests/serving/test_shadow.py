"""A production server mirroring to a shadow challenger: real servers over HTTP, both prediction logs
read back, the agreement report checked against the answers themselves. A dead or hung challenger:
tests/faults/test_shadow_challenger.py."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provenflow.monitoring.shadow import shadow_agreement
from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import bundles, recorded, records_of, start_server  # noqa: F401 (fixtures)
from tests.serving.test_app import feature_names


def shadow_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "provenflow_shadow_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["outcome"]] = sample.value
        if family.name == "provenflow_shadow_queued_requests":
            out["queued"] = family.samples[0].value
    return out


def wait_counts(url: str, check, timeout: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        counts = shadow_counts(url)
        if check(counts):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"the shadow counts never got there: {counts}")
        time.sleep(0.2)


def mixed_rows(frame, columns, n: int, seed: int) -> list[dict]:
    """Rows whose columns are drawn independently: off the training distribution, where two
    different models disagree often enough for the agreement to be a real number."""
    rng = np.random.default_rng(seed)
    shuffled = frame[columns].copy()
    for column in columns:
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
    return records_of(shuffled.head(n), columns)


@pytest.fixture
def pair(bundles, recorded, tmp_path):  # noqa: F811
    """A challenger (logistic) and a production server (forest) that mirrors to it, both logging into
    the workspace's store."""
    challenger = start_server(bundles["logistic"], recorded.store_url, extra=("--flush-seconds", "1"))
    production = start_server(
        bundles["forest"], recorded.store_url, extra=("--flush-seconds", "1"),
        env={"PROVENFLOW_SHADOW_URL": challenger.url},
    )  # fmt: skip
    yield production, challenger
    for server in (production, challenger):
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)
            server.stop()


def test_both_servers_log_the_same_request_ids_and_the_report_matches_the_answers(pair, bundles, recorded):  # noqa: F811
    production, challenger = pair
    since = datetime.now(UTC)
    columns = feature_names(bundles["forest"])
    rows = mixed_rows(recorded.frame, columns, 60, seed=3)
    answers = {}
    with httpx.Client(timeout=30) as client:
        for i in range(0, 60, 3):  # 20 requests of 3 rows; every other one names its own request id
            headers = {"x-request-id": f"client-{i}"} if i % 2 == 0 else {}
            answer = client.post(
                f"{production.url}/predict", json={"records": rows[i : i + 3]}, headers=headers
            )
            assert answer.status_code == 200
            answers[answer.json()["request_id"]] = answer.json()
        wait_counts(production.url, lambda c: c.get("mirrored") == 20)
        # What the challenger says about the same rows, asked directly (ids it logs but production never did).
        direct = {
            rid: client.post(f"{challenger.url}/predict", json={"records": rows[i : i + 3]},
                             headers={"x-request-id": f"direct-{n}"}).json()
            for n, (rid, i) in enumerate(zip(answers, range(0, 60, 3), strict=True))
        }  # fmt: skip
    production.stop()
    challenger.stop()

    prod_log, _ = read_predictions(recorded.store_url, "penguins-forest", 1, since=since)
    chal_log, _ = read_predictions(recorded.store_url, "penguins-logistic", 1, since=since)
    assert set(prod_log["request_id"]) == set(answers)
    assert set(chal_log["request_id"]) == set(answers) | {f"direct-{n}" for n in range(20)}
    assert {f"client-{i}" for i in range(0, 60, 6)} <= set(chal_log["request_id"])

    # The hand check: from the HTTP answers, not from the logs.
    same, deltas = [], []
    for rid, mine in answers.items():
        theirs = direct[rid]
        assert mine["classes"] == theirs["classes"]
        same += [a == b for a, b in zip(mine["predictions"], theirs["predictions"], strict=True)]
        deltas += np.abs(np.array(mine["probabilities"]) - np.array(theirs["probabilities"])).ravel().tolist()
    expected = sum(same) / len(same)
    assert 0.0 < expected < 1.0, "the rows should make the two models disagree sometimes"

    report = shadow_agreement(recorded.workspace, "penguins-forest@1", "penguins-logistic@1", since=since)
    assert report["production"] == "penguins-forest@1" and report["challenger"] == "penguins-logistic@1"
    assert report["production_rows"] == 60 and report["matched"] == 60 and report["coverage"] == 1.0
    assert report["challenger_rows"] == 120  # the direct rows are in its log, paired with nothing
    assert report["agreement"] == pytest.approx(expected)
    assert report["mean_abs_proba_difference"] == pytest.approx(np.mean(deltas), abs=1e-6)
    assert sum(w["matched"] for w in report["windows"]) == 60


def test_the_callers_token_goes_with_the_copy(bundles, recorded, tmp_path):  # noqa: F811
    challenger = start_server(bundles["logistic"], str(tmp_path / "challenger"), token="same-token")
    production = start_server(
        bundles["forest"], str(tmp_path / "production"), token="same-token",
        env={"PROVENFLOW_SHADOW_URL": challenger.url},
    )  # fmt: skip
    try:
        rows = records_of(recorded.frame.head(2), feature_names(bundles["forest"]))
        auth = {"authorization": "Bearer same-token"}
        assert (
            httpx.post(f"{production.url}/predict", json={"records": rows}, headers=auth).status_code == 200
        )
        assert (
            httpx.post(f"{production.url}/predict", json={"records": rows}).status_code == 401
        )  # not mirrored
        assert wait_counts(production.url, lambda c: c["mirrored"] == 1)["rejected"] == 0
    finally:
        production.stop()
        challenger.stop()
