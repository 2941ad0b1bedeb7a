"""Garbage collection of the store: what a killed or failed run left behind.

Two kinds of garbage, both only once older than a grace period (by modification time), so a run
in flight is never hurt: staging files (``.tmp-*``) of writes that never finished, and objects no
ledger row refers to (provenflow.storage.references), e.g. the dataset a run stored before it was killed.
An object a run is about to record gets a fresh mtime when the run stores it (ContentStore), so
the grace period protects it too. Other files in the store (prediction logs, feedback segments, ...) are not touched, only
the staging files their writers left (``feedback/**/.tmp-*``, ``predictions/**/.tmp-*``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC

from sqlalchemy import func, select

from provenflow.ledger import models as m
from provenflow.storage.references import referenced_hashes
from provenflow.storage.store import TMP_PREFIX, ContentStore
from provenflow.workspace import Workspace

DEFAULT_GRACE_SECONDS = 3600.0
_OBJECT = re.compile(r"/objects/([0-9a-f]{2})/([0-9a-f]{62})$")


@dataclass(frozen=True)
class Garbage:
    path: str
    size: int
    kind: str  # tmp | orphan
    age_seconds: float
    digest: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class GcReport:
    grace_seconds: float
    dry_run: bool
    removed: list[Garbage] = field(default_factory=list)
    kept_young: int = 0  # garbage not yet old enough

    @property
    def bytes_freed(self) -> int:
        return sum(g.size for g in self.removed)

    def as_dict(self) -> dict:
        return {
            "grace_seconds": self.grace_seconds,
            "dry_run": self.dry_run,
            "removed": [g.as_dict() for g in self.removed],
            "bytes_freed": self.bytes_freed,
            "kept_young": self.kept_young,
        }


def parse_duration(text: str) -> float:
    """``0``, ``90s``, ``30m``, ``1h``, ``2d`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 0, 90s, 30m, 1h or 2d")
    value, unit = float(match[1]), match[2] or "s"
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _mtime(info: dict) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return None


# Folders beside the objects whose writers stage files as .tmp-NAME then rename them (feedback and
# prediction-log segments): only their staging files are gc's, never a segment.
STAGING_ONLY = ("feedback", "predictions")


def store_files(store: ContentStore) -> Iterator[tuple[str, int, float | None]]:
    """(path, size, mtime) of every file under the store's objects/ and tmp/ folders, and of the
    staging files under its feedback/ and predictions/ folders."""
    for folder in (f"{store.root}/objects", store.tmp_dir):
        if not store.fs.exists(folder):
            continue
        for path, info in store.fs.find(folder, detail=True).items():
            yield path, int(info.get("size") or 0), _mtime(info)
    for name in STAGING_ONLY:
        folder = f"{store.root}/{name}"
        if not store.fs.exists(folder):
            continue
        for path, info in store.fs.find(folder, detail=True).items():
            if path.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                yield path, int(info.get("size") or 0), _mtime(info)


def classify(path: str) -> tuple[str, str | None] | None:
    """('tmp', None) for a staging file, ('object', digest) for an object, None for anything else."""
    name = path.rsplit("/", 1)[-1]
    if name.startswith(TMP_PREFIX):
        return "tmp", None
    match = _OBJECT.search(path)
    return ("object", match[1] + match[2]) if match else None


def find_garbage(
    store: ContentStore,
    referenced: Callable[[], set[str]],
    grace_seconds: float,
    now: float,
    in_flight_since: float | None = None,
) -> tuple[list[Garbage], int]:
    """Staging files and unreferenced objects older than the grace period, and how many younger
    ones were spared. ``referenced`` is asked after the listing, so an object recorded while the
    store was being listed counts as referenced. An unreferenced object written after
    ``in_flight_since`` (the start of the oldest run still running) may be that run's pending
    output, however old: it is spared too."""
    files = [(path, size, mtime, classify(path)) for path, size, mtime in store_files(store)]
    refs = referenced()
    garbage: list[Garbage] = []
    young = 0
    for path, size, mtime, what in files:
        if what is None:
            continue
        kind, digest = what
        if kind == "object" and digest in refs:
            continue
        if mtime is None:  # a store that cannot tell an object's age: never guess
            continue
        age = now - mtime
        pending = kind == "object" and in_flight_since is not None and mtime >= in_flight_since
        if age < grace_seconds or pending:
            young += 1
            continue
        garbage.append(Garbage(path, size, "tmp" if kind == "tmp" else "orphan", age, digest))
    return garbage, young


def _still_old(store: ContentStore, garbage: Garbage, grace_seconds: float) -> bool:
    """Look again just before removing: a run may have stored the same content meanwhile."""
    try:
        mtime = _mtime(store.fs.info(garbage.path))
    except FileNotFoundError:
        return False
    return mtime is not None and time.time() - mtime >= grace_seconds


def collect(
    workspace: Workspace,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> GcReport:
    """Remove (or, with ``dry_run``, list) the store's garbage older than ``grace_seconds``;
    ``progress(done, total)`` after each removal."""
    store = workspace.store
    since = _oldest_running_start(workspace)
    garbage, young = find_garbage(store, lambda: _referenced(workspace), grace_seconds, time.time(), since)
    report = GcReport(grace_seconds, dry_run, kept_young=young)
    if dry_run:
        report.removed = garbage
        return report
    # Asked again just before removing: a run may have recorded one of them while we listed.
    recorded = _referenced(workspace, {g.digest for g in garbage if g.digest})
    for done, item in enumerate(garbage, 1):
        if item.digest not in recorded and _still_old(store, item, grace_seconds):
            _remove(store, item.path)
            report.removed.append(item)
        if progress:
            progress(done, len(garbage))
    return report


# Clocks of the run's host and of the store may differ by this much.
CLOCK_SKEW_SECONDS = 300.0


def _oldest_running_start(workspace: Workspace) -> float | None:
    """When the oldest run still recorded as running started (less the clock skew), or None."""
    with workspace.ledger.reader() as session:
        started = session.scalar(select(func.min(m.Run.started_at)).where(m.Run.state == "running"))
    if started is None:
        return None
    if started.tzinfo is None:  # SQLite hands back naive UTC
        started = started.replace(tzinfo=UTC)
    return started.timestamp() - CLOCK_SKEW_SECONDS


def _referenced(workspace: Workspace, among: set[str] | None = None) -> set[str]:
    with workspace.ledger.reader() as session:
        if among is None:
            return referenced_hashes(session)
        found: set[str] = set()
        chunk = sorted(among)
        for start in range(0, len(chunk), 500):  # bounded IN lists for every backend
            found |= referenced_hashes(session, chunk[start : start + 500])
        return found


def _remove(store: ContentStore, path: str) -> None:
    try:
        if store.local:
            os.chmod(path, 0o644)  # objects are read-only
        store.fs.rm_file(path)
    except FileNotFoundError:
        pass  # removed meanwhile by another gc
