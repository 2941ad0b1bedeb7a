"""The drift artifact: verdict, a one-click link to the Evidently report, and per-feature
histograms of the training reference against the current window."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from provenflow.monitoring.drift.reference import NumericReference, column_reference
from provenflow.ui.charts import histogram, image

MAX_CATEGORIES = 12  # bars per categorical histogram; the rest count as "(other)"


def feature_histogram(name: str, profile: Mapping, values: pd.Series) -> str:
    """One feature's reference (from the stored profile's bins or category counts) vs. current."""
    ref = column_reference(name, profile)
    if isinstance(ref, NumericReference):
        edges = ref.edges
        current = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        current = current[np.isfinite(current)]
        if len(edges) < 2:  # a constant column: one bin
            labels, reference, counts = [f"{edges[0]:.4g}"], [ref.count], [len(current)]
        else:
            counts = np.histogram(np.clip(current, edges[0], edges[-1]), bins=edges)[0].tolist()
            labels = [f"{edges[i]:.3g}" for i in range(len(edges) - 1)]
            reference = ref.counts.tolist()
        return image(f"{name} histogram", histogram(name, labels, reference, counts))
    top = list(ref.frequencies)[:MAX_CATEGORIES]
    seen = values.dropna().astype(str).value_counts()
    labels = [*top, "(other)"]
    reference = [ref.frequencies[c] for c in top] + [
        ref.other + sum(list(ref.frequencies.values())[MAX_CATEGORIES:])
    ]
    current = [int(seen.get(c, 0)) for c in top] + [int(seen.drop(labels=top, errors="ignore").sum())]
    return image(f"{name} histogram", histogram(name, labels, reference, current))


def drift_markdown(
    model: str,
    verdict: str,
    rows: int,
    since: datetime,
    training_dataset: str,
    drifted: Iterable[str],
    reason: str | None,
    report_url: str | None,
    pictures: list[str],
) -> str:
    drifted = list(drifted)
    lines = [
        f"# Drift of `{model}`: **{verdict}**",
        "",
        f"{rows} rows since {since:%Y-%m-%d %H:%M} UTC against the profile of `{training_dataset}`.",
        "",
    ]
    if drifted:
        lines += [f"Drifted: {', '.join(drifted)}", ""]
    if report_url:
        lines += [f"**[Open the Evidently drift report]({report_url})**", ""]
    elif reason:
        lines += [reason, ""]
    if pictures:
        lines += ["## Reference (training) vs. current window", "", *(p + "\n" for p in pictures)]
    return "\n".join(lines)
