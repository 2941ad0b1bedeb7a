"""The drift statistics: pure functions on counts and quantiles, numpy and ``scipy.special`` only.

Every test here compares a *stored reference summary* with current data, so none of them needs
the raw training rows:

- numeric values are binned on the reference histogram's fixed edges (``bin_numeric``), with one
  open bin below the reference minimum and one above its maximum, so values outside the training
  range are counted instead of dropped;
- PSI and Kolmogorov–Smirnov work on those two count vectors;
- Wasserstein works on quantile functions: the reference's stored quantiles against the current
  data's quantiles at the same probabilities;
- categorical PSI and chi-square work on category counts aligned by ``align_categories``.

``scipy.stats`` costs ~0.8 s to import here, so the p-values use ``scipy.special`` directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special

# Proportions of empty bins are replaced by this before the logarithm of PSI. Evidently uses the
# same 0.0001, so scores stay comparable with its ``psi`` test.
PSI_EPSILON = 1e-4

OTHER = "(other)"
"""The bucket for every category outside the reference's stored top categories (or unseen at training)."""


def _as_counts(counts: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(counts, dtype="float64")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence of counts, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts, got {array.tolist()}")
    if array.sum() == 0:
        raise ValueError(f"{name} are all zero: there is nothing to compare")
    return array


def _paired(ref_counts: Sequence[float], cur_counts: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    ref = _as_counts(ref_counts, "reference counts")
    cur = _as_counts(cur_counts, "current counts")
    if ref.shape != cur.shape:
        raise ValueError(
            f"reference and current counts must cover the same bins: {ref.size} bins against {cur.size}"
        )
    return ref, cur


def psi(ref_counts: Sequence[float], cur_counts: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index ``Σ (cur% − ref%) · ln(cur% / ref%)`` over the same bins.

    Works for numeric bins and category buckets alike. An empty bin on either side gets the
    proportion ``epsilon`` instead of 0 (the logarithm would be infinite), so a category seen only
    in production, or values beyond the training range, add a large but finite term.
    """
    ref, cur = _paired(ref_counts, cur_counts)
    p = ref / ref.sum()
    q = cur / cur.sum()
    p = np.where(p == 0, epsilon, p)
    q = np.where(q == 0, epsilon, q)
    return float(np.sum((q - p) * np.log(q / p)))


def bin_numeric(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts of the finite ``values`` on fixed reference edges, with open outer bins.

    For ``k`` edges the result has ``k + 1`` counts: ``(-inf, e0)``, then the ``k - 1`` bins of
    ``numpy.histogram`` (``[e_i, e_i+1)``, the last one closed), then ``(e_k-1, +inf)``. A single
    edge (a constant reference) gives three bins: below, equal, above. NaN and ±inf are not
    counted, as ``profile_of`` leaves them out of the reference histogram.

    The edges are fitted once at training time and never re-fitted. Counting is one vectorised
    comparison per edge (``count_nonzero(values < e)``): with ~15 edges that is ~15× faster than
    ``searchsorted``, whose branchy binary search costs ~25 ms per million values here.
    """
    edges = np.asarray(edges, dtype="float64")
    if edges.ndim != 1 or edges.size == 0 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges must be finite and strictly increasing, got {edges.tolist()}")
    values = np.asarray(values, dtype="float64")
    below_edge = np.array([np.count_nonzero(values < e) for e in edges], dtype="int64")
    up_to_last = int(np.count_nonzero(values <= edges[-1]))
    minus_inf = int(np.count_nonzero(values == -np.inf))
    finite_above = values.size - int(np.count_nonzero(np.isnan(values))) - up_to_last
    finite_above -= int(np.count_nonzero(values == np.inf))
    if edges.size == 1:  # below, equal, above
        return np.array([below_edge[0] - minus_inf, up_to_last - below_edge[0], finite_above], dtype="int64")
    interior = np.diff(np.append(below_edge[:-1], up_to_last))
    return np.concatenate([[below_edge[0] - minus_inf], interior, [finite_above]]).astype("int64")


def reference_bin_counts(histogram_counts: Sequence[int]) -> np.ndarray:
    """The reference histogram's counts with the two open outer bins (empty by construction)."""
    counts = np.asarray(histogram_counts, dtype="int64")
    return np.concatenate([[0], counts, [0]])


def ks_pvalue(statistic: float, n_ref: int, n_cur: int) -> float:
    """Two-sided p-value of a two-sample KS statistic, Smirnov's asymptotic law with Stephens' correction.

    ``Q_KS((√ne + 0.12 + 0.11/√ne) · D)`` with ``ne = n·m/(n+m)``: within ~1% of
    ``scipy.stats.ks_2samp``'s exact/asymptotic p-values for ``ne`` ≥ 20, without importing
    ``scipy.stats``.
    """
    if n_ref <= 0 or n_cur <= 0:
        raise ValueError(f"both samples need values for a KS test, got n_ref={n_ref}, n_cur={n_cur}")
    if statistic <= 0:
        return 1.0
    root = math.sqrt(n_ref * n_cur / (n_ref + n_cur))
    return float(min(1.0, max(0.0, special.kolmogorov((root + 0.12 + 0.11 / root) * statistic))))


def ks_statistic_and_pvalue(ref_counts: Sequence[float], cur_counts: Sequence[float]) -> tuple[float, float]:
    """KS statistic ``max |F_ref − F_cur|`` at the bin boundaries, and its p-value.

    With the reference bins from ``bin_numeric`` the reference CDF at each edge comes exactly from
    the stored histogram counts (no interpolation between quantiles, and ties such as a 0/1 feature
    are exact), so the statistic is the two-sample KS statistic evaluated at the reference edges.
    Differences between edges are not seen: it is a lower bound of the raw-data statistic (within
    ~0.01 of ``ks_2samp`` for smooth distributions with the default 15 quantiles), and the p-value
    is conservative, so false alarms stay at or below the significance level.
    """
    ref, cur = _paired(ref_counts, cur_counts)
    cdf_ref = np.cumsum(ref) / ref.sum()
    cdf_cur = np.cumsum(cur) / cur.sum()
    statistic = float(np.max(np.abs(cdf_ref - cdf_cur)))
    return statistic, ks_pvalue(statistic, int(ref.sum()), int(cur.sum()))


def _abs_linear_integral(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """∫|f| over segments where f is linear from ``a`` to ``b`` (exact, also when f changes sign)."""
    same_sign = a * b >= 0
    total = np.abs(a) + np.abs(b)
    crossing = np.divide(a * a + b * b, 2 * total, out=np.zeros_like(total), where=total > 0)
    return np.where(same_sign, total / 2, crossing) * width


def wasserstein(
    probabilities: Sequence[float],
    ref_quantiles: Sequence[float],
    cur_quantiles: Sequence[float],
    scale: float,
) -> float:
    """First Wasserstein distance ``∫₀¹ |Q_ref(p) − Q_cur(p)| dp`` from quantiles, divided by ``scale``.

    Both quantile functions are taken as piecewise linear through their values at the same
    probabilities, so the approximation error is the same on both sides and vanishes when the
    distributions agree; a pure location shift is measured exactly. The outermost pieces
    (``p < 0.01`` and ``p > 0.99`` with the default quantiles) use the quantile at their inner
    end instead of the sample minimum/maximum: extremes depend on the sample size (the maximum of
    1M normal draws sits ~0.5 σ above that of 100k) and would otherwise pass for drift.

    Knots where either side is not finite (infinite values in the data) are left out. ``scale`` is
    the reference's standard deviation (see ``check.wasserstein_scale``), as Evidently's
    ``wasserstein`` test divides by it, so one threshold serves every feature.
    """
    p = np.asarray(probabilities, dtype="float64")
    ref = np.asarray(ref_quantiles, dtype="float64")
    cur = np.asarray(cur_quantiles, dtype="float64")
    if not (p.shape == ref.shape == cur.shape) or p.ndim != 1:
        raise ValueError(
            f"probabilities and both quantile lists must have the same length: {p.size}, {ref.size}, {cur.size}"
        )
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    keep = np.isfinite(ref) & np.isfinite(cur) & np.isfinite(p)
    p, delta = p[keep], cur[keep] - ref[keep]
    order = np.argsort(p)
    p, delta = p[order], delta[order]
    inner = (p > 0) & (p < 1)
    if np.count_nonzero(inner) >= 2:  # drop the sample extremes, extend the inner ends flat
        p, delta = p[inner], delta[inner]
        p = np.concatenate([[0.0], p, [1.0]])
        delta = np.concatenate([[delta[0]], delta, [delta[-1]]])
    if p.size < 2:
        raise ValueError("at least two finite quantiles are needed for a Wasserstein distance")
    distance = _abs_linear_integral(delta[:-1], delta[1:], np.diff(p)).sum()
    return float(distance / scale)


def align_categories(
    ref_frequencies: Mapping[str, int], ref_other: int, current: pd.Series
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, int]]:
    """Reference and current counts over the same buckets, and the categories new to the reference.

    Buckets are the reference's stored categories plus ``OTHER``, which holds the reference's
    categories beyond its stored top ones (``ref_other``) and, on the current side, every value not
    among the stored categories. Values are compared as strings, as ``profile_of`` stores them.
    Counting runs on the distinct values only (``value_counts`` first, then ``str``), so 1M rows
    with a handful of categories cost one hash pass.
    """
    if current.dtype == object and pd.api.types.infer_dtype(current, skipna=True) != "string":
        # Mixed Python objects: hash them as the strings profile_of stored (1 and True hash alike).
        current = current.dropna().astype(str)
    numeric = pd.api.types.is_numeric_dtype(current) and not pd.api.types.is_bool_dtype(current)
    counts = current.value_counts(dropna=True, sort=False)
    if counts.size:
        # A numeric column's values are named as profile_of names them (1 and 1.0 alike).
        labels = counts.index.map(lambda v: repr(float(v))) if numeric else counts.index.map(str)
        counts = pd.Series(counts.to_numpy(), index=labels).groupby(level=0, sort=False).sum()
    known = list(ref_frequencies)
    cur_known = counts.reindex(known, fill_value=0).to_numpy(dtype="int64")
    new = counts[~counts.index.isin(known)]
    cur_other = int(new.sum())
    ref = np.array([*ref_frequencies.values(), ref_other], dtype="int64")
    cur = np.concatenate([cur_known, [cur_other]])
    new_categories = {str(k): int(v) for k, v in new.sort_values(ascending=False).items()}
    return [*known, OTHER], ref, cur, new_categories


def chi_square(ref_counts: Sequence[float], cur_counts: Sequence[float]) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 × k table (reference, current) × buckets: statistic, p-value.

    A two-sample test: the reference is a sample too, so a small training set does not make small
    differences look significant (Evidently's ``chisquare`` instead treats the reference
    proportions as exact). Buckets empty on both sides are dropped; a bucket seen only in current
    data (a new category) is a legitimate column of the table.
    """
    ref, cur = _paired(ref_counts, cur_counts)
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    if ref.size < 2:
        return 0.0, 1.0
    table = np.vstack([ref, cur])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, float(special.chdtrc(ref.size - 1, statistic))
