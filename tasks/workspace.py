from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.settings import get_settings
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def open_workspace(ledger_block: str | None = None, store_block: str | None = None) -> Workspace:
    """The ledger and store named by blocks (flow parameters or settings), else the settings' URLs."""
    settings = get_settings()
    ledger_block = ledger_block or settings.ledger_block
    store_block = store_block or settings.store_block
    if not ledger_block and not store_block:
        return Workspace.default()
    settings.ensure_home()
    ledger_url, store_url, storage_options = settings.resolved_ledger_url, settings.resolved_store_url, None
    if ledger_block:
        from provenflow.blocks.ledger import LedgerDatabase

        ledger_url = LedgerDatabase.load(ledger_block).url()
    if store_block:
        from provenflow.blocks.store import ArtifactStore

        block = ArtifactStore.load(store_block)
        store_url, storage_options = block.url, block.storage_options()
    return Workspace.open(ledger_url, store_url, settings.store_fsync, storage_options)
