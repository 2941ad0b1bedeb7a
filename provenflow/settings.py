"""provenflow's settings: the one place that reads the environment (prefix ``PROVENFLOW_``)."""

from __future__ import annotations

import os
import sys
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    server_port: int | None = Field(
        default=None,
        description="Port of the local Prefect server; defaults to one in 4200-4299 derived from the project "
        "folder, so two projects on one machine each get their own server.",
    )
    heartbeat_seconds: int = Field(
        default=30,
        ge=30,
        description="Seconds between a flow run's Prefect heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY for "
        "provenflow's commands); the crash automation ends a flow run after three missed ones.",
    )
    reports_port: int | None = Field(
        default=None,
        description="Port of the read-only report server; the Prefect server's port + 1 by default.",
    )
    store_fsync: bool = Field(
        default=True, description="fsync objects before they are renamed into place (durability)."
    )
    # An estimator path is imported, and importing runs a module's top-level code: only packages
    # named here are imported (a deployment parameter must not be a way to run any module).
    estimator_modules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("sklearn", "xgboost", "lightgbm"),
        description="Packages or modules an --estimator path may come from, comma-separated in the "
        "environment (e.g. sklearn,mypkg); a name allows itself and everything under it.",
    )

    @field_validator("estimator_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    # Bounded work from small inputs: a 1.9 MB CSV of 100,000 columns ran past 5 minutes.
    max_columns: int = Field(
        default=2000, ge=1, description="Most columns a data-run takes; a wider source is refused."
    )
    # Every file of a folder is a part: a stat-cache entry, a manifest entry and two ledger links per run.
    max_files: int = Field(
        default=10_000,
        ge=1,
        description="Most files a folder, glob or prefix source may hold; a larger one is refused "
        "before any file is read.",
    )
    max_expectations: int = Field(
        default=500,
        ge=1,
        description="Most Great Expectations expectations a data-run evaluates (~9 ms each); those "
        "beyond it are skipped with a notice (2,000 columns make a 4,004-expectation suite: 36 s).",
    )
    # A deployment's `source` is chosen by whoever launches it: its worker reads local files only
    # under these folders (provenflow.data.roots).
    source_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Folders a deployment's data-run may read local source files from, comma-separated "
        "in the environment; default: the project folder. Links are resolved before the check.",
    )

    @field_validator("source_roots", mode="before")
    @classmethod
    def _comma_separated_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    def source_roots_or_default(self) -> tuple[Path, ...]:
        return self.source_roots or (project_root(),)

    signing_key: SecretStr | None = Field(
        default=None,
        description="The signing key itself: ed25519:HEX (private: seals), ed25519-public:HEX (verifies "
        "only: servers, deployments, reproducers) or a legacy 64-hex HMAC secret. Takes precedence over "
        "signing_key_block and signing_key_file.",
    )
    reproduction_pins: Path | None = Field(
        default=None,
        description="Set by `provenflow reproduce` for the re-run: the dataset versions to pin "
        "(provenflow.tracking.pins).",
    )
    reproduction_runs: Path | None = Field(
        default=None,
        description="Set by `provenflow reproduce` for the re-run: where the re-run's run ids are written.",
    )
    verify_keys: str | None = Field(
        default=None,
        description="Comma-separated key texts that verify seals but never make them: the old HMAC secret "
        "while moving to Ed25519, or a rotated-out public key (SECURITY.md).",
    )
    signing_key_block: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding the model-signing key."
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="File holding the model-signing key (0600, created on first use); defaults to "
        "signing.key in the user's config folder ($XDG_CONFIG_HOME/provenflow or ~/.config/provenflow).",
    )

    @property
    def resolved_signing_key_file(self) -> Path:
        # Outside the project, the ledger and the store on purpose: write access to those must not
        # give the key (see SECURITY.md).
        config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
        return (self.signing_key_file or Path(config) / "provenflow" / "signing.key").expanduser()

    @property
    def cache_dir(self) -> Path:
        """The user's cache folder for provenflow ($XDG_CACHE_HOME/provenflow or ~/.cache/provenflow)."""
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "provenflow"

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
    def resolved_server_port(self) -> int:
        return self.server_port or 4200 + zlib.crc32(str(self.home_dir).encode()) % 100

    @property
    def project_id(self) -> str:
        """Who a local Prefect server belongs to: the project's state folder (kept in a server variable)."""
        return str(self.home_dir)

    @property
    def resolved_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.home_dir / 'ledger.db'}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str(self.home_dir / "store")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def refresh_prefect_settings() -> None:
    """Let an already imported Prefect see the environment as it is now (settings and logging)."""
    if "prefect" not in sys.modules:
        return
    import prefect.context
    from prefect.logging.configuration import setup_logging

    prefect.context.refresh_global_settings_context()
    setup_logging(incremental=False)
