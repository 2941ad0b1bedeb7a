from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from provenflow.storage.store import ContentStore


class ArtifactStore(Block):
    """Where provenflow keeps datasets, models and code diffs: a content-addressed store on any fsspec URL.

    Example:
        ```python
        from provenflow.blocks.store import ArtifactStore

        store = ArtifactStore.load("BLOCK_NAME").get_store()
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow Artifact Store"
    _block_type_slug: ClassVar[str] = "provenflow-artifact-store"
    _description: ClassVar[str] = (
        "Content-addressed object store for provenflow (local folder or S3-compatible)."
    )

    url: str = Field(
        description="fsspec URL of the store root, e.g. /srv/provenflow/store or s3://bucket/provenflow."
    )
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph), if not AWS."
    )
    access_key_id: str | None = Field(default=None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    fsync: bool = Field(default=True, description="fsync local objects before renaming them into place.")

    def storage_options(self) -> dict:
        options: dict = {}
        if self.endpoint_url:
            options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        if self.access_key_id:
            options["key"] = self.access_key_id
        if self.secret_access_key:
            options["secret"] = self.secret_access_key.get_secret_value()
        return options

    def get_store(self) -> ContentStore:
        return ContentStore(self.url, fsync=self.fsync, storage_options=self.storage_options())
