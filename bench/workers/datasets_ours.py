"""provenflow side of bench/datasets.py: hash, store and re-store one large file, timed in-process.

One repetition per call. Stores go into fresh folders under the current (scratch) folder; each
timed write is followed, untimed, by ``sync``, and so is each removal, so writeback of one step
does not slow the next. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

from provenflow.digest import Digest
from provenflow.storage.store import ContentStore


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def store(path: Path, folder: Path, fsync: bool) -> dict:
    """put_file into an empty store, then again (unchanged content) into the same store."""
    objects = ContentStore(str(folder), fsync=fsync)
    put_s, first = timed(lambda: objects.put_file(path))
    os.sync()
    readd_s, again = timed(lambda: objects.put_file(path))
    shutil.rmtree(folder)
    os.sync()
    return {"put_s": put_s, "created": first.created, "readd_s": readd_s, "readd_created": again.created}


def memory_hash_seconds(path: Path, sample: int = 64 * 1024 * 1024) -> float:
    """Seconds BLAKE3 (all cores) would take for the whole file if its bytes were already in this
    process's memory: the compute ceiling, no file, no page faults (best of 3 over a SAMPLE)."""
    with open(path, "rb") as fh:
        data = fh.read(sample)
    best = min(timed(lambda: Digest.of_bytes(data))[0] for _ in range(3))
    return best * path.stat().st_size / len(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, required=True)
    args = parser.parse_args()

    hash_s, _ = timed(lambda: Digest.of_file(args.file))
    result = {
        "version": metadata.version("provenflow"),
        "hash_s": hash_s,
        "memory_hash_s": memory_hash_seconds(args.file),
        "fsync": store(args.file, Path.cwd() / "store-fsync", fsync=True),
        "no_fsync": store(args.file, Path.cwd() / "store-no-fsync", fsync=False),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
