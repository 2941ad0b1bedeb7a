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
import statistics
import time
from importlib import metadata
from pathlib import Path

import blake3

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


def median_seconds(action, times: int = 3) -> float:
    return statistics.median(timed(action)[0] for _ in range(times))


def memory_hash_seconds(path: Path, threads: int) -> float:
    """Seconds BLAKE3 on THREADS threads takes over the whole file's bytes already in this process's
    memory: the compute ceiling, no file, no page faults (median of 3). One thread gives the rate
    of one core; all of them, what hashing can reach on this machine whatever the file path does."""
    data = path.read_bytes()
    return median_seconds(lambda: blake3.blake3(data, max_threads=threads).digest())


def read_seconds(path: Path) -> float:
    """Seconds to read the file out of the page cache in Digest.of_file's chunks, hashing nothing
    (median of 3): the copy the hash pays beside the hash itself."""
    from provenflow import digest

    buffer = bytearray(digest._CHUNK)

    def read_all() -> None:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buffer):
                pass

    return median_seconds(read_all)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, required=True)
    args = parser.parse_args()

    result = {
        "version": metadata.version("provenflow"),
        # The median of three, the first included: one hash of a ~30 ms file is within the noise.
        "hash_s": median_seconds(lambda: Digest.of_file(args.file)),
        "memory_hash_s": memory_hash_seconds(args.file, blake3.blake3.AUTO),
        "memory_hash_one_core_s": memory_hash_seconds(args.file, 1),
        "read_s": read_seconds(args.file),
        "fsync": store(args.file, Path.cwd() / "store-fsync", fsync=True),
        "no_fsync": store(args.file, Path.cwd() / "store-no-fsync", fsync=False),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
