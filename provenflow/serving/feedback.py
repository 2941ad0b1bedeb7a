"""The feedback log: ground-truth labels for logged predictions, append-only Parquet segments in the store.

A served row is named by its **row id** ``<request_id>:<row>`` (``row`` counts from 0 in the request;
/predict answers list them as ``ids``; a V2 answer's rows are ``<parameters.request_id>:<row>``). A
label names its row by that id, or by ``request_id`` and ``row``. Labels live beside the prediction
log::

    {store_url}/feedback/{model_name}/{version}/{received}_{random}.parquet

one segment per batch received, with columns ``request_id``, ``row``, ``label`` (text for
classifiers, so ``1`` and ``"1"`` are the same class; float for regressors), ``received`` (UTC) and
``source`` (``http``, ``cli``, ``python``). A segment appears whole or not at all (written under a
hidden name, fsynced, renamed; object stores write whole objects). Nothing is ever rewritten: a
second label for a row is a new segment, and readers keep the latest by ``received`` (history stays).

Labels for ids the prediction log does not hold (a typo, another model's id, a row still in another
server process's write-ahead file) are stored too, and counted as ``unknown`` in every answer, so
the sender sees them; the monitor's join simply finds no prediction for them.

The model server imports this module: no Prefect, no SQLAlchemy here.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from provenflow.errors import ProvenflowError
from provenflow.serving.predictlog.segments import is_segment, write_local

log = logging.getLogger(__name__)
_STAMP = "%Y%m%dT%H%M%S%fZ"
_ROW_ID = re.compile(r"^(?P<request_id>[A-Za-z0-9._:-]{1,128}):(?P<row>\d{1,9})$")
# What the server takes as an X-Request-ID, so every logged request id matches it: no path
# separators, control characters or NUL reach a label segment.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_ROW = 999_999_999  # nine digits, as in a row id: a request never has that many rows
SOURCES = ("http", "cli", "python")
SHOWN_UNKNOWN = 20  # unknown ids named in an answer (the count is always complete)


class FeedbackError(ProvenflowError):
    """Labels that cannot be taken: a missing column or field, an empty batch, a malformed id or label."""


def row_id(request_id: str, row: int) -> str:
    return f"{request_id}:{row}"


def row_ids(request_id: str, rows: int) -> list[str]:
    prefix = f"{request_id}:"
    return [prefix + str(i) for i in range(rows)]


def split_row_id(text: str) -> tuple[str, int]:
    """``"abc:3"`` → ``("abc", 3)``; the row is after the last colon (request ids may hold colons)."""
    match = _ROW_ID.match(text) if isinstance(text, str) else None
    if match is None:
        raise FeedbackError(
            f"id {text!r} is not a row id; row ids look like '<request_id>:<row>' (e.g. '3f2a…:0'), "
            "as /predict answers them in 'ids'"
        )
    return match["request_id"], int(match["row"])


def feedback_folder(store_url: str, model_name: str, version: int | str) -> str:
    return f"{store_url.rstrip('/')}/feedback/{quote(model_name, safe='')}/{version}"


def beside(prediction_folder: str) -> str:
    """The feedback folder of a prediction log folder (``…/predictions/NAME/VERSION``), in the same filesystem."""
    root, top, name, version = prediction_folder.rstrip("/").rsplit("/", 3)
    if top != "predictions":
        raise ValueError(f"{prediction_folder!r} is not a prediction log folder")
    return f"{root}/feedback/{name}/{version}"


# -- turning what callers send into a checked frame ---------------------------------------


def labels_from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """JSON records, each ``{"id": ..., "label": ...}`` or ``{"request_id": ..., "row": ..., "label": ...}``."""
    request_ids, rows, labels = [], [], []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise FeedbackError(
                f"label {i} is {type(record).__name__}, not an object like {{'id': ..., 'label': ...}}"
            )
        if "label" not in record:
            raise FeedbackError(
                f"label {i} has no 'label' field; send {{'id': '<request_id>:<row>', 'label': ...}}"
            )
        if "id" in record:
            rid, row = split_row_id(record["id"])
        elif "request_id" in record and "row" in record:
            rid, row = record["request_id"], record["row"]
            if (
                not isinstance(rid, str)
                or _REQUEST_ID.match(rid) is None
                or isinstance(row, bool)
                or not isinstance(row, int)
                or not 0 <= row <= MAX_ROW
            ):
                raise FeedbackError(
                    f"label {i} has request_id {_shown(rid)} and row {_shown(row)}; send the request id the "
                    f"server answered (letters, digits, '._:-', at most 128) and a row number >= 0 and <= {MAX_ROW}"
                )
        else:
            raise FeedbackError(
                f"label {i} names no row; give 'id' ('<request_id>:<row>') or 'request_id' and 'row'"
            )
        label = record["label"]
        if not isinstance(label, (str, int, float, bool)) and label is not None:
            raise FeedbackError(f"label {i} is {type(label).__name__}; a label is a class name or a number")
        request_ids.append(rid)
        rows.append(row)
        labels.append(label)
    return _frame(request_ids, rows, labels)


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def labels_from_frame(
    frame: pd.DataFrame,
    label: str = "label",
    request_id: str = "request_id",
    row: str = "row",
    id: str = "id",
) -> pd.DataFrame:
    """A table with a label column and either an id column (``<request_id>:<row>``) or request id and row columns."""
    if frame.empty:
        raise FeedbackError("the labels are empty: no rows to store")
    columns = list(frame.columns)
    if label not in columns:
        raise FeedbackError(
            f"no label column {label!r} among the columns {columns}; name it with --label-column"
        )
    if id in columns:
        parts = [split_row_id(str(v)) for v in frame[id]]
        request_ids = [p[0] for p in parts]
        rows = [p[1] for p in parts]
    elif request_id in columns and row in columns:
        request_ids = frame[request_id].astype(str).tolist()
        wrong = next((r for r in request_ids if _REQUEST_ID.match(r) is None), None)
        if wrong is not None:
            raise FeedbackError(
                f"column {request_id!r} holds {_shown(wrong)}, not a request id the server answered "
                "(letters, digits, '._:-', at most 128)"
            )
        numbers = pd.to_numeric(frame[row], errors="coerce")
        bad = numbers.isna() | (numbers < 0) | (numbers > MAX_ROW) | (numbers != numbers.round())
        if bad.any():
            first = frame[row][bad].iloc[0]
            raise FeedbackError(
                f"column {row!r} holds {first!r}, not a row number >= 0 and <= {MAX_ROW} (row {int(bad.values.argmax())})"
            )
        rows = numbers.astype(np.int64).tolist()
    else:
        raise FeedbackError(
            f"the labels have the columns {columns}; they need {id!r} ('<request_id>:<row>') or both "
            f"{request_id!r} and {row!r} (name them with --id-column, --request-id-column, --row-column)"
        )
    return _frame(request_ids, rows, frame[label].tolist())


def _frame(request_ids: list[str], rows: list[int], labels: list[Any]) -> pd.DataFrame:
    if not request_ids:
        raise FeedbackError("the labels are empty: no rows to store")
    missing = [i for i, v in enumerate(labels) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise FeedbackError(
            f"{len(missing)} labels are empty (the first is label {missing[0]}); leave those rows out"
        )
    return pd.DataFrame({"request_id": request_ids, "row": np.asarray(rows, dtype=np.int64), "label": labels})


def normalize(labels: pd.DataFrame, classes: list[Any] | None) -> pd.DataFrame:
    """Labels in the log's type: a classifier's as the text of its class (``1.0`` for class ``1`` is
    ``"1"``; a label that is no class is kept as its text: the world may have a new class); a
    regressor's as floats."""
    out = labels.copy()
    if classes is None:
        values = pd.to_numeric(out["label"], errors="coerce")
        if values.isna().any():
            first = out["label"][values.isna()].iloc[0]
            raise FeedbackError(f"label {first!r} is not a number; this model predicts numbers (a regressor)")
        out["label"] = values.astype(np.float64)
        return out
    known: dict[Any, str] = {}
    for c in classes:
        known[str(c)] = str(c)
        if isinstance(c, (int, float, np.number)) and not isinstance(c, bool):
            known[float(c)] = str(c)
    out["label"] = [known.get(v if isinstance(v, str) else _number(v), str(v)) for v in out["label"].tolist()]
    return out


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value)
    return float(value) if isinstance(value, (int, float, np.number)) else str(value)


# -- which ids the prediction log holds ------------------------------------------------------


def id_keys(request_ids: Iterable[str]) -> np.ndarray:
    """64-bit keys of request ids (pandas' SipHash with its fixed key: the same in every process)."""
    return pd.util.hash_array(np.asarray(list(request_ids), dtype=object), categorize=False)


@dataclass
class LoggedIds:
    """Request ids in a prediction log folder and their row counts, read once per segment
    (segments never change), so a server checking every feedback batch reads only new segments.

    A server answers for weeks: ids are kept as sorted 64-bit keys beside their row counts, 12 bytes
    a request instead of ~150 in a dict of strings. Two ids sharing a key (odds ~1e-9 at 10 million
    requests) would let a label for the missing one count as known; it is stored either way."""

    fs: fsspec.AbstractFileSystem
    folder: str
    # (sorted keys, row counts), replaced whole so a reader never needs the lock
    _index: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.empty(0, np.uint64), np.empty(0, np.int32))
    )
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, progress: Callable[[str, int, int], None] | None = None) -> None:
        """Read the segments not read yet; ``progress(step, done, total)`` after each one."""
        if not self.fs.exists(self.folder):
            return
        with self._lock:
            paths = sorted(p for p in self.fs.ls(self.folder, detail=False) if is_segment(p))
            new = [p for p in paths if p not in self._seen]
            found = []
            for done, path in enumerate(new, 1):
                try:
                    with self.fs.open(path, "rb") as fh:
                        found.append(pq.read_table(fh, columns=["request_id"]).column("request_id"))
                except (pa.ArrowException, OSError, ValueError, KeyError):
                    continue  # an unreadable segment: the monitor names it; its rows count as unknown
                self._seen.add(path)
                if progress is not None:
                    progress("prediction log segments", done, len(new))
            if found:
                counts = pa.chunked_array([c for column in found for c in column.chunks], pa.string())
                counts = counts.value_counts()
                self._merge(id_keys(counts.field("values").to_pylist()), counts.field("counts").to_numpy())

    def _merge(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Fold (key, rows) pairs in, keeping each key's largest row count (a request's rows are
        all in one segment; a larger count can only come from a longer request with the same id)."""
        order = np.lexsort((rows, keys))
        keys, rows = keys[order], rows[order]
        last = np.r_[keys[1:] != keys[:-1], True]
        keys, rows = keys[last], rows[last].astype(np.int32)
        held_keys, held_rows = self._index
        at = np.searchsorted(held_keys, keys)
        held = at < len(held_keys)
        held[held] = held_keys[at[held]] == keys[held]
        held_rows = held_rows.copy()
        held_rows[at[held]] = np.maximum(held_rows[at[held]], rows[held])
        self._index = (
            np.insert(held_keys, at[~held], keys[~held]),
            np.insert(held_rows, at[~held], rows[~held]),
        )

    def check(self, labels: pd.DataFrame, extra: Mapping[str, int] | None = None) -> np.ndarray:
        """``unknown``, listing the log folder only when an id is not among the rows read so far
        (a busy log has thousands of segments; labels mostly name rows already seen)."""
        unknown = self.unknown(labels, extra)
        if unknown.any():
            self.refresh()
            unknown = self.unknown(labels, extra)
        return unknown

    def unknown(self, labels: pd.DataFrame, extra: Mapping[str, int] | None = None) -> np.ndarray:
        """A mask over ``labels``: True where no logged prediction has that request id and row."""
        ids = labels["request_id"].tolist()
        keys = id_keys(ids)
        held_keys, held_rows = self._index
        counts = np.zeros(len(keys), np.int64)
        if len(held_keys):
            at = np.minimum(np.searchsorted(held_keys, keys), len(held_keys) - 1)
            hit = held_keys[at] == keys
            counts[hit] = held_rows[at[hit]]
        if extra:
            counts = np.maximum(counts, [extra.get(r, 0) for r in ids])
        return labels["row"].to_numpy() >= counts


# -- writing and reading --------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What one batch of labels did: how many rows were stored, and which had no logged prediction."""

    stored: int
    unknown: int
    unknown_ids: list[str]
    segment: str

    def to_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "unknown": self.unknown, "unknown_ids": self.unknown_ids}


def write_feedback(
    fs: fsspec.AbstractFileSystem, folder: str, labels: pd.DataFrame, source: str, unknown: np.ndarray
) -> Stored:
    """Store ``labels`` (checked and normalized) as one new segment, whole or not at all."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {SOURCES}")
    now = datetime.now(UTC)
    table = pa.table(
        {
            "request_id": pa.array(labels["request_id"].tolist(), pa.string()),
            "row": pa.array(labels["row"].to_numpy(), pa.int32()),
            "label": pa.array(labels["label"].tolist()),
            "received": pa.array(
                np.full(len(labels), int(now.timestamp() * 1_000_000)), pa.timestamp("us", tz="UTC")
            ),
            "source": pa.array([source] * len(labels), pa.string()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    fs.makedirs(folder, exist_ok=True)
    target = f"{folder}/{now.strftime(_STAMP)}_{uuid.uuid4().hex[:12]}.parquet"
    if isinstance(fs, LocalFileSystem):
        write_local(target, buffer.getvalue())
    else:
        fs.pipe_file(target, buffer.getvalue())
    missing = labels[unknown]
    shown = [
        row_id(r, n)
        for r, n in zip(missing["request_id"][:SHOWN_UNKNOWN], missing["row"][:SHOWN_UNKNOWN], strict=True)
    ]
    return Stored(len(labels), int(unknown.sum()), shown, target)


def read_feedback(
    store_url: str,
    model_name: str,
    version: int | str,
    history: bool = False,
    storage_options: dict | None = None,
) -> pd.DataFrame:
    """The labels of one model version: the latest per row (``history``: every label ever received)."""
    fs, folder = fsspec.core.url_to_fs(
        feedback_folder(store_url, model_name, version), **(storage_options or {})
    )
    columns = ["request_id", "row", "label", "received", "source"]
    if not fs.exists(folder):
        return pd.DataFrame(columns=columns)
    frames = []
    for path in sorted(p for p in fs.ls(folder, detail=False) if is_segment(p)):
        try:
            with fs.open(path, "rb") as fh:
                frames.append(pq.read_table(fh).to_pandas())
        except (pa.ArrowException, OSError, ValueError) as exc:  # damaged in the store: say so, go on
            log.warning("skipping feedback segment %s: it cannot be read as Parquet (%s)", path, exc)
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)  # segments sort by the time they were received
    if history:
        return frame
    frame = frame.sort_values("received", kind="stable")
    return frame.drop_duplicates(["request_id", "row"], keep="last").reset_index(drop=True)
