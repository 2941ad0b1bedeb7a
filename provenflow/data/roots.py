"""Which local files a worker's data-run may read: those under its allowed roots.

A deployment's parameters are chosen by whoever can launch it from the Prefect UI, and its worker
reads its ``source`` with the worker's own rights: without a bound, ``source=/etc/shadow`` (or a
link to it placed in the project) is ingested and shown by ``datasets show``. Local paths, ``file://``
URLs and the local parts of chained fsspec URLs (``simplecache::file:///…``) must resolve, links
followed, to a file under one of the roots (``PROVENFLOW_SOURCE_ROOTS``, default the project
folder). Remote URLs (HTTP, S3, …) are no worker file and pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from provenflow.errors import ConfigError

_LOCAL = ("file", "local")


def local_paths(source: str) -> list[str]:
    """The local file paths SOURCE names: itself when it is a path, the path of a ``file://`` URL,
    and every local part of a chained URL."""
    paths = []
    for part in source.split("::"):
        protocol, sep, rest = part.partition("://")
        if not sep:
            paths.append(part)
        elif protocol.lower() in _LOCAL:
            paths.append(rest)
    return paths


def check_local_source(source: str, roots: Sequence[Path]) -> None:
    """ConfigError (one line) unless every local file SOURCE names lies under one of ROOTS once its
    links are resolved (a link inside a root to a file outside it is refused)."""
    import glob

    resolved_roots = [Path(os.path.realpath(root)) for root in roots]
    named = [os.path.expanduser(p) for p in local_paths(source)]
    # A folder or a glob is read file by file: each file it holds, links resolved, must be inside too.
    expanded = [m for p in named if glob.has_magic(p) for m in glob.glob(p, recursive=True)]
    expanded += [str(f) for p in named if os.path.isdir(p) for f in Path(p).rglob("*")]
    for path in [*named, *expanded]:
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in resolved_roots):
            from provenflow.redact import redact

            shown = ", ".join(str(root) for root in resolved_roots) or "(none)"
            raise ConfigError(
                f"source {redact(source)!r} is outside the folders this worker reads sources from ({shown}); "
                "put the file under one of them, or list its folder in PROVENFLOW_SOURCE_ROOTS "
                "(comma-separated) in the worker's environment"
            )
