"""What a source file gave last time, keyed on what says it is unchanged without reading it.

As DVC does, a file whose path, size, modification time (ns) and inode are those recorded is not
read or hashed again: its part (the canonical Parquet of its rows) and its raw hash are taken from
here, once the store is seen to still hold both. The key also holds how the file was read (its
partition values and any column types given), so a change there reads it again. A cache, not a
record: deleting the file only costs one full read. ``provenflow verify`` still hashes every part.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

# Changing how a file becomes a part (ingest.canonical) must change this, or old parts are reused.
VERSION = 1


class StatCache:
    def __init__(self, path: Path | None, trusted: bool = True) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        self.changed = False
        # Not trusted (`data-run --reread`): every file is read, and what is read is remembered.
        self.trusted = trusted
        if path is not None and path.exists():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text())
                if loaded.get("version") == VERSION:
                    self.entries = loaded["entries"]

    @staticmethod
    def key(url: str, stamp: tuple | None, how: object) -> str | None:
        if stamp is None:
            return None
        return json.dumps([url, list(stamp), how], sort_keys=True, default=str)

    def get(self, key: str | None) -> dict | None:
        return self.entries.get(key) if key and self.trusted else None

    def put(self, key: str | None, entry: dict) -> None:
        if key:
            self.entries[key] = entry
            self.changed = True

    def save(self) -> None:
        """Written whole through a rename: a reader sees the old cache or the new one, never half."""
        if self.path is None or not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".stat-cache-", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": VERSION, "entries": self.entries}, fh)
        os.replace(tmp, self.path)
