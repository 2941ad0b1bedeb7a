"""The Python environment a run executed in: interpreter and the full installed package list."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from provenflow.digest import Digest


@dataclass(frozen=True)
class EnvironmentState:
    python: str
    platform: str
    packages: tuple[str, ...]  # sorted "name==version"

    @property
    def hash(self) -> str:
        return Digest.of_bytes("\n".join(self.packages).encode()).hex


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def environment_key(paths: list[str] | None = None) -> str:
    """The installed packages' state, in a few stats: installing, upgrading or removing a package
    adds or removes a ``*.dist-info`` (or an editable finder) in an import-path folder, which
    changes that folder's mtime. sys.path[0] is left out: the script's folder or the current one."""
    state = [sys.executable]
    for entry in sys.path[1:] if paths is None else paths:
        with contextlib.suppress(OSError):
            state.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
    return Digest.of_bytes("\n".join(state).encode()).hex


_memory: dict[str, EnvironmentState] = {}


def capture_environment(paths: list[str] | None = None, cache_dir: Path | None = None) -> EnvironmentState:
    """The interpreter and every installed package (PATHS: the import path, by default sys.path).

    Reading every package's metadata costs 0.2-0.46 s for ~190 packages, so the list is kept
    in memory and in CACHE_DIR (default: the user's cache folder) under ``environment_key``:
    it is read again only when packages change."""
    key = environment_key(paths)
    if key in _memory:
        return _memory[key]
    cache = (cache_dir or _cache_dir()) / f"environment-{key[:32]}.json"
    state = None
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        cached = json.loads(cache.read_text())
        if cached["key"] == key:
            state = EnvironmentState(cached["python"], cached["platform"], tuple(cached["packages"]))
    if state is None:
        state = _scan(paths)
        with contextlib.suppress(OSError):  # a read-only home still works, uncached
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({"key": key, **state.__dict__}))
            partial.replace(cache)
    _memory[key] = state
    return state


def _cache_dir() -> Path:
    from provenflow.settings import get_settings

    return get_settings().cache_dir


def _scan(paths: list[str] | None) -> EnvironmentState:
    packages = {}
    for dist in metadata.distributions(**({} if paths is None else {"path": paths})):
        name = dist.metadata.get("Name")
        if name:
            packages[_normalise(name)] = f"{_normalise(name)}=={dist.version}"
    return EnvironmentState(
        python=platform.python_version(),
        platform=f"{platform.system()}-{platform.machine()} ({sys.implementation.name})",
        packages=tuple(sorted(packages.values())),
    )


def diff_packages(recorded: list[str], current: list[str]) -> list[dict]:
    """Added, removed and changed packages between two ``name==version`` lists."""

    def as_map(items: list[str]) -> dict[str, str]:
        return dict(item.split("==", 1) for item in items if "==" in item)

    old, new = as_map(recorded), as_map(current)
    changes = []
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            change = "added" if name not in old else "removed" if name not in new else "changed"
            changes.append(
                {"package": name, "change": change, "recorded": old.get(name), "current": new.get(name)}
            )
    return changes
