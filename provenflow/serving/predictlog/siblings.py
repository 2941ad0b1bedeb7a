"""Which requests other server processes on this disk answered but have not stored yet.

With ``--workers N`` a label may arrive at one worker for a request another answered; until that
sibling writes its segment the request is only in its write-ahead file, which this module reads
(without taking its lock, and without decoding any feature).
"""

from __future__ import annotations

import contextlib
import os

import orjson

from provenflow.serving.predictlog.wal import part_head, whole_frames


def sibling_requests(wal_dir: str, pending: dict[str, int]) -> dict[str, int]:
    """PENDING (request id → rows) with the complete requests of every write-ahead file in WAL_DIR."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(wal_dir):
            if name.endswith(".wal"):
                with contextlib.suppress(OSError, ValueError, KeyError, orjson.JSONDecodeError):
                    for request_id, rows in wal_requests(os.path.join(wal_dir, name)).items():
                        pending[request_id] = max(rows, pending.get(request_id, 0))
    return pending


def wal_requests(path: str) -> dict[str, int]:
    """Request id → rows of the complete requests in a write-ahead file another process may be
    appending to (a tail being written reads as torn, and is left out); no feature is decoded."""
    with open(path, "rb") as fh:
        frames = whole_frames(fh.read())
    requests: dict[str, int] = {}
    rows = 0
    for payload in frames[1:]:  # after the header
        request_id, k, parts, n = part_head(payload)
        rows = n if k == 0 else rows + n
        if k == parts - 1:
            requests[request_id] = rows
    return requests
