"""Recovery: rows a stopped server answered but never stored as a segment are stored by whoever comes next.

Each server process holds an ``flock`` on its write-ahead files; ``recover`` (run by
``PredictionLog.start()`` and by ``read_predictions``, so by the drift monitor) turns every file
nobody holds into its segment. A segment's name ends with its file's name, so after a crash between
storing a segment and deleting its file, recovery finds the segment and only deletes the file: no
row is logged twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time

import fsspec
import orjson

from provenflow.errors import StoreError
from provenflow.serving.predictlog.segments import tag_of_segment, write_segment
from provenflow.serving.predictlog.wal import read_wal, wal_tag

log = logging.getLogger(__name__)


def recover(fs: fsspec.AbstractFileSystem, folder: str, wal_dir: str) -> int:
    """Turn every write-ahead file that no living process holds into its segment, then delete it;
    returns the rows recovered. Safe to run from several processes at once, and to repeat."""
    if not os.path.isdir(wal_dir):
        return 0
    recovered = 0
    stored = None
    for name in sorted(os.listdir(wal_dir)):
        path = os.path.join(wal_dir, name)
        if not name.endswith((".wal", ".wal.tmp")):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its owner just retired it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a living server's
            if os.fstat(fd).st_nlink == 0:
                continue  # retired while we waited for the lock
            if name.endswith(".tmp") and time.time() - os.fstat(fd).st_mtime < 60:
                continue  # maybe being created right now (it is locked only after it exists)
            if name.endswith(".wal"):
                if stored is None:
                    stored = (
                        {tag_of_segment(p) for p in fs.ls(folder, detail=False)}
                        if fs.exists(folder)
                        else set()
                    )
                if wal_tag(path) not in stored:
                    recovered += _recover_file(fs, folder, fd, path)
            os.unlink(path)  # recovered, already stored, or a header-only .tmp of a dead process
        finally:
            os.close(fd)
    return recovered


def _recover_file(fs: fsspec.AbstractFileSystem, folder: str, fd: int, path: str) -> int:
    try:
        schema, chunks = read_wal(fd)
    except (ValueError, KeyError, orjson.JSONDecodeError) as exc:
        raise StoreError(
            f"the prediction write-ahead file {path} cannot be read ({exc}); move it away to go on"
        ) from exc
    if not chunks:
        return 0
    fs.makedirs(folder, exist_ok=True)
    target = write_segment(fs, folder, schema, chunks, wal_tag(path))
    rows = sum(c.rows for c in chunks)
    log.warning("recovered %d predictions of a stopped server from %s into %s", rows, path, target)
    return rows
