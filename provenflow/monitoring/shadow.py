"""Agreement between a production model and its shadow challenger, from their two prediction logs.

A production server deployed with ``--shadow-of`` mirrors every answered request to the challenger
with the same request id (``serving/mirror.py``), and each server logs its own predictions. Rows
pair up on (request id, row); the report says, overall and per time window (production's time):

- ``matched``: rows both models predicted; ``coverage``: matched / production rows (mirrored
  copies dropped or failed lower it; the rest of the report is over matched rows only);
- ``agreement``: the fraction of matched rows with equal predictions;
- classifiers with probabilities: ``mean_abs_proba_difference``, the mean over rows and classes of
  |p_production(c) - p_challenger(c)| (for two classes, |Δ p(positive)|);
- regressors: ``mean_abs_difference`` of the predicted values.

A (request id, row) that appears more than once on either side (a client that reuses its
X-Request-ID) cannot be paired for sure: it is left out and counted as ``ambiguous``.

    report = compare_predictions(production_frame, challenger_frame, window=timedelta(hours=1))
    report = shadow_agreement(workspace, "penguins@production", "penguins@challenger", since=...)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from provenflow.workspace import Workspace

DEFAULT_WINDOW = timedelta(hours=1)
_KEY = ["request_id", "row"]


def compare_predictions(
    production: pd.DataFrame, challenger: pd.DataFrame, window: timedelta = DEFAULT_WINDOW
) -> dict[str, Any]:
    """The agreement report of two prediction-log frames (as ``read_predictions`` returns them)."""
    production_rows, challenger_rows = len(production), len(challenger)
    if production.empty or challenger.empty:
        return _report(production_rows, challenger_rows, 0, _pairs_stats(None, [], False), [])
    ambiguous = 0
    sides = []
    for frame in (production, challenger):
        repeated = frame.duplicated(_KEY, keep=False)
        ambiguous += int(repeated.sum())
        sides.append(frame[~repeated])
    classes = sorted(
        {c for c in production.columns if c.startswith("proba_")}
        & {c for c in challenger.columns if c.startswith("proba_")}
    )
    regression = not classes and production["prediction"].dtype.kind in "fiu"
    keep = [*_KEY, "time", "prediction", *classes]
    pairs = sides[0][keep].merge(
        sides[1][[*_KEY, "prediction", *classes]], on=_KEY, suffixes=("", "_challenger")
    )
    windows = []
    if not pairs.empty:
        start = pd.Timestamp(pairs["time"].min()).floor(window)
        bucket = ((pairs["time"] - start) // window).astype(int)
        for number, part in pairs.groupby(bucket, sort=True):
            low = start + number * window
            windows.append({"start": low.isoformat(), "end": (low + window).isoformat(),
                            **_pairs_stats(part, classes, regression)})  # fmt: skip
    overall = _pairs_stats(pairs, classes, regression)
    return _report(production_rows, challenger_rows, ambiguous, overall, windows)


def _pairs_stats(pairs: pd.DataFrame | None, classes: list[str], regression: bool) -> dict[str, Any]:
    if pairs is None or pairs.empty:
        return {"matched": 0, "agreement": None}
    same = pairs["prediction"].to_numpy() == pairs["prediction_challenger"].to_numpy()
    out: dict[str, Any] = {"matched": len(pairs), "agreement": float(np.mean(same))}
    if classes:
        mine = pairs[classes].to_numpy(dtype=np.float64)
        theirs = pairs[[f"{c}_challenger" for c in classes]].to_numpy(dtype=np.float64)
        out["mean_abs_proba_difference"] = float(np.mean(np.abs(mine - theirs)))
    elif regression:
        delta = pairs["prediction"].to_numpy(np.float64) - pairs["prediction_challenger"].to_numpy(np.float64)
        out["mean_abs_difference"] = float(np.nanmean(np.abs(delta)))
    return out


def _report(
    production_rows: int, challenger_rows: int, ambiguous: int, overall: dict, windows: list[dict]
) -> dict[str, Any]:
    return {
        "production_rows": production_rows,
        "challenger_rows": challenger_rows,
        "ambiguous_rows": ambiguous,
        "coverage": overall["matched"] / production_rows if production_rows else None,
        **overall,
        "windows": windows,
    }


def current_shadow(workspace: Workspace, production_version: str) -> str | None:
    """The challenger (NAME@VERSION) that the newest ready deployment of ``production_version``
    mirrors to, as the deploy flow recorded it; None when it mirrors to none."""
    from sqlalchemy import select

    from provenflow.ledger import models as m
    from provenflow.ledger.refs import resolve_model

    with workspace.ledger.reader() as session:
        version = resolve_model(session, production_version)
        rows = session.scalars(
            select(m.Deployment)
            .where(m.Deployment.model_version_id == version.id, m.Deployment.state == "ready")
            .order_by(m.Deployment.id.desc())
        )
        return next(((row.details or {}).get("shadow") for row in rows if (row.details or {}).get("shadow")), None)


def shadow_agreement(
    workspace: Workspace,
    production_version: str,
    challenger_version: str,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> dict[str, Any]:
    """The agreement report of two model versions (NAME@VERSION or NAME@ALIAS) from their prediction
    logs in the workspace's store, rows of production's ``since <= time < until``. Also names the
    versions and the log segments that could not be read."""
    from provenflow.ledger.refs import resolve_model
    from provenflow.serving.predictlog.reading import read_predictions

    with workspace.ledger.reader() as session:
        versions = [resolve_model(session, ref) for ref in (production_version, challenger_version)]
        refs = [v.ref for v in versions]
        keys = [(v.name, v.version) for v in versions]
    production, skipped = read_predictions(workspace.store.url, *keys[0], since=since, until=until)
    # The challenger answers a mirrored copy after production: its rows may be a little later.
    challenger, skipped_too = read_predictions(workspace.store.url, *keys[1], since=since)
    report = compare_predictions(production, challenger, window)
    return {
        "production": refs[0],
        "challenger": refs[1],
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        **report,
        "skipped_segments": [*skipped, *skipped_too],
    }
