"""The Python environment a run executed in: interpreter and the full installed package list."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

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


@lru_cache(maxsize=1)
def capture_environment() -> EnvironmentState:
    """Scanning site-packages costs ~50 ms, so it is done once per process."""
    packages = {}
    for dist in metadata.distributions():
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
