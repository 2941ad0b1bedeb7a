"""The prediction log on a real local folder: flushing by size, time and close; reading; corrupt segments."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from provenflow.serving.inputs import Batch, Feature
from provenflow.serving.predictlog import PredictionLog, log_folder, read_predictions, wal_folder
from provenflow.serving.runtime import Predictions

FEATURES = (Feature("x", "numeric"), Feature("island", "categorical"), Feature("time", "numeric"))
CLASSES = ["a", "b"]


def batch(n: int) -> tuple[Batch, Predictions]:
    islands = np.array(["Dream", np.nan] * n, dtype=object)[:n]
    columns = {"x": np.arange(n, dtype=np.float64), "island": islands, "time": np.full(n, 1.5)}
    proba = np.tile([0.25, 0.75], (n, 1))
    return Batch(columns, n), Predictions(np.array(["b"] * n, dtype=object), proba)


def open_log(store: Path, **kw) -> PredictionLog:
    return PredictionLog(str(store), "m/odel", 3, "ab" * 32, FEATURES, CLASSES, **kw)


def segments(store: Path) -> list[Path]:
    return sorted(Path(log_folder(str(store), "m/odel", 3)).glob("*.parquet"))


def test_close_writes_everything_in_one_segment(tmp_path):
    with open_log(tmp_path, flush_rows=1000, flush_seconds=600) as log:
        for i in range(5):
            log.append(f"req{i}", *batch(3))
        assert log.buffered_rows == 15 and segments(tmp_path) == []
    frame, skipped = read_predictions(str(tmp_path), "m/odel", 3)
    assert skipped == [] and len(frame) == 15 and len(segments(tmp_path)) == 1
    assert frame["request_id"].tolist()[:4] == ["req0", "req0", "req0", "req1"]
    assert frame["row"].tolist()[:4] == [0, 1, 2, 0]
    assert frame["model_version"].unique().tolist() == [3]
    assert frame["proba_b"].unique().tolist() == [0.75] and frame["prediction"].unique().tolist() == ["b"]
    # A feature named like a log column keeps its value under input.<name>.
    assert frame["input.time"].unique().tolist() == [1.5] and str(frame["time"].dtype).startswith(
        "datetime64"
    )
    assert frame["island"].isna().sum() == 5  # one missing island in each 3-row request


def test_reader_reads_only_the_columns_asked_for(tmp_path):
    """The quality monitor reads predictions without their inputs; a column a segment lacks is no error."""
    with open_log(tmp_path) as log:
        log.append("req0", *batch(4))
    frame, _ = read_predictions(
        str(tmp_path), "m/odel", 3, columns={"request_id", "row", "prediction", "proba_z"}
    )
    assert list(frame.columns) == ["request_id", "row", "time", "prediction"] and len(frame) == 4


def test_flush_by_size_and_by_time(tmp_path):
    log = open_log(tmp_path, flush_rows=10, flush_seconds=0.2).start()
    try:
        log.append("big", *batch(12))  # over flush_rows: the writer wakes at once
        _wait(lambda: len(segments(tmp_path)) == 1)
        log.append("small", *batch(1))  # under flush_rows: written when flush_seconds pass
        _wait(lambda: len(segments(tmp_path)) == 2)
    finally:
        log.close()
    names = [p.name for p in segments(tmp_path)]
    assert names == sorted(names) and len(set(names)) == 2
    assert log.rows_written == 13


def test_reader_filters_by_time_window(tmp_path):
    with open_log(tmp_path) as log:
        log.append("early", *batch(2))
    middle = datetime.now(UTC)
    time.sleep(0.01)
    with open_log(tmp_path) as log:
        log.append("late", *batch(3))
    since, _ = read_predictions(str(tmp_path), "m/odel", 3, since=middle)
    until, _ = read_predictions(str(tmp_path), "m/odel", 3, until=middle)
    assert set(since["request_id"]) == {"late"} and set(until["request_id"]) == {"early"}
    naive, _ = read_predictions(
        str(tmp_path), "m/odel", 3, since=middle.replace(tzinfo=None) - timedelta(days=1)
    )
    assert len(naive) == 5


def test_corrupt_segment_is_skipped_and_named(tmp_path, caplog):
    for request in ("one", "two"):
        with open_log(tmp_path) as log:
            log.append(request, *batch(2))
    broken = segments(tmp_path)[0]
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])
    with caplog.at_level(logging.WARNING):
        frame, skipped = read_predictions(str(tmp_path), "m/odel", 3)
    assert skipped == [str(broken)] and len(frame) == 2
    assert broken.name in caplog.text


def test_no_log_yet_reads_as_empty(tmp_path):
    frame, skipped = read_predictions(str(tmp_path), "nothing", 1)
    assert frame.empty and skipped == []


def test_failed_writes_keep_rows_and_retry(tmp_path):
    store = tmp_path / "store"
    log = open_log(store, max_backlog_rows=4)
    log.start()
    folder = Path(log.folder)
    folder.rmdir()
    folder.parent.rmdir()
    folder.parent.write_text("not a folder")  # writes now fail
    log.append("kept", *batch(4))
    log.flush()
    assert log.error and log.buffered_rows == 4
    with pytest.raises(Exception, match="4 unwritten rows"):
        log.append("refused", *batch(1))
    folder.parent.unlink()
    folder.mkdir(parents=True)  # the store is back
    log.close()
    frame, _ = read_predictions(str(store), "m/odel", 3)
    assert frame["request_id"].unique().tolist() == ["kept"] and log.error is None


def test_a_backlog_is_not_cut_into_a_segment_per_request(tmp_path):
    """While segments could not be stored, every append past ``flush_rows`` woke the writer, and each
    wake sealed the open file with whatever it held: the backlog became a segment (an fsync, 8-16 ms
    here) per request, which made it grow faster. A file is sealed once it holds ``flush_rows``."""
    store = tmp_path / "store"
    log = open_log(store, flush_rows=30, flush_seconds=600).start()
    folder = Path(log.folder)
    folder.rmdir()
    folder.parent.rmdir()
    folder.parent.write_text("not a folder")  # writes now fail
    for i in range(60):
        log.append(f"r{i}", *batch(3))
        time.sleep(0.005)  # time for the writer to wake, as it would under load
    folder.parent.unlink()
    folder.mkdir(parents=True)  # the store is back
    log.close()
    frame, _ = read_predictions(str(store), "m/odel", 3)
    assert len(frame) == 180 and frame["request_id"].iloc[-1] == "r59"
    assert len(segments(store)) <= 180 // 30 + 1, len(segments(store))


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- the write-ahead file: what a killed process leaves, and its recovery ----------------------


def wal_files(store: Path) -> list[Path]:
    return sorted(Path(wal_folder(LocalFileSystem(), log_folder(str(store), "m/odel", 3))).glob("*.wal"))


def orphan(source: Path, store: Path, cut: int = 0) -> Path:
    """Put a copy of a write-ahead file (minus its last ``cut`` bytes) where ``store``'s log would
    have it, as a process killed at that moment would leave it."""
    target = Path(wal_folder(LocalFileSystem(), log_folder(str(store), "m/odel", 3))) / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    target.write_bytes(data[: len(data) - cut])
    return target


def test_clean_close_leaves_no_write_ahead_file(tmp_path):
    with open_log(tmp_path, flush_rows=5, flush_seconds=600) as log:
        for i in range(4):
            log.append(f"r{i}", *batch(3))  # crosses flush_rows: a segment and a new file meanwhile
        assert len(wal_files(tmp_path)) >= 1
    assert wal_files(tmp_path) == [] and len(read_predictions(str(tmp_path), "m/odel", 3)[0]) == 12


def test_recovery_keeps_whole_requests_and_drops_a_torn_one(tmp_path):
    live = open_log(tmp_path / "live", flush_seconds=600).start()
    try:
        live.append("small", *batch(2))
        live.append("big", *batch(25_000))  # three parts in the file
        source = wal_files(tmp_path / "live")[0]
        complete = orphan(source, tmp_path / "complete")
        torn = orphan(source, tmp_path / "torn", cut=100)  # the kill came during the big write
    finally:
        live.close()
    frame, _ = read_predictions(str(tmp_path / "complete"), "m/odel", 3)
    assert frame.groupby("request_id").size().to_dict() == {"small": 2, "big": 25_000}
    assert frame["island"].isna().sum() == 1 + 12_500 and frame["proba_b"].unique().tolist() == [0.75]
    # the big request went as Arrow frames (ARROW_FRAME_ROWS), the small one as orjson: both read back
    big = frame[frame["request_id"] == "big"].sort_values("row")
    assert big["x"].tolist() == list(range(25_000)) and set(big["prediction"]) == {"b"}
    frame, _ = read_predictions(str(tmp_path / "torn"), "m/odel", 3)
    assert frame["request_id"].tolist() == ["small", "small"]
    assert not complete.exists() and not torn.exists()


def test_a_crash_after_the_segment_was_stored_logs_nothing_twice(tmp_path):
    with open_log(tmp_path, flush_seconds=600) as log:
        log.append("once", *batch(3))
        saved = wal_files(tmp_path)[0].read_bytes()
        name = wal_files(tmp_path)[0].name
    # The segment is stored and its file deleted; put the file back as if the process had died
    # between the two.
    (Path(wal_folder(LocalFileSystem(), log_folder(str(tmp_path), "m/odel", 3))) / name).write_bytes(saved)
    frame, _ = read_predictions(str(tmp_path), "m/odel", 3)
    assert frame["request_id"].tolist() == ["once"] * 3 and wal_files(tmp_path) == []


def test_a_living_servers_file_is_left_alone(tmp_path):
    log = open_log(tmp_path, flush_seconds=600).start()
    try:
        log.append("live", *batch(2))
        frame, _ = read_predictions(str(tmp_path), "m/odel", 3)  # the drift monitor, meanwhile
        assert frame.empty and len(wal_files(tmp_path)) == 1
        log.append("more", *batch(1))  # and the server keeps logging into it
    finally:
        log.close()
    frame, _ = read_predictions(str(tmp_path), "m/odel", 3)
    assert frame["request_id"].tolist() == ["live", "live", "more"]


def test_a_new_log_recovers_on_start(tmp_path):
    source_log = open_log(tmp_path / "a", flush_seconds=600).start()
    source_log.append("left", *batch(2))
    orphan(wal_files(tmp_path / "a")[0], tmp_path / "b")
    source_log.close()
    log = open_log(tmp_path / "b").start()
    log.close()
    assert log.rows_recovered == 2
    assert read_predictions(str(tmp_path / "b"), "m/odel", 3)[0]["request_id"].tolist() == ["left"] * 2


def test_a_segment_of_many_requests_is_built_in_parts_and_reads_back_whole(tmp_path):
    # More requests than one table part holds; the first part's category column is all missing (an
    # Arrow null column on its own), the next parts' are strings: the parts still join into one segment.
    from provenflow.serving.predictlog import TABLE_PART_CHUNKS

    n = TABLE_PART_CHUNKS * 2 + 7
    with open_log(tmp_path, flush_rows=10 * n, flush_seconds=600) as log:
        for i in range(n):
            one, predictions = batch(1)
            one.columns["island"] = np.array([np.nan if i < TABLE_PART_CHUNKS else "Dream"], dtype=object)
            one.columns["x"] = np.array([float(i)])
            log.append(f"r{i}", one, predictions)
    assert len(segments(tmp_path)) == 1
    frame, skipped = read_predictions(str(tmp_path), "m/odel", 3)
    assert skipped == [] and len(frame) == n
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(n)]
    assert frame["x"].tolist() == [float(i) for i in range(n)]
    assert frame["island"].isna().sum() == TABLE_PART_CHUNKS
    assert set(frame["island"].dropna()) == {"Dream"} and set(frame["model_hash"]) == {"ab" * 32}
