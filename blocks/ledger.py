from __future__ import annotations

from typing import ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator
from sqlalchemy.engine import URL

from provenflow.ledger.db import Ledger


class LedgerDatabase(Block):
    """The ledger database: a SQLite file for one person, PostgreSQL for a team.

    Example:
        ```python
        from provenflow.blocks.ledger import LedgerDatabase

        ledger = LedgerDatabase.load("BLOCK_NAME").get_ledger()
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow Ledger Database"
    _block_type_slug: ClassVar[str] = "provenflow-ledger-database"
    _description: ClassVar[str] = "Connection to provenflow's metadata ledger (SQLite or PostgreSQL)."

    driver: Literal["sqlite", "postgresql"] = Field(default="postgresql", description="Database kind.")
    database: str = Field(description="Database name (PostgreSQL) or file path (SQLite).")
    host: str | None = Field(default=None, description="PostgreSQL host.")
    port: int = Field(default=5432, description="PostgreSQL port.")
    username: str | None = Field(default=None, description="PostgreSQL user.")
    password: SecretStr | None = Field(default=None, description="PostgreSQL password.")

    @model_validator(mode="after")
    def _needs_host(self) -> LedgerDatabase:
        if self.driver == "postgresql" and not self.host:
            raise ValueError("host: a PostgreSQL ledger needs a host")
        return self

    def url(self) -> str:
        """The SQLAlchemy URL, password included: hand it to an engine, never to a log."""
        if self.driver == "sqlite":
            return f"sqlite:///{self.database}"
        return URL.create(
            "postgresql+psycopg",
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            host=self.host,
            port=self.port,
            database=self.database,
        ).render_as_string(hide_password=False)

    def get_ledger(self) -> Ledger:
        return Ledger(self.url())
