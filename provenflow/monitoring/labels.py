"""Ground-truth labels for a model version's logged predictions, from Python or a file.

``record_feedback`` is what ``provenflow feedback`` and ``pf.feedback`` call: it resolves the model in
the ledger, checks and normalizes the labels, counts the ids the prediction log does not hold, and
stores one feedback segment (the format and the rules are in ``provenflow/serving/feedback.py``,
which the model server's ``POST /feedback`` uses too).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from provenflow.serving import feedback as fb
from provenflow.serving.predictlog.segments import log_folder

if TYPE_CHECKING:
    from provenflow.workspace import Workspace

Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass(frozen=True)
class Columns:
    """Where a labels table keeps the row id (or request id and row) and the label."""

    label: str = "label"
    id: str = "id"
    request_id: str = "request_id"
    row: str = "row"


@dataclass(frozen=True)
class FeedbackResult:
    model: str
    stored: int
    unknown: int
    unknown_ids: list[str]
    segment: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "stored": self.stored, "unknown": self.unknown,
                "unknown_ids": self.unknown_ids, "segment": self.segment}  # fmt: skip


def read_labels(path: str | os.PathLike, columns: Columns = Columns()) -> pd.DataFrame:
    """A CSV or Parquet file of labels, ids read as text (a request id such as ``12e4`` is not a number)."""
    shown = str(path)
    suffix = Path(shown).suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".gz"):
            ids = {c: str for c in (columns.id, columns.request_id)}
            frame = pd.read_csv(path, sep="\t" if ".tsv" in shown.lower() else ",", dtype=ids)
        else:
            raise fb.FeedbackError(
                f"{shown!r} is neither CSV nor Parquet; give a .csv or .parquet file of labels"
            )
    except FileNotFoundError:
        raise fb.FeedbackError(f"no labels file at {shown!r}; check the path") from None
    except pd.errors.EmptyDataError:
        raise fb.FeedbackError(f"{shown!r} is empty; expected a header and one row per label") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fb.FeedbackError(f"{shown!r} could not be read as labels: {message}") from None
    return frame


def record_feedback(
    workspace: Workspace,
    model: str,
    labels: pd.DataFrame | Sequence[Mapping[str, Any]] | str | os.PathLike,
    columns: Columns = Columns(),
    source: str = "python",
    progress: Progress | None = None,
) -> FeedbackResult:
    """Store LABELS for MODEL (``NAME@VERSION`` or ``NAME@ALIAS``): a table or file with a label and
    a row id (``<request_id>:<row>``, as /predict answers them) or request id and row, or records
    like ``{"id": ..., "label": ...}``. Returns how many were stored and which ids have no logged prediction."""
    from provenflow.ledger.refs import resolve_model

    with workspace.ledger.reader() as session:
        version = resolve_model(session, model)
        name, number, ref = version.name, version.version, version.ref
        classes = (version.signature or {}).get("classes") if version.task != "regression" else None
    if isinstance(labels, (str, os.PathLike)):
        labels = read_labels(labels, columns)
    if isinstance(labels, pd.DataFrame):
        frame = fb.labels_from_frame(labels, columns.label, columns.request_id, columns.row, columns.id)
    else:
        frame = fb.labels_from_records(labels)
    frame = fb.normalize(frame, classes)
    store = workspace.store
    logged = fb.LoggedIds(store.fs, log_folder(store.root, name, number))
    logged.refresh(progress)
    stored = fb.write_feedback(store.fs, fb.feedback_folder(store.root, name, number), frame, source,
                               logged.unknown(frame))  # fmt: skip
    return FeedbackResult(ref, stored.stored, stored.unknown, stored.unknown_ids, stored.segment)
