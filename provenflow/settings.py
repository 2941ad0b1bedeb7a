"""provenflow's settings: the one place that reads the environment (prefix ``PROVENFLOW_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from provenflow.project import project_root


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVENFLOW_", extra="ignore")

    home: Path | None = Field(
        default=None,
        description="Project-local state folder; defaults to .provenflow/ at the project root.",
    )
    ledger_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger; defaults to a SQLite file in the home folder.",
    )
    store_url: str | None = Field(
        default=None,
        description="fsspec URL of the content-addressed store; defaults to store/ in the home folder.",
    )
    ledger_block: str | None = Field(
        default=None, description="Name of a provenflow-ledger-database block to use instead of ledger_url."
    )
    store_block: str | None = Field(
        default=None, description="Name of a provenflow-artifact-store block to use instead of store_url."
    )
    server_host: str = Field(default="127.0.0.1", description="Host of the local Prefect server.")
    server_port: int = Field(default=4200, description="Port of the local Prefect server.")
    heartbeat_seconds: int = Field(
        default=30,
        ge=30,
        description="Seconds between a flow run's Prefect heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY for "
        "provenflow's commands); the crash automation ends a flow run after three missed ones.",
    )
    store_fsync: bool = Field(
        default=True, description="fsync objects before they are renamed into place (durability)."
    )

    @property
    def home_dir(self) -> Path:
        return (self.home or project_root() / ".provenflow").resolve()

    def ensure_home(self) -> Path:
        """Create the home folder with a .gitignore, so local state never counts as uncommitted code."""
        home = self.home_dir
        home.mkdir(parents=True, exist_ok=True)
        ignore = home / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# provenflow's local state (ledger, store, Prefect server)\n*\n")
        return home

    @property
    def resolved_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.home_dir / 'ledger.db'}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str(self.home_dir / "store")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
