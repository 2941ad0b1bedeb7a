"""Reading the log back: one model version's predictions in a time window, as a DataFrame."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from provenflow.errors import StoreError
from provenflow.serving.predictlog.recovery import recover
from provenflow.serving.predictlog.segments import as_utc, is_segment, log_folder, may_overlap
from provenflow.serving.predictlog.wal import wal_folder

log = logging.getLogger(__name__)


def read_predictions(
    store_url: str,
    model_name: str,
    version: int | str,
    since: datetime | None = None,
    until: datetime | None = None,
    storage_options: dict | None = None,
    columns: Collection[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The logged predictions of one model version with ``since <= time < until``, and the
    segments skipped because they could not be read (each named in a warning). ``columns``: read
    only those of each segment's columns (where it has them; ``time`` always, for the window), e.g. no
    inputs for a quality check."""
    fs, folder = fsspec.core.url_to_fs(log_folder(store_url, model_name, version), **(storage_options or {}))
    try:  # rows a killed server answered but had not yet written as a segment
        recover(fs, folder, wal_folder(fs, folder))
    except (OSError, StoreError) as exc:
        log.warning("could not recover the prediction write-ahead files of %s: %s", folder, exc)
    if not fs.exists(folder):
        return pd.DataFrame(), []
    paths = sorted(p for p in fs.ls(folder, detail=False) if is_segment(p))
    frames, skipped = [], []
    for path in paths:
        if not may_overlap(path, since, until):
            continue
        try:
            with fs.open(path, "rb") as fh:
                if columns is None:
                    frames.append(pq.read_table(fh).to_pandas())
                else:
                    present = pq.ParquetFile(fh).schema_arrow.names
                    fh.seek(0)
                    wanted = [c for c in present if c in columns or c == "time"]  # time: the window
                    frames.append(pq.read_table(fh, columns=wanted).to_pandas())
        except (pa.ArrowException, OSError, ValueError) as exc:
            shown = fs.unstrip_protocol(path) if not isinstance(fs, LocalFileSystem) else path
            log.warning("skipping prediction log segment %s: it cannot be read as Parquet (%s)", shown, exc)
            skipped.append(shown)
    if not frames:
        return pd.DataFrame(), skipped
    frame = pd.concat(frames, ignore_index=True)
    if since is not None:
        frame = frame[frame["time"] >= pd.Timestamp(as_utc(since))]
    if until is not None:
        frame = frame[frame["time"] < pd.Timestamp(as_utc(until))]
    return frame.reset_index(drop=True), skipped
