"""Segments built in a process of their own, so that the server's event loop never waits for one.

A segment is thousands of requests' rows turned into one Parquet table: numpy and Arrow calls that
hold the GIL, which the event loop needs for every request. Built in the server's writer thread,
single-row requests at 500 req/s waited them out: p99.9 15-19 ms with segments written during the
run, 2.9-3.3 ms without (``bench/serving_tail.py``; see app.py). The sealed write-ahead file
already holds everything a segment needs (recovery builds segments from nothing else), so a child
process (``CHILD_COMMAND``) reads it, encodes the segment and
sends the Parquet bytes back; the server's writer thread stores them (it keeps the store's
credentials and the file's lock) and retires the file. The server's process keeps no rows in
memory for the segment either, only each request's id and row count.

Protocol on the child's stdin/stdout: a request is the write-ahead file's path (4-byte length, then
UTF-8); an answer is a status byte (0: built, 1: failed), then the segment's name and its bytes
(or the error message), each with its length. The child ignores SIGINT and SIGTERM (the server's
shutdown flushes through it) and exits when its stdin closes: when the server exits, even by
``kill -9``. If the child dies or cannot start, the segment is built in the writer thread as before,
with a warning, and a new child is started for the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import BinaryIO

from provenflow.serving.predictlog.segments import encode_segment
from provenflow.serving.predictlog.wal import read_wal, wal_tag

log = logging.getLogger(__name__)

# Not ``-m …builder``: the package imports this module first, and runpy warns on every start that
# it finds it in sys.modules (the warning landed in every model server's log).
CHILD_COMMAND = [sys.executable, "-c", "from provenflow.serving.predictlog.builder import main; main()"]

_LENGTH = struct.Struct("<I")
_ANSWER = struct.Struct("<BIQ")  # status, name length, data length


class SegmentError(ValueError):
    """The write-ahead file could not be turned into a segment (the child said why)."""


def build_segment(path: str) -> tuple[str, bytes, int]:
    """The segment of a sealed write-ahead file: its name, Parquet bytes and rows (no rows: no segment)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        schema, chunks = read_wal(fd, arrow=True)  # large requests' Arrow frames taken as they are
    finally:
        os.close(fd)
    if not chunks:
        return "", b"", 0
    name, data = encode_segment(schema, chunks, wal_tag(path))
    return name, data, sum(c.rows for c in chunks)


class SegmentBuilder:
    """Builds segments in a child process, one at a time; in the calling thread when the child fails."""

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def start(self) -> None:
        """Start the child now (its imports take ~0.5 s), not at the first segment."""
        with self._lock:
            try:
                self._started()
            except OSError as exc:
                log.warning(
                    "could not start the segment builder process (%s); segments are built in the server", exc
                )

    def build(self, path: str) -> tuple[str, bytes, int]:
        with self._lock:
            try:
                child = self._started()
                return _ask(child, path)
            except SegmentError:
                raise
            except (OSError, EOFError, ValueError) as exc:  # the child died or never started
                log.warning(
                    "segment builder process failed (%s: %s); building %s in the server",
                    type(exc).__name__, exc, path,
                )  # fmt: skip
                self._stop(kill=True)
        return build_segment(path)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _started(self) -> subprocess.Popen:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                CHILD_COMMAND,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # answers are read from the descriptor, with a deadline (_read_fd)
                close_fds=True,
            )
        return self._child

    def _stop(self, kill: bool = False) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if kill:
                child.kill()
            child.stdin.close()  # it exits on end of input
            child.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
        finally:
            child.stdout.close()


def _ask(child: subprocess.Popen, path: str) -> tuple[str, bytes, int]:
    encoded = path.encode()
    child.stdin.write(_LENGTH.pack(len(encoded)) + encoded)
    child.stdin.flush()
    deadline = time.monotonic() + BUILD_TIMEOUT
    fd = child.stdout.fileno()
    status, name_length, data_length = _ANSWER.unpack(_read_fd(fd, _ANSWER.size, deadline))
    name = _read_fd(fd, name_length, deadline).decode()
    data = _read_fd(fd, data_length, deadline)
    if status == 1:
        raise SegmentError(data.decode())
    rows = _LENGTH.unpack(_read_fd(fd, _LENGTH.size, deadline))[0]
    return name, data, rows


# A hung builder must not stop the log for good: past this, it is killed and the segment built here.
# A 1,000,000-row segment (the default backlog limit) builds in ~1 s.
BUILD_TIMEOUT = 300.0


def _read_fd(fd: int, size: int, deadline: float) -> bytes:
    parts, got = [], 0
    while got < size:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"the segment builder process gave no answer in {BUILD_TIMEOUT:g} s")
        part = os.read(fd, min(size - got, 1 << 20))
        if not part:
            raise EOFError(f"the segment builder process ended ({got} of {size} bytes)")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the segment builder process ended ({len(data)} of {size} bytes)")
    return data


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child's loop: a path in, a segment out, until the input ends."""
    while True:
        head = requests.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        path = _read(requests, _LENGTH.unpack(head)[0]).decode()
        try:
            name, data, rows = build_segment(path)
        except Exception as exc:  # the server decides what to do; the child goes on
            message = f"{type(exc).__name__}: {exc}".encode()
            answers.write(_ANSWER.pack(1, 0, len(message)) + message)
        else:
            encoded = name.encode()
            answers.write(_ANSWER.pack(0, len(encoded), len(data)) + encoded + data + _LENGTH.pack(rows))
        answers.flush()


def main() -> None:
    # A real-time policy inherited from the server (``bench/serving_tail.py --priority rt``) would let
    # the builder take the core the event loop or the load generator wants: drop it. Not lower than the
    # server's own priority: under sustained load a starved builder lets rows back up until /predict
    # answers 503 (the backlog limit).
    with contextlib.suppress(OSError, AttributeError):
        if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    # The server's shutdown (Ctrl-C, SIGTERM to its process group) still flushes its last segment through us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the answers
    serve(sys.stdin.buffer, answers)
