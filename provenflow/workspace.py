"""A workspace binds the two resources every run needs: the ledger and the content store."""

from __future__ import annotations

from dataclasses import dataclass

from provenflow.ledger.db import Ledger
from provenflow.settings import get_settings
from provenflow.storage.store import ContentStore

_open: dict[tuple[str, str, str], Workspace] = {}


@dataclass
class Workspace:
    ledger: Ledger
    store: ContentStore

    @classmethod
    def open(
        cls, ledger_url: str, store_url: str, fsync: bool = True, storage_options: dict | None = None
    ) -> Workspace:
        """One workspace per (ledger, store) pair per process, so engines are reused."""
        key = (ledger_url, store_url, repr(sorted((storage_options or {}).items())))
        if key not in _open:
            _open[key] = cls(
                Ledger(ledger_url), ContentStore(store_url, fsync=fsync, storage_options=storage_options)
            )
        return _open[key]

    @classmethod
    def default(cls) -> Workspace:
        settings = get_settings()
        settings.ensure_home()
        return cls.open(settings.resolved_ledger_url, settings.resolved_store_url, settings.store_fsync)


def close_all() -> None:
    for workspace in _open.values():
        workspace.ledger.dispose()
    _open.clear()
