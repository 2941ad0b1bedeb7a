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
