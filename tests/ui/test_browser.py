"""What a user sees in the Prefect UI, checked in a real (headless) Chromium: the leaderboard with
hyper-parameters, the model card's linked lineage, the approval form with its metric diff and its
required choice, the drift artifact's pictures and its one-click link to the Evidently report.
Screenshots land in tests/.screenshots/ (git-ignored)."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from datetime import UTC, datetime

import pytest

from provenflow.data.datasets import read_table
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS
from tests.services import free_port
from tests.test_drift_flow import deployed, send  # noqa: F401 - the fixture, used by name below
from tests.ui.browser import Browser
from tests.ui.test_artifacts import latest_artifact

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


@pytest.fixture
def reports(monkeypatch):
    """The read-only report server on a free port, where report links point."""
    from provenflow.monitoring.reports import make_server
    from provenflow.settings import get_settings

    port = free_port()
    monkeypatch.setenv("PROVENFLOW_REPORTS_PORT", str(port))
    get_settings.cache_clear()
    server = make_server(Workspace.default(), "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    get_settings.cache_clear()


def _flow_run_state(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def _paused_promotion(result: dict) -> tuple[threading.Thread, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    from provenflow.flows.promote import promote

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(lambda: result.update(
        promote(model="penguins-sex@2", to="production", approval_poll_seconds=1, approval_timeout=600)),))  # fmt: skip
    worker.start()
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=10):
                if run.name.startswith("promote-") and run.state and run.state.is_paused():
                    return worker, str(run.id)
            time.sleep(0.5)
    raise AssertionError("the promotion never paused for approval")


def test_what_the_prefect_ui_shows(deployed, reports, browser, prefect_api):  # noqa: F811
    from prefect.flow_runs import resume_flow_run

    from provenflow.flows.drift_monitor import drift_monitor
    from provenflow.flows.model_run import model_run

    ui = prefect_api.removesuffix("/api")
    challenger = model_run(dataset="penguins@latest", target="sex", estimator="sklearn.ensemble.RandomForestClassifier",
                           params={"n_estimators": 40, "class_weight": {"male": 1, "female": 2}}, seed=3)  # fmt: skip
    features = read_table(str(PENGUINS)).drop(columns=["sex"])
    start = datetime.now(UTC)
    shifted = features.sample(n=700, replace=True, random_state=5)
    shifted["flipper_length_mm"] += 25
    send(deployed, shifted)
    time.sleep(2.5)  # the local deployment flushes its prediction log every second
    drift = drift_monitor(model="penguins-sex@production", since=start)
    assert drift["drift"], drift["verdict"]

    # The leaderboard: both runs, their hyper-parameters (dict ones flattened) and metrics.
    # The key's page lists its versions by flow run (their names tell the runs apart); the newest
    # version is the whole leaderboard.
    browser.open(f"{ui}/artifacts/key/leaderboard-penguins-sex")
    browser.wait_for_text("penguins-sex · RandomForest class_weight={male=1,female=2} n_estimators=40")
    browser.screenshot("leaderboard-versions")
    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('leaderboard-penguins-sex').id}")
    text = browser.wait_for_text(
        "parameters", "class_weight.male=1", "max_iter=500", "accuracy", "RandomForest"
    )
    assert "LogisticRegression" in text and "n_estimators=40" in text
    browser.screenshot("leaderboard")

    # The model card: lineage with every run linked to its flow run in this UI.
    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('model-penguins-sex').id}")
    browser.wait_for_text("Lineage", "Upstream (what it came from)", "Last drift check")
    hrefs = {link["href"] for link in browser.links()}
    assert challenger["prefect_url"] in hrefs or any(challenger["run_id"] in h for h in hrefs)
    assert any(f"/flow-runs/flow-run/{drift['run_id']}" in h for h in hrefs)  # the drift check, downstream
    assert any(h.startswith(f"{reports}/reports/") for h in hrefs)
    browser.screenshot("model-card")

    # The drift artifact: a histogram per feature and the report one click away.
    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('drift-report-penguins-sex').id}")
    browser.wait_for_text("Open the Evidently drift report", "Reference (training) vs. current window")
    images = browser.evaluate(
        "[...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/svg')).length"
    )
    assert images == len(features.columns)
    report = next(
        link["href"] for link in browser.links() if link["text"].strip() == "Open the Evidently drift report"
    )
    assert (
        report.startswith(f"{reports}/reports/")
        and report.endswith(".html")
        and report == drift["report_url"]
    )
    browser.screenshot("drift-artifact")
    browser.open(report)
    browser.wait_for_text("Data drift", timeout=60)
    browser.screenshot("drift-report")

    # The approval form: the metric diff, and a decision and a name to give (no default).
    result: dict = {}
    worker, paused = _paused_promotion(result)
    try:
        browser.open(f"{ui}/runs/flow-run/{paused}")
        browser.wait_for_text("Resume")
        browser.click("Resume")
        text = browser.wait_for_text("Promote", "tolerance", "Decision", "Approver")
        assert "penguins-sex@1" in text and "accuracy" in text
        browser.screenshot("approval-form")
        browser.click("Submit")
        time.sleep(2)
        browser.screenshot("approval-form-submitted-empty")
        assert browser.evaluate("document.body.innerText").count(
            "Approver"
        )  # still the form: nothing decided
        # Decided in the form, as a reviewer does it.
        browser.choose("reject")
        browser.type_into("Grace Hopper", "browser test")
        browser.screenshot("approval-form-filled")
        browser.click("Submit")
        worker.join(timeout=120)
    finally:
        if worker.is_alive():  # the form failed: end the run so the test does not hang
            with contextlib.suppress(Exception):
                resume_flow_run(
                    paused, run_input={"decision": "reject", "approver": "-", "comment": "cleanup"}
                )
            worker.join(timeout=120)
    assert result["decision"] == "rejected" and result["by"] == "Grace Hopper", result
    assert _flow_run_state(paused).name == "Rejected"


def _run_card_id(flow_run_id: str) -> str:
    from tests.test_flows import _prefect_artifacts

    return str(next(a.id for a in _prefect_artifacts(flow_run_id) if a.type == "markdown" and a.key is None))


def _wait_on_screen(browser, *texts: str, timeout: float = 60) -> dict:
    """Each TEXT's element once the page shows them all; the positions of those found."""
    deadline = time.monotonic() + timeout
    found: dict = {}
    while time.monotonic() < deadline:
        found = {t: browser.on_screen(t) for t in texts}
        if all(found.values()):
            return found
        time.sleep(0.5)
    return found


def test_the_tables_and_the_lineage_picture_fit_a_1600_px_screen(deployed, reports, browser, prefect_api):  # noqa: F811
    """At 1600×1000 the leaderboard's parameters and metric columns, the model card's best versions with
    their metric and its lineage picture, the drift artifact's per-column verdicts, the drift history and
    the run card's lineage picture all show without scrolling. Before, the leaderboard showed rank, run
    and metrics, then ran off-screen; the model card's best runs lost their metric; lineage had no picture."""
    from provenflow.flows.drift_monitor import drift_monitor
    from provenflow.flows.model_run import model_run

    ui = prefect_api.removesuffix("/api")
    rf = "sklearn.ensemble.RandomForestClassifier"
    runs = [model_run(dataset="penguins@latest", target="sex", estimator=rf, params=params, seed=3)
            for params in ({"n_estimators": 40, "max_depth": 3}, {"n_estimators": 120, "min_samples_leaf": 2})]  # fmt: skip
    features = read_table(str(PENGUINS)).drop(columns=["sex"])
    for shift in (0, 900):
        start = datetime.now(UTC)
        traffic = features.sample(n=600, replace=True, random_state=7 + shift)
        traffic["body_mass_g"] += shift
        send(deployed, traffic)
        time.sleep(2.5)  # the local deployment flushes its prediction log every second
        drift = drift_monitor(model="penguins-sex@production", since=start)
    assert drift["drift"], drift["verdict"]
    width = browser.evaluate("window.innerWidth")
    problems = []

    def check(page: str, where: dict) -> None:
        for text, place in where.items():
            if not place or not place["inside"]:
                problems.append(f"{page}: {text!r} is {'missing' if not place else 'off-screen'} {place}")

    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('leaderboard-penguins-sex').id}")
    browser.wait_for_text("parameters", "RandomForest", "LogisticRegression")
    check(
        "leaderboard",
        _wait_on_screen(browser, "parameters", "accuracy", "f1", "roc_auc", "sample", "version"),
    )
    text = browser.text()
    assert "n_estimators=120" in text and "min_samples_leaf=2" in text and "all" in text
    browser.screenshot("fit-leaderboard")

    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('model-penguins-sex').id}")
    browser.wait_for_text("Best versions", "parameters")
    check("model card", _wait_on_screen(browser, "accuracy", "parameters"))
    picture = browser.image_on_screen("lineage graph")
    assert picture and picture["drawn"], picture
    check("model card", {"lineage picture": picture})
    browser.screenshot("fit-model-card")

    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('drift-report-penguins-sex').id}")
    browser.wait_for_text("Open the Evidently drift report", "body_mass_g")
    check(
        "drift artifact", _wait_on_screen(browser, "column", "score", "threshold", "verdict", "(prediction)")
    )
    browser.screenshot("fit-drift-artifact")
    browser.open(f"{ui}/artifacts/artifact/{latest_artifact('drift-penguins-sex').id}")
    browser.wait_for_text("verdict", "drifted", "checked")
    check("drift history", _wait_on_screen(browser, "checked", "verdict", "drifted", "body_mass_g"))
    browser.screenshot("fit-drift-history")
    browser.open(drift["report_url"])
    browser.wait_for_text("Data drift", "provenflow psi on all", timeout=60)
    browser.screenshot("fit-evidently-report")

    browser.open(f"{ui}/artifacts/artifact/{_run_card_id(runs[1]['run_id'])}")
    browser.wait_for_text("provenflow model run", "Lineage")
    picture = browser.image_on_screen("lineage graph")
    assert picture and picture["drawn"], picture
    check("run card", {"lineage picture": picture})
    browser.screenshot("fit-run-card")
    assert width == 1600 and not problems, "\n".join(problems)
