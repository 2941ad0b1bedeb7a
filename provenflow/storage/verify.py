"""Checking stored objects against their names: which are missing or corrupt, and who uses them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, StoreError
from provenflow.storage.references import referenced_hashes, users_of
from provenflow.storage.store import ContentStore
from provenflow.workspace import Workspace


@dataclass(frozen=True)
class Damage:
    hash: str
    problem: str  # missing | corrupt
    path: str
    used_by: list[str]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"checked": self.checked, "bytes": self.bytes, "damaged": [d.as_dict() for d in self.damaged]}


def damage_of(store: ContentStore, digest: str) -> str | None:
    """``missing``, ``corrupt`` (its bytes hash to something else), or None when intact."""
    try:
        store.check(Digest(digest))
    except IntegrityError:
        return "corrupt"
    except StoreError:
        return "missing"
    return None


def object_size(store: ContentStore, digest: str) -> int:
    try:
        return int(store.fs.size(store.path(Digest(digest))))
    except FileNotFoundError:
        return 0


def verify_store(
    workspace: Workspace,
    progress: Callable[[str, int], None] | None = None,
    hashes: Iterable[str] | None = None,
) -> VerifyReport:
    """Hash every object the ledger refers to (or the given ones); ``progress(hash, size)`` after each."""
    store = workspace.store
    if hashes is None:
        with workspace.ledger.reader() as session:
            hashes = referenced_hashes(session)
    report = VerifyReport()
    problems: dict[str, str] = {}
    for digest in sorted(hashes):
        size = object_size(store, digest)
        problem = damage_of(store, digest)
        if problem:
            problems[digest] = problem
        report.checked += 1
        report.bytes += size
        if progress:
            progress(digest, size)
    with workspace.ledger.reader() as session:
        users = users_of(session, problems)
    report.damaged = [
        Damage(h, problem, store.path(Digest(h)), users.get(h, [])) for h, problem in sorted(problems.items())
    ]
    return report


def mark_lineage(graph: dict, store: ContentStore) -> dict:
    """Add ``damage`` (None, missing or corrupt) to every node of a lineage graph that names a
    stored object (datasets, models, files, suites), checking each distinct object once."""
    seen: dict[str, str | None] = {}

    def visit(node: dict) -> None:
        if node.get("kind") != "run" and node.get("hash"):
            if node["hash"] not in seen:
                seen[node["hash"]] = damage_of(store, node["hash"])
            node["damage"] = seen[node["hash"]]
        for key in ("upstream", "downstream", "inputs", "outputs", "produced_by", "used_by"):
            for child in node.get(key, []) or []:
                visit(child)

    visit(graph["node"])
    for key in ("upstream", "downstream"):
        for child in graph[key]:
            visit(child)
    return graph
