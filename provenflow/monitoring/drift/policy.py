"""``DriftPolicy``: which tests run, which of them decide, their thresholds, window and sample size.

A frozen value that validates itself, so a bad setting (typed in the DriftPolicy block in the
Prefect UI) fails when the policy is built, naming the field, not halfway through a check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import Any

from provenflow.errors import ConfigError, did_you_mean

NUMERIC_TESTS = ("psi", "ks", "wasserstein", "missing")
"""Every numeric feature gets all of these; ``DriftPolicy.numeric_tests`` says which decide."""
CATEGORICAL_TESTS = ("psi", "chi_square", "missing")
"""Every categorical feature gets all of these; ``DriftPolicy.categorical_tests`` says which decide."""
P_VALUE_TESTS = frozenset({"ks", "chi_square"})
"""Tests whose score is a p-value: drift when it is *below* ``significance``; the others drift at or above
their threshold."""


@dataclass(frozen=True)
class DriftPolicy:
    """How a drift check decides. Every test listed in ``NUMERIC_TESTS``/``CATEGORICAL_TESTS`` is
    computed and reported; a feature drifts when **any** of its deciding tests fires (an effect-size
    test only when it is also significant, see ``require_significance``).

    Why the defaults decide by effect size (PSI, Wasserstein) rather than by p-value: a production
    window holds thousands to millions of rows, and at that size KS and chi-square call a
    difference of a fraction of a percent "significant" — true, but not worth a retrain. The
    p-value tests are still computed and reported, and can be made to decide (small windows,
    stricter monitoring) by listing them. ``missing`` catches an upstream pipeline that starts
    sending nulls, which imputation would otherwise hide from the model and from the other tests.
    """

    psi_threshold: float = 0.1
    """PSI at or above this is drift (numeric and categorical). 0.1 is Evidently's default; 0.25 is
    the classic "major shift"."""
    wasserstein_threshold: float = 0.1
    """Wasserstein distance divided by the reference standard deviation: 0.1 = a tenth of a σ."""
    significance: float = 0.05
    """KS and chi-square drift when their p-value is below this."""
    missing_threshold: float = 0.1
    """Absolute change in the share of missing values (0.1 = ten percentage points)."""
    numeric_tests: tuple[str, ...] = ("psi", "wasserstein", "missing")
    """The tests that decide numeric drift (any of them), from ``NUMERIC_TESTS``."""
    categorical_tests: tuple[str, ...] = ("psi", "missing")
    """The tests that decide categorical drift (any of them), from ``CATEGORICAL_TESTS``."""
    min_rows: int = 500
    """A window with fewer rows is "not enough data": no verdict, no drift, no trigger. Below a few hundred
    rows PSI and Wasserstein are dominated by sampling noise."""
    window: timedelta = timedelta(hours=1)
    """How much of the prediction log one check reads (the caller picks the window; kept here so the policy
    is the one place to configure a monitor)."""
    drift_share: float = 0.0
    """Overall drift when at least this share of the checked features drift (and at least one does);
    0 means any single drifted feature."""
    require_significance: bool = True
    """An effect-size test (PSI, Wasserstein) only counts as drift when the feature's p-value test (KS for
    numeric, chi-square for categorical) is below ``significance`` too. In small windows the effect sizes
    are noisy (Wasserstein ≥ 0.1 on ~5% of same-distribution windows of 1,000 rows); the p-value test keeps
    false alarms at or below ``significance`` there, while in large windows, where everything is
    significant, the effect size decides."""
    prediction_decides: bool = True
    """Whether drift of the prediction distribution alone makes the overall verdict "drift"."""

    def __post_init__(self) -> None:
        for name in ("psi_threshold", "wasserstein_threshold", "missing_threshold"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"DriftPolicy.{name} must be a number > 0, got {value!r}")
        if not isinstance(self.significance, int | float) or not 0 < self.significance < 1:
            raise ConfigError(f"DriftPolicy.significance must be between 0 and 1, got {self.significance!r}")
        if not isinstance(self.drift_share, int | float) or not 0 <= self.drift_share <= 1:
            raise ConfigError(f"DriftPolicy.drift_share must be between 0 and 1, got {self.drift_share!r}")
        if not isinstance(self.min_rows, int) or isinstance(self.min_rows, bool) or self.min_rows < 1:
            raise ConfigError(f"DriftPolicy.min_rows must be a whole number ≥ 1, got {self.min_rows!r}")
        if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
            raise ConfigError(f"DriftPolicy.window must be a positive timedelta, got {self.window!r}")
        object.__setattr__(self, "numeric_tests", _tests("numeric_tests", self.numeric_tests, NUMERIC_TESTS))
        object.__setattr__(
            self, "categorical_tests", _tests("categorical_tests", self.categorical_tests, CATEGORICAL_TESTS)
        )

    def threshold(self, test: str) -> float:
        """The threshold a test's score is compared with."""
        return {
            "psi": self.psi_threshold,
            "wasserstein": self.wasserstein_threshold,
            "missing": self.missing_threshold,
            "ks": self.significance,
            "chi_square": self.significance,
        }[test]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (window in seconds), for the ledger's drift report and the run card."""
        data = asdict(self)
        data["window"] = self.window.total_seconds()
        data["numeric_tests"] = list(self.numeric_tests)
        data["categorical_tests"] = list(self.categorical_tests)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftPolicy:
        """The inverse of ``to_dict``; unknown keys are an error naming the closest field."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"DriftPolicy has no setting {key!r}.{did_you_mean(key, known)}")
        values = dict(data)
        if "window" in values and not isinstance(values["window"], timedelta):
            values["window"] = timedelta(seconds=float(values["window"]))
        for key in ("numeric_tests", "categorical_tests"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _tests(field: str, chosen: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(chosen, str) or not isinstance(chosen, tuple | list):
        raise ConfigError(
            f"DriftPolicy.{field} must be a list of test names from {list(allowed)}, got {chosen!r}"
        )
    if not chosen:
        raise ConfigError(f"DriftPolicy.{field} is empty: name at least one test from {list(allowed)}")
    for test in chosen:
        if test not in allowed:
            raise ConfigError(
                f"DriftPolicy.{field} names an unknown test {test!r}; choose from {list(allowed)}."
                f"{did_you_mean(str(test), allowed)}"
            )
    return tuple(dict.fromkeys(chosen))
