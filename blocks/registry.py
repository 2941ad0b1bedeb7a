from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class ContainerRegistry(Block):
    """An OCI registry that model images are pushed to.

    Example:
        ```python
        from provenflow.blocks.registry import ContainerRegistry

        registry = ContainerRegistry.load("BLOCK_NAME")
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow Container Registry"
    _block_type_slug: ClassVar[str] = "provenflow-container-registry"
    _description: ClassVar[str] = (
        "OCI registry for provenflow's model images (any registry, e.g. one on-premises)."
    )

    url: str = Field(description="Registry host and port, e.g. registry.example.com or 127.0.0.1:5000.")
    namespace: str = Field(default="provenflow", description="Path under the registry that images go to.")
    username: str | None = Field(default=None, description="User to log in as, if the registry needs one.")
    password: SecretStr | None = Field(default=None, description="Password or token for that user.")

    def repository(self, model_name: str) -> str:
        return f"{self.url.rstrip('/')}/{self.namespace.strip('/')}/{model_name.lower()}"

    def auth_config(self) -> dict | None:
        if not self.username:
            return None
        return {
            "username": self.username,
            "password": self.password.get_secret_value() if self.password else "",
        }
