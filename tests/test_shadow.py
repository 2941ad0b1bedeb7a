"""The agreement report over two prediction-log frames, and the promotion gate built on it."""

from __future__ import annotations

import pandas as pd
import pytest

from provenflow.modeling.registry import GateResult, PromotionError, agreement_gate
from provenflow.monitoring.shadow import compare_predictions


def test_compare_predictions_pairs_rows_and_leaves_out_reused_ids():
    t0 = pd.Timestamp("2026-11-29T10:00:00Z")
    production = pd.DataFrame({
        "request_id": ["a", "a", "b", "c", "c", "d"], "row": [0, 1, 0, 0, 0, 0],
        "time": [t0, t0, t0 + pd.Timedelta(minutes=70), t0, t0, t0],
        "prediction": ["x", "y", "x", "x", "x", "y"], "proba_x": [0.9, 0.2, 0.6, 0.5, 0.5, 0.1],
        "proba_y": [0.1, 0.8, 0.4, 0.5, 0.5, 0.9],
    })  # fmt: skip
    challenger = pd.DataFrame({
        "request_id": ["a", "a", "b", "c"], "row": [0, 1, 0, 0], "time": [t0] * 4,
        "prediction": ["x", "x", "y", "x"], "proba_x": [0.7, 0.6, 0.4, 0.5], "proba_y": [0.3, 0.4, 0.6, 0.5],
    })  # fmt: skip
    report = compare_predictions(production, challenger)
    # c/0 twice in production: ambiguous; d never reached the challenger.
    assert report["ambiguous_rows"] == 2 and report["matched"] == 3 and report["coverage"] == 0.5
    assert report["agreement"] == pytest.approx(1 / 3)
    assert report["mean_abs_proba_difference"] == pytest.approx((0.2 + 0.4 + 0.2) / 3)
    assert [(w["start"], w["matched"], w["agreement"]) for w in report["windows"]] == [
        ("2026-11-29T10:00:00+00:00", 2, 0.5),
        ("2026-11-29T11:00:00+00:00", 1, 0.0),
    ]


def test_regressors_get_the_mean_absolute_difference_and_no_rows_no_agreement():
    t0 = pd.Timestamp("2026-11-29T10:00:00Z")
    production = pd.DataFrame(
        {"request_id": ["a", "b"], "row": [0, 0], "time": [t0, t0], "prediction": [1.0, 2.0]}
    )
    challenger = pd.DataFrame(
        {"request_id": ["a", "b"], "row": [0, 0], "time": [t0, t0], "prediction": [1.0, 2.5]}
    )
    report = compare_predictions(production, challenger)
    assert report["agreement"] == 0.5 and report["mean_abs_difference"] == 0.25
    empty = compare_predictions(production, challenger.iloc[:0])
    assert empty["matched"] == 0 and empty["agreement"] is None and empty["coverage"] == 0.0


def test_the_agreement_gate_adds_a_row_and_refuses_what_it_cannot_judge():
    accuracy = {
        "metric": "accuracy",
        "candidate": 0.9,
        "holder": 0.9,
        "change": 0.0,
        "tolerance": 0.01,
        "ok": True,
    }
    gate = GateResult(True, "m@1", "d@x", [accuracy])
    report = {"production": "m@1", "challenger": "m@2", "matched": 40, "agreement": 0.85}
    failed = agreement_gate(gate, report, 0.9)
    assert (
        not failed.passed
        and failed.rows[-1]["metric"] == "shadow_agreement"
        and failed.rows[-1]["rows"] == 40
    )
    assert agreement_gate(gate, report, 0.85).passed
    assert "shadow_agreement | 0.8500 | 1.0000 | -0.1500" in failed.markdown()  # what the approval form shows
    with pytest.raises(PromotionError, match="no rows answered by both m@1 and its shadow m@2"):
        agreement_gate(gate, {**report, "matched": 0}, 0.9)
    with pytest.raises(PromotionError, match="no model holds this alias"):
        agreement_gate(GateResult(True, None, None), report, 0.9)
    with pytest.raises(PromotionError, match="not a fraction"):
        agreement_gate(gate, report, 90)
