"""check_drift on seeded synthetic windows: calibration, detection, not-enough-data, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from provenflow.data.datasets import profile_of
from provenflow.errors import DataError
from provenflow.monitoring.drift import DriftPolicy, check_drift
from tests.drift.synthetic import frame

FEATURES = ["bill_length", "body_mass", "flipper_count", "island", "sex"]
P_VALUE_POLICY = DriftPolicy(numeric_tests=("ks",), categorical_tests=("chi_square",), min_rows=100)


@pytest.fixture(scope="module")
def reference() -> dict:
    return profile_of(frame(np.random.default_rng(1), 20_000))


# -- calibration ---------------------------------------------------------------------------------------


def _false_drift_rates(policy: DriftPolicy, trials: int = 200, rows: int = 1000) -> dict[str, float]:
    rng = np.random.default_rng(2024)
    drifted = dict.fromkeys(FEATURES, 0)
    for _ in range(trials):
        result = check_drift(profile_of(frame(rng, rows)), frame(rng, rows), policy)
        for name in result.drifted_features:
            drifted[name] += 1
    return {name: count / trials for name, count in drifted.items()}


def test_same_distribution_p_value_tests_false_drift_rate_is_at_most_the_significance():
    """KS and chi-square deciding, 200 seeded trials of fresh reference and current samples: each
    feature's false-drift rate stays at or below 5% plus binomial slack (3 s.e. of 200 trials ≈ 4.6%).
    KS is evaluated at the reference edges only, so it is conservative (well below 5%)."""
    rates = _false_drift_rates(P_VALUE_POLICY)
    assert max(rates.values()) <= P_VALUE_POLICY.significance + 0.046, rates


def test_same_distribution_default_policy_almost_never_reports_drift():
    rates = _false_drift_rates(DriftPolicy(min_rows=100))
    assert max(rates.values()) <= 0.02, rates


# -- detection -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [DriftPolicy(), P_VALUE_POLICY], ids=["default", "p-values"])
def test_a_shift_in_one_numeric_feature_is_detected_on_that_feature_only(reference, policy):
    current = frame(np.random.default_rng(3), 20_000, shift=0.3)
    result = check_drift(reference, current, policy)
    assert result.drift and result.verdict == "drift"
    assert result.drifted_features == ["bill_length"]
    shifted = result.features["bill_length"]
    assert shifted.tests["wasserstein"].score == pytest.approx(0.3, abs=0.03)
    assert all(t.drift for t in shifted.tests.values() if t.test != "missing")


@pytest.mark.parametrize("policy", [DriftPolicy(), P_VALUE_POLICY], ids=["default", "p-values"])
def test_a_shift_in_one_category_frequency_is_detected_on_that_feature_only(reference, policy):
    current = frame(np.random.default_rng(4), 20_000, dream=0.55)  # Dream: 35% → 55%
    result = check_drift(reference, current, policy)
    assert result.drifted_features == ["island"]
    assert result.features["island"].tests["psi"].score > 0.1
    assert result.features["island"].tests["chi_square"].score < 1e-6


def test_no_shift_no_drift_and_every_test_is_reported(reference):
    result = check_drift(reference, frame(np.random.default_rng(5), 20_000))
    assert result.verdict == "no drift" and not result.drift and result.drifted_features == []
    assert set(result.features["bill_length"].tests) == {"missing", "psi", "ks", "wasserstein"}
    assert set(result.features["island"].tests) == {"missing", "psi", "chi_square"}
    headline = result.features["bill_length"]
    assert (headline.test, headline.threshold) == ("psi", 0.1)  # the first deciding test


def test_categories_unseen_at_training_count_as_drift_and_are_named(reference):
    current = frame(np.random.default_rng(6), 10_000)
    current.loc[:1999, "island"] = "Anvers"
    result = check_drift(reference, current)
    island = result.features["island"]
    assert island.drift and island.new_categories == {"Anvers": 2000}
    assert result.drifted_features == ["island"]


def test_a_few_unseen_values_in_a_long_tail_do_not_raise_drift():
    rng = np.random.default_rng(7)
    names = [f"city{i:03d}" for i in range(200)]  # more than the 50 categories a profile keeps
    reference = profile_of(pd.DataFrame({"city": rng.choice(names, 20_000)}))
    assert reference["columns"]["city"]["other"] > 0
    current = pd.DataFrame({"city": rng.choice([*names, "city999"], 10_000)})
    result = check_drift(reference, current)
    assert not result.drift
    assert "city999" in result.features["city"].new_categories


def test_a_jump_in_missing_values_is_drift(reference):
    current = frame(np.random.default_rng(8), 10_000)
    current.loc[:2999, "body_mass"] = np.nan
    result = check_drift(reference, current)
    assert result.drifted_features == ["body_mass"]
    assert result.features["body_mass"].test == "missing"
    assert result.features["body_mass"].score == pytest.approx(0.3)


# -- the prediction distribution -------------------------------------------------------------------


def test_prediction_drift_against_a_categorical_prediction_profile():
    rng = np.random.default_rng(9)
    training = frame(rng, 5000).assign(species=rng.choice(["Adelie", "Gentoo"], 5000, p=[0.6, 0.4]))
    profile = profile_of(training)
    current = frame(rng, 5000).assign(prediction=rng.choice(["Adelie", "Gentoo"], 5000, p=[0.3, 0.7]))
    result = check_drift(profile, current, features=FEATURES, prediction_profile=profile["columns"]["species"])
    assert result.prediction is not None and result.prediction.drift
    assert result.drifted_features == [] and result.verdict == "drift"
    assert not check_drift(
        profile,
        current,
        DriftPolicy(prediction_decides=False),
        FEATURES,
        prediction_profile=profile["columns"]["species"],
    ).drift


def test_prediction_drift_against_a_numeric_prediction_profile():
    rng = np.random.default_rng(10)
    profile = profile_of(pd.DataFrame({"x": rng.normal(size=5000), "y": rng.normal(10, 2, 5000)}))
    current = pd.DataFrame({"x": rng.normal(size=5000), "prediction": rng.normal(10, 2, 5000)})
    result = check_drift(profile, current, features=["x"], prediction_profile=profile["columns"]["y"])
    assert result.prediction.kind == "numeric" and not result.prediction.drift and not result.drift


# -- not enough data ------------------------------------------------------------------------------------


def test_an_empty_window_is_not_enough_data(reference):
    result = check_drift(reference, pd.DataFrame(), skipped_segments=["predictions/m/1/bad.parquet"])
    assert (result.verdict, result.drift, result.rows) == ("not enough data", False, 0)
    assert "empty" in result.reason and "1 prediction-log segment" in result.reason
    assert result.skipped_segments == ("predictions/m/1/bad.parquet",)
    assert result.to_dict()["skipped_segments"] == ["predictions/m/1/bad.parquet"]


def test_fewer_rows_than_the_minimum_is_not_enough_data(reference):
    current = frame(np.random.default_rng(11), 499, shift=3.0)
    result = check_drift(reference, current, DriftPolicy(min_rows=500))
    assert (result.verdict, result.drift, result.features) == ("not enough data", False, {})
    assert "499 rows" in result.reason and "500" in result.reason


def test_a_feature_with_too_few_values_is_judged_on_its_missing_share_only(reference):
    current = frame(np.random.default_rng(12), 1000)
    current.loc[100:, "bill_length"] = np.nan
    feature = check_drift(reference, current, DriftPolicy(min_rows=500)).features["bill_length"]
    assert set(feature.tests) == {"missing"} and "only 100 non-missing" in feature.reason
    assert feature.drift and feature.test == "missing"


# -- inputs and output --------------------------------------------------------------------------------


def test_prediction_log_columns_renamed_input_dot_name_are_found():
    rng = np.random.default_rng(13)
    profile = profile_of(pd.DataFrame({"time": rng.normal(size=2000)}))
    current = pd.DataFrame({"time": pd.Timestamp("2026-01-01"), "input.time": rng.normal(size=2000)})
    assert not check_drift(profile, current, features=["time"]).drift


def test_the_result_is_json_ready(reference):
    current = frame(np.random.default_rng(14), 5000, shift=1.0)
    data = json.loads(json.dumps(check_drift(reference, current).to_dict(), allow_nan=False))
    assert data["drift"] is True and data["drifted_features"] == ["bill_length"]
    assert set(data["features"]["bill_length"]) >= {"test", "score", "threshold", "drift", "tests"}
    assert data["features"]["bill_length"]["tests"]["ks"]["statistic"] > 0.1
    assert data["policy"]["min_rows"] == 500


def test_the_table_has_one_row_per_feature(reference):
    rows = check_drift(reference, frame(np.random.default_rng(15), 1000)).table()
    assert [r["feature"] for r in rows] == FEATURES and "wasserstein" in rows[0]


def test_a_constant_reference_column_compares_by_equality():
    profile = profile_of(pd.DataFrame({"k": np.full(1000, 3.0)}))
    assert not check_drift(profile, pd.DataFrame({"k": np.full(1000, 3.0)})).drift
    assert check_drift(profile, pd.DataFrame({"k": np.full(1000, 4.0)})).drift


def test_drift_share_needs_that_share_of_features(reference):
    current = frame(np.random.default_rng(16), 5000, shift=1.0)
    assert not check_drift(reference, current, DriftPolicy(drift_share=0.5)).drift
    assert check_drift(reference, current, DriftPolicy(drift_share=0.2)).drift


@pytest.mark.parametrize(
    ("features", "current", "message"),
    [
        (["bill_lenght"], None, "'bill_lenght' is not in the reference profile.* Did you mean 'bill_length'"),
        (
            ["island"],
            pd.DataFrame({"islnd": ["Dream"] * 600}),
            "'island' is not in the current data.*'islnd'",
        ),
        (None, pd.DataFrame({"unknown": [1.0] * 600}), "none of the profiled columns"),
        (["bill_length"], pd.DataFrame({"bill_length": ["long"] * 600}), "'bill_length' is numeric.*'long'"),
    ],
)
def test_errors_name_the_feature(reference, features, current, message):
    if current is None:
        current = frame(np.random.default_rng(17), 600)
    with pytest.raises(DataError, match=message):
        check_drift(reference, current, features=features)


def test_a_malformed_profile_names_the_feature_and_field():
    profile = {"rows": 10, "columns": {"x": {"kind": "numeric", "missing": 0, "count": 10}}}
    with pytest.raises(DataError, match="feature 'x' has no 'histogram'"):
        check_drift(profile, pd.DataFrame({"x": np.arange(600.0)}))
    with pytest.raises(DataError, match="no 'columns'"):
        check_drift({"rows": 3}, pd.DataFrame({"x": np.arange(600.0)}))


def test_an_effect_size_without_significance_does_not_decide_and_says_why():
    rng = np.random.default_rng(18)
    profile = profile_of(pd.DataFrame({"x": rng.normal(size=600)}))
    current = pd.DataFrame({"x": rng.normal(0.15, 1, 600)})  # W ≈ 0.15 but KS on 600 vs 600 rows is not sure
    guarded = check_drift(profile, current).features["x"]
    assert guarded.tests["wasserstein"].drift and not guarded.tests["ks"].drift
    assert not guarded.drift and "not significant" in guarded.reason
    assert check_drift(profile, current, DriftPolicy(require_significance=False)).features["x"].drift


def test_a_regressor_on_unshifted_traffic_is_no_prediction_drift_and_on_shifted_traffic_is():
    """A team's regressor (diabetes progression) on rows drawn from its own data. Before: its
    predictions were compared with the target's profile, and a regressor's predictions are narrower
    than its target (std 57 against 76): 'prediction drift' on every check, a retrain each time."""
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    from provenflow.modeling.training import train_and_evaluate

    data = load_diabetes(as_frame=True).frame
    trained = train_and_evaluate(data, "target", RandomForestRegressor(n_estimators=30, random_state=0), 0, 0.25)
    profile = profile_of(data)
    features = [c["name"] for c in trained.signature["inputs"]]
    calm = data.sample(n=1500, replace=True, random_state=4).drop(columns="target")
    calm["prediction"] = trained.pipeline.predict(calm[features])
    # What the check compared before: the target's profile.
    assert check_drift(profile, calm, features=features, prediction_profile=profile["columns"]["target"]).drift
    result = check_drift(profile, calm, features=features, prediction_profile=trained.signature["predictions"])
    assert not result.prediction.drift and not result.drift, result.prediction
    shifted = calm.assign(bmi=calm["bmi"] + 0.05)  # heavier patients: higher predicted progression
    shifted["prediction"] = trained.pipeline.predict(shifted[features])
    moved = check_drift(profile, shifted, features=features, prediction_profile=trained.signature["predictions"])
    assert moved.prediction.drift and "bmi" in moved.drifted_features
