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
from provenflow.store import ContentStore


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", type=Path, required=True)
    args = parser.parse_args()

    hash_s, _ = timed(lambda: Digest.of_file(args.file))
    result = {
        "version": metadata.version("provenflow"),
        "hash_s": hash_s,
        "fsync": store(args.file, Path.cwd() / "store-fsync", fsync=True),
        "no_fsync": store(args.file, Path.cwd() / "store-no-fsync", fsync=False),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
