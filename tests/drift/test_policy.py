"""DriftPolicy validates itself and round-trips through JSON."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from provenflow.errors import ConfigError
from provenflow.monitoring.drift import DriftPolicy


def test_defaults_decide_by_effect_size_and_round_trip_through_json():
    policy = DriftPolicy()
    assert policy.numeric_tests == ("psi", "wasserstein", "missing")
    assert policy.categorical_tests == ("psi", "missing")
    data = json.loads(json.dumps(policy.to_dict()))
    assert data["window"] == 3600.0
    assert DriftPolicy.from_dict(data) == policy


def test_lists_become_tuples_and_duplicates_collapse():
    policy = DriftPolicy(numeric_tests=["ks", "ks", "psi"], window=timedelta(minutes=5))
    assert policy.numeric_tests == ("ks", "psi")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"psi_threshold": 0}, r"psi_threshold must be a number > 0, got 0"),
        ({"significance": 1.5}, r"significance must be between 0 and 1, got 1.5"),
        ({"min_rows": 0}, r"min_rows must be a whole number ≥ 1, got 0"),
        ({"window": timedelta(0)}, r"window must be a positive timedelta"),
        ({"drift_share": 2}, r"drift_share must be between 0 and 1"),
        ({"numeric_tests": ("chi_square",)}, r"numeric_tests names an unknown test 'chi_square'"),
        ({"categorical_tests": ("pis",)}, r"unknown test 'pis'.*Did you mean 'psi'"),
        ({"numeric_tests": ()}, r"numeric_tests is empty"),
        ({"numeric_tests": "psi"}, r"numeric_tests must be a list"),
    ],
)
def test_bad_settings_name_the_field(settings, message):
    with pytest.raises(ConfigError, match=message):
        DriftPolicy(**settings)


def test_from_dict_suggests_the_field_for_an_unknown_key():
    with pytest.raises(ConfigError, match=r"no setting 'min_row'.*Did you mean 'min_rows'"):
        DriftPolicy.from_dict({"min_row": 10})
