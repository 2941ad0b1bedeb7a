"""The Evidently HTML report: bounded, from the profile or a real sample, and light to import around."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from provenflow.data.datasets import profile_of
from provenflow.errors import DataError
from provenflow.monitoring.drift_report import evidently_report, sample_from_profile
from tests.drift.synthetic import FEATURES_NUMERIC, frame


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return frame(np.random.default_rng(21), 5000)


def test_the_report_is_written_from_the_profile_and_names_every_feature(training, tmp_path):
    current = frame(np.random.default_rng(22), 30_000, shift=0.5).assign(prediction="male")
    path = evidently_report(
        None, profile_of(training), current, tmp_path / "reports" / "drift.html", max_rows=2000
    )
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "reports" / "drift.html"
    for name in training.columns:
        assert name in page
    assert "synthetic rows drawn from the stored training profile" in page
    assert "2,000 of 30,000 rows" in page  # bounded
    assert [p.name for p in path.parent.iterdir()] == ["drift.html"]  # no temporary file left


def test_a_real_reference_sample_is_used_when_given(training, tmp_path):
    current = frame(np.random.default_rng(23), 1000)
    path = evidently_report(training, profile_of(training), current, tmp_path / "r.html", max_rows=500)
    assert "500 rows sampled from the training data" in path.read_text(encoding="utf-8")


def test_the_report_refuses_features_it_cannot_compare(training, tmp_path):
    with pytest.raises(DataError, match="'beak' is not in the reference profile"):
        evidently_report(None, profile_of(training), training, tmp_path / "r.html", features=["beak"])
    with pytest.raises(DataError, match="no rows"):
        evidently_report(None, profile_of(training), training.iloc[:0], tmp_path / "r.html")


def test_the_synthetic_reference_follows_the_profile(training):
    profile = profile_of(training)
    sample = sample_from_profile(profile, 20_000, [*FEATURES_NUMERIC, "island"], seed=1)
    for name in FEATURES_NUMERIC:
        stored = profile["columns"][name]["quantiles"]
        assert np.quantile(sample[name], 0.5) == pytest.approx(stored["0.5"], rel=0.02)
        assert np.quantile(sample[name], 0.9) == pytest.approx(stored["0.9"], rel=0.02)
    shares = sample["island"].value_counts(normalize=True)
    assert shares["Biscoe"] == pytest.approx(0.5, abs=0.02)


def test_importing_the_drift_code_loads_neither_evidently_nor_prefect_nor_scipy_stats():
    code = "import sys, provenflow.monitoring.drift, provenflow.monitoring.drift_report; print(' '.join(sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not {"evidently", "prefect", "scipy.stats", "sklearn"} & loaded


@pytest.mark.parametrize(
    ("case", "shift", "dream"),
    [("shifted numerical", 0.6, None), ("shifted categorical", 0.0, 0.7), ("unshifted", 0.0, None)],
)
def test_the_report_and_the_verdict_agree_column_by_column(training, case, shift, dream):
    """Before: Evidently chose its own tests on the sample (Wasserstein, Jensen–Shannon, chi-square)
    and disagreed with provenflow's verdict on some columns; a banner said which to trust."""
    from provenflow.monitoring.drift import check_drift
    from provenflow.monitoring.drift_report import drifted_in_snapshot, evidently_snapshot

    profile = profile_of(training)
    features = ["bill_length", "body_mass", "flipper_count", "island"]
    current = frame(np.random.default_rng(31), 4000, shift=shift, dream=dream)
    current = current.assign(prediction=current.pop("sex"))
    verdict = check_drift(profile, current, None, features, prediction_profile=profile["columns"]["sex"])
    snapshot, _ = evidently_snapshot(
        None, profile, current, 2000, features, prediction_profile=profile["columns"]["sex"]
    )
    expected = {name: f.drift for name, f in verdict.features.items()} | {
        "prediction": verdict.prediction.drift
    }
    assert drifted_in_snapshot(snapshot) == expected, case
    if case == "shifted numerical":
        assert expected["bill_length"] and not expected["island"]
    if case == "shifted categorical":
        assert expected["island"] and not expected["bill_length"]
    if case == "unshifted":
        assert not any(expected.values())


def test_the_report_names_provenflows_tests_and_has_no_which_to_trust_banner(training, tmp_path):
    current = frame(np.random.default_rng(32), 3000, shift=0.6)
    page = evidently_report(
        None, profile_of(training), current, tmp_path / "r.html", max_rows=1000
    ).read_text()
    assert "provenflow psi on all 3,000 rows" in page or "provenflow wasserstein on all 3,000 rows" in page
    assert "this report is for looking" not in page


@pytest.mark.parametrize("shifted", [False, True], ids=["calm", "heavier"])
def test_the_report_agrees_with_the_verdict_on_the_demos_traffic(shifted):
    """The demo's two traffics (600 rows like training; 600 with body_mass_g + 900). Before, Evidently's
    defaults marked bill_depth_mm and island drifted on the calm one, and island, flipper_length_mm and
    year besides body_mass_g on the heavier one."""
    from provenflow.data.datasets import read_table
    from provenflow.demo.run import DATA
    from provenflow.monitoring.drift import check_drift
    from provenflow.monitoring.drift_report import drifted_in_snapshot, evidently_snapshot

    training = read_table(str(DATA))
    profile = profile_of(training)
    features = [c for c in training.columns if c != "sex"]
    traffic = training[features].sample(n=600, replace=True, random_state=2 if shifted else 1)
    if shifted:
        traffic["body_mass_g"] += 900
    verdict = check_drift(profile, traffic, None, features)
    snapshot, _ = evidently_snapshot(None, profile, traffic, features=features)
    assert drifted_in_snapshot(snapshot) == {name: f.drift for name, f in verdict.features.items()}
    assert verdict.drifted_features == (["body_mass_g"] if shifted else [])


def test_a_model_whose_only_input_is_a_date_gets_a_report_of_its_prediction(training, tmp_path):
    """Dates are not compared (they move on by nature): a model of an hourly timestamp alone has no
    feature to compare, only its prediction. Before: 'no profiled feature is in the current data',
    and the drift check failed."""
    profile = profile_of(training)
    current = frame(np.random.default_rng(41), 800).assign(prediction=lambda f: f["sex"])
    path = evidently_report(None, profile, current[["prediction"]], tmp_path / "r.html", features=[],
                            prediction_profile=profile["columns"]["sex"])  # fmt: skip
    assert "prediction" in path.read_text(encoding="utf-8")
