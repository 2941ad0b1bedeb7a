"""LoggedIds: which (request id, row) pairs a prediction log folder holds, in bounded memory."""

from __future__ import annotations

import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from provenflow.serving.feedback import LoggedIds


def segment(folder, ids: list[str]) -> None:
    pq.write_table(pa.table({"request_id": ids}), folder / f"{uuid.uuid4().hex}.parquet")


def labels(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame({"request_id": [r for r, _ in pairs], "row": [n for _, n in pairs]})


def test_rows_are_known_up_to_each_requests_count_and_new_segments_are_read_on_a_miss(tmp_path):
    segment(tmp_path, ["a", "a", "a", "b"])  # request a answered 3 rows, b one
    logged = LoggedIds(LocalFileSystem(), str(tmp_path))
    asked = labels([("a", 0), ("a", 2), ("a", 3), ("b", 0), ("b", 1), ("c", 0)])
    assert logged.check(asked).tolist() == [False, False, True, False, True, True]

    segment(tmp_path, ["c", "c"])
    (tmp_path / ".tmp-unfinished.parquet").write_bytes(b"partial")  # a segment being written: skipped
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")  # unreadable: its rows stay unknown
    assert logged.check(labels([("c", 1), ("c", 2)])).tolist() == [False, True]
    # rows still buffered in the server (not in a segment yet) count too
    assert logged.check(labels([("d", 0), ("d", 4)]), {"d": 2}).tolist() == [False, True]
    assert logged.unknown(asked).tolist() == [False, False, True, False, True, False]


def test_a_long_running_servers_ids_cost_about_twelve_bytes_each(tmp_path):
    ids = [uuid.uuid4().hex for _ in range(200_000)]
    for start in range(0, len(ids), 20_000):
        segment(tmp_path, ids[start : start + 20_000])
    logged = LoggedIds(LocalFileSystem(), str(tmp_path))
    logged.refresh()
    keys, rows = logged._index
    assert len(keys) == len(ids) and keys.nbytes + rows.nbytes <= 12 * len(ids)
    sample = ids[::997]
    assert not logged.unknown(labels([(r, 0) for r in sample])).any()
    assert logged.unknown(labels([(r, 1) for r in sample])).all()
    assert logged.unknown(labels([(uuid.uuid4().hex, 0) for _ in range(1000)])).all()
