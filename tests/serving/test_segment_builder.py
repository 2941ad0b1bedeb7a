"""Prediction-log segments built in a child process (predictlog/builder.py), as the server builds them.

Built in the server's writer thread, a segment held the GIL the event loop needs: the worst 0.1% of
single-row requests at 500 req/s waited for it (bench/serving_tail.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from provenflow.errors import StoreError
from provenflow.serving.inputs import Batch
from provenflow.serving.predictlog import builder, read_predictions
from provenflow.serving.runtime import Predictions
from tests.serving.test_predictlog import batch, open_log, segments


def one_row(i: int) -> tuple[Batch, Predictions]:
    b, p = batch(1)
    b.columns["x"][0] = i
    return b, p


def fill(log, requests: int) -> None:
    for i in range(requests):
        log.append(f"r{i}", *one_row(i))


def test_the_server_process_spends_little_cpu_on_a_segment_built_by_the_child(tmp_path):
    """The same 3,000 one-row requests flushed by each kind of log: the process that answers
    requests spends under a quarter of the CPU when the child builds (before: all of it, in the
    writer thread, holding the GIL in 500-request parts)."""
    spent = {}
    for child in (False, True):
        store = tmp_path / str(child)
        with open_log(store, flush_rows=10**9, flush_seconds=600, segment_process=child) as log:
            fill(log, 3000)
            if child:
                log._builder.start()
            before = time.process_time()
            log.flush()
            spent[child] = time.process_time() - before
            assert log.rows_written == 3000 and len(segments(store)) == 1
        frame, skipped = read_predictions(str(store), "m/odel", 3)
        assert skipped == [] and len(frame) == 3000
        assert frame["x"].tolist() == list(range(3000)) and frame["request_id"].iloc[-1] == "r2999"
    print("server-process CPU for the flush (s):", spent)
    assert spent[True] < spent[False] / 4, spent


def test_a_dead_builder_loses_nothing(tmp_path):
    """The child killed between segments: the next segment is built in the server, the one after by a new child."""
    with open_log(tmp_path, flush_rows=10**9, flush_seconds=600, segment_process=True) as log:
        fill(log, 10)
        log.flush()
        first = log._builder.pid
        assert first is not None and first != os.getpid()
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)
        fill(log, 10)
        log.flush()  # falls back to building here
        fill(log, 10)
        log.flush()
        assert log._builder.pid not in (None, first)
        assert log.rows_written == 30 and log.error is None
    frame, _ = read_predictions(str(tmp_path), "m/odel", 3)
    assert len(frame) == 30 and len(segments(tmp_path)) == 3


def test_an_unreadable_write_ahead_file_is_an_error_not_a_lost_child(tmp_path):
    log = open_log(tmp_path, flush_rows=10**9, flush_seconds=600, segment_process=True).start()
    fill(log, 5)
    with open(log._wal.path, "r+b") as fh:  # damage the header: nobody can read the file
        fh.seek(8)
        fh.write(b"!!!!")
    log.flush()
    assert log.error is not None and "SegmentError" in log.error and log.buffered_rows == 5
    assert log._builder.pid is not None  # the child said what went wrong and lives on
    with pytest.raises(StoreError, match="5 predictions could not be written"):
        log.close()


def test_the_builder_exits_with_a_killed_server(tmp_path):
    """kill -9 of the server: its builder sees its input end and exits (no orphan per restart)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from tests.serving.test_predictlog import batch, open_log
        log = open_log(__import__("pathlib").Path({str(tmp_path)!r}), flush_rows=10**9, flush_seconds=600,
                       segment_process=True).start()
        log._builder.start()
        print(log._builder.pid, flush=True)
        time.sleep(60)
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(server.stdout.readline())
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead (its parent, the killed server, never reaped it)
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_arrow_frames_decode_to_arrays(tmp_path):
    """A 10,000-row request's write-ahead frame reads back as arrays, nulls as NaN."""
    b, p = batch(10_000)
    with open_log(tmp_path, flush_rows=10**9, flush_seconds=600, segment_process=True) as log:
        log.append("big", b, p)
    frame, _ = read_predictions(str(tmp_path), "m/odel", 3)
    assert len(frame) == 10_000 and frame["island"].isna().sum() == 5000
    assert np.array_equal(frame["x"].to_numpy(), np.arange(10_000, dtype=np.float64))


def test_requests_taken_from_arrow_frames_read_back_as_decoded_ones(tmp_path):
    """Large requests (Arrow frames) go into the segment as written; the same rows recovered the old
    way (decoded from the file after a crash) read back identical, between small (orjson) requests."""
    requests = [("one", batch(1)), ("big", batch(300)), ("two", batch(2)), ("empty-island", batch(100))]
    requests[3][1][0].columns["island"][:] = np.nan  # an all-missing categorical column
    built = open_log(tmp_path / "built", flush_rows=10**9, flush_seconds=600, segment_process=True).start()
    crashed = open_log(tmp_path / "crashed", flush_rows=10**9, flush_seconds=600).start()
    for request_id, (b, p) in requests:
        built.append(request_id, b, p)
        crashed.append(request_id, b, p)
    built.close()
    crashed._stop = True  # a crash: its write-ahead file stays, unlocked, for recovery to decode
    os.close(crashed._wal.fd)
    a, _ = read_predictions(str(tmp_path / "built"), "m/odel", 3)
    b, _ = read_predictions(str(tmp_path / "crashed"), "m/odel", 3)
    assert len(a) == 403
    pd.testing.assert_frame_equal(a.drop(columns="time"), b.drop(columns="time"))


def test_a_hung_builder_is_killed_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(builder, "BUILD_TIMEOUT", 1.0)
    with open_log(tmp_path, flush_rows=10**9, flush_seconds=600, segment_process=True) as log:
        fill(log, 10)
        log._builder.start()
        hung = log._builder.pid
        os.kill(hung, signal.SIGSTOP)
        log.flush()  # no answer within the timeout: killed, the segment built here
        assert log.rows_written == 10 and log.error is None and not _alive(hung)
        monkeypatch.setattr(builder, "BUILD_TIMEOUT", 300.0)  # a new child's imports may take longer than 1 s
        fill(log, 10)
        log.flush()
        assert log._builder.pid not in (None, hung) and log.rows_written == 20


def test_the_child_starts_without_a_warning_and_ends_with_its_input():
    """Before: started with ``-m``, runpy warned on every model server's start that the package had
    imported the module already (a RuntimeWarning in `provenflow serve`'s output and server.log)."""
    done = subprocess.run(builder.CHILD_COMMAND, input=b"", capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
