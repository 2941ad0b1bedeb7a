"""The drift reference of one column, read from the profile ``provenflow.data.datasets.profile_of`` stored.

The profile is JSON in the ledger, written once at training time. It is parsed into small frozen
value types here, once per check, with errors that name the feature and the missing or malformed
field, so a profile from an older or hand-edited record fails clearly instead of deep in numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from provenflow.errors import DataError


@dataclass(frozen=True)
class NumericReference:
    """A numeric column at training time: fixed histogram bins, quantiles, spread, missing share."""

    name: str
    edges: np.ndarray  # strictly increasing; the bins the current data is counted on
    counts: np.ndarray  # len(edges) - 1 counts (or 1 for a constant column), finite values only
    probabilities: np.ndarray  # quantile probabilities, ascending
    quantiles: np.ndarray  # the values at those probabilities (may hold ±inf)
    std: float | None
    count: int  # non-missing values, infinite ones included
    missing: int

    @property
    def rows(self) -> int:
        return self.count + self.missing


@dataclass(frozen=True)
class CategoricalReference:
    """A categorical column at training time: top category counts and the count of the rest."""

    name: str
    frequencies: dict[str, int]
    other: int  # values of the categories beyond the stored top ones
    distinct: int
    count: int
    missing: int

    @property
    def rows(self) -> int:
        return self.count + self.missing


ColumnReference = NumericReference | CategoricalReference


def _field(name: str, profile: Mapping, key: str) -> object:
    if key not in profile:
        raise DataError(
            f"the stored profile of feature {name!r} has no {key!r} field (it has {sorted(profile)}); "
            "it was written by an older provenflow: re-run the data run to re-profile the dataset"
        )
    return profile[key]


def _int(name: str, profile: Mapping, key: str, default: int | None = None) -> int:
    value = profile.get(key, default) if default is not None else _field(name, profile, key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise DataError(f"the stored profile of feature {name!r} has {key}={value!r}; expected a count ≥ 0")
    return int(value)


def _numeric(name: str, profile: Mapping) -> NumericReference:
    histogram = _field(name, profile, "histogram")
    quantiles = _field(name, profile, "quantiles")
    if not isinstance(histogram, Mapping) or not isinstance(quantiles, Mapping):
        raise DataError(
            f"the stored profile of feature {name!r} has a malformed histogram or quantiles; expected objects"
        )
    try:
        edges = np.asarray(_field(name, histogram, "edges"), dtype="float64")
        counts = np.asarray(_field(name, histogram, "counts"), dtype="int64")
        probabilities = np.array([float(p) for p in quantiles], dtype="float64")
        values = np.array([np.nan if v is None else float(v) for v in quantiles.values()], dtype="float64")
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"the stored profile of feature {name!r} has non-numeric bins or quantiles: {exc}"
        ) from None
    expected = max(edges.size - 1, 1)
    if (
        edges.size == 0
        or counts.size != expected
        or np.any(np.diff(edges) <= 0)
        or not np.all(np.isfinite(edges))
    ):
        raise DataError(
            f"the stored histogram of feature {name!r} is inconsistent: {edges.size} edges and {counts.size} counts; "
            "expected strictly increasing finite edges and one count per bin"
        )
    order = np.argsort(probabilities)
    std = profile.get("std")
    return NumericReference(
        name=name,
        edges=edges,
        counts=counts,
        probabilities=probabilities[order],
        quantiles=values[order],
        std=float(std) if isinstance(std, int | float) and np.isfinite(std) else None,
        count=_int(name, profile, "count"),
        missing=_int(name, profile, "missing"),
    )


def _categorical(name: str, profile: Mapping) -> CategoricalReference:
    frequencies = _field(name, profile, "frequencies")
    if not isinstance(frequencies, Mapping):
        raise DataError(
            f"the stored profile of feature {name!r} has frequencies={frequencies!r}; expected an object"
        )
    return CategoricalReference(
        name=name,
        frequencies={str(k): _int(name, frequencies, k) for k in frequencies},
        other=_int(name, profile, "other", default=0),
        distinct=_int(name, profile, "distinct", default=len(frequencies)),
        count=_int(name, profile, "count"),
        missing=_int(name, profile, "missing"),
    )


def discrete_reference(name: str, profile: Mapping) -> CategoricalReference | None:
    """A numeric column with few distinct values, as its exact value counts (None when it has none
    stored): quantile bins cannot see a 0/1 column shift, value counts can."""
    values = profile.get("values") if isinstance(profile, Mapping) else None
    if profile.get("kind") != "numeric" or not isinstance(values, Mapping):
        return None
    return CategoricalReference(
        name=name,
        frequencies={str(k): _int(name, values, k) for k in values},
        other=0,
        distinct=len(values),
        count=_int(name, profile, "count"),
        missing=_int(name, profile, "missing"),
    )


def column_reference(name: str, profile: Mapping) -> ColumnReference:
    """The typed reference of one column from its stored profile entry (``profile["columns"][name]``)."""
    if not isinstance(profile, Mapping):
        raise DataError(
            f"the stored profile of feature {name!r} is {type(profile).__name__}; expected an object"
        )
    kind = _field(name, profile, "kind")
    if kind == "numeric":
        return _numeric(name, profile)
    if kind == "categorical":
        return _categorical(name, profile)
    raise DataError(
        f"the stored profile of feature {name!r} has kind={kind!r}; expected 'numeric' or 'categorical'"
    )
