"""Content identity: BLAKE3 digests as a small value type."""

from __future__ import annotations

import mmap
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3

_HEX = re.compile(r"^[0-9a-f]{64}$")
# Below this size threading costs more than it saves.
_THREADED_FROM = 4 * 1024 * 1024
_WINDOW = 16 * 1024 * 1024  # a multiple of every page size
# Map each window's pages in one call rather than by a page fault per 64 KiB as BLAKE3 reads on:
# 10-25% faster hashing from the page cache (measured: 256 MiB, 30 interleaved runs). Linux only.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


@dataclass(frozen=True, order=True)
class Digest:
    """A BLAKE3-256 digest; ``str(d)`` is the 64-character hex form."""

    hex: str

    def __post_init__(self) -> None:
        if not _HEX.match(self.hex):
            raise ValueError(f"not a BLAKE3 hex digest: {self.hex!r} (expected 64 lowercase hex characters)")

    def __str__(self) -> str:
        return self.hex

    @property
    def short(self) -> str:
        """The 12-character prefix used in dataset refs (``name@<short>``)."""
        return self.hex[:12]

    @property
    def uri(self) -> str:
        return f"blake3:{self.hex}"

    @classmethod
    def of_bytes(cls, data: bytes | memoryview) -> Digest:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if len(data) >= _THREADED_FROM else 1)
        hasher.update(data)
        return cls(hasher.hexdigest())

    @classmethod
    def of_file(cls, path: str | os.PathLike, threads: int | None = None) -> Digest:
        """The file's digest over memory maps; THREADS defaults to all cores for files of 4 MiB and
        more (two threads over mmap hash at about the page cache's read rate here, one at ~65%).

        The file is mapped 16 MiB at a time rather than whole: a mapping's pages count in the
        process's resident memory, and a data-run must stay flat in memory for a 20 GB file (the
        windows cost no speed: measured in bench/datasets.py)."""
        path = Path(path)
        size = path.stat().st_size
        if size == 0:
            return cls.of_bytes(b"")
        if threads is None:
            threads = blake3.blake3.AUTO if size >= _THREADED_FROM else 1
        hasher = blake3.blake3(max_threads=threads)
        with open(path, "rb") as fh:

            def window(offset: int) -> mmap.mmap:
                return mmap.mmap(
                    fh.fileno(), min(_WINDOW, size - offset), _MAP_FLAGS, mmap.PROT_READ, offset=offset
                )

            if size <= _WINDOW:
                with window(0) as whole:
                    hasher.update(whole)
                return cls(hasher.hexdigest())
            # The next window is mapped while this one is hashed: mapping a window's pages costs about
            # as much as hashing them when the page cache holds 4 KiB pages (256 MiB: 28 ms to map,
            # 21 ms to hash on two cores), and one after the other they added up. 0.46 → 0.62 of
            # cat's read rate (bench/datasets.py, 256 MiB, 2 cores).
            # (A window left mapped by an error is unmapped when it is collected.)
            with ThreadPoolExecutor(1, thread_name_prefix="provenflow-map-ahead") as ahead:
                following = ahead.submit(window, 0)
                for offset in range(0, size, _WINDOW):
                    current = following.result()
                    if offset + _WINDOW < size:
                        following = ahead.submit(window, offset + _WINDOW)
                    with current:
                        hasher.update(current)
        return cls(hasher.hexdigest())
