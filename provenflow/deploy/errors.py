"""Errors of the deploy step, under provenflow's one hierarchy.

    ProvenflowError
    ├── ConfigError            a target configuration or image reference that cannot be deployed
    └── DeployError            the Kubernetes API refused or failed a request
        ├── ManifestInvalid    a manifest that breaks the official Kubernetes schema
        └── RolloutFailed      the rollout did not become ready; what was changed has been undone

Every message says what failed, the offending value, what was expected and how to fix it.
"""

from __future__ import annotations

from provenflow.errors import ConfigError, ProvenflowError

__all__ = ["ConfigError", "DeployError", "ManifestInvalid", "RolloutFailed"]


class DeployError(ProvenflowError):
    """A request to the Kubernetes API failed, or its answer was not what deploying needs."""


class ManifestInvalid(DeployError):
    """A manifest breaks the official schema of its kind; ``field`` is the dotted path at fault."""

    def __init__(self, message: str, *, kind: str, name: str, field: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.field = field


class RolloutFailed(DeployError):
    """The Deployment did not become ready.

    ``reason`` is the Kubernetes condition reason (e.g. ``ProgressDeadlineExceeded``) or ``Timeout``;
    ``rolled_back_to`` is the revision whose pod template was restored, or None when the objects this
    deploy created were deleted instead (``deleted`` names them).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        rolled_back_to: int | None = None,
        deleted: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.rolled_back_to = rolled_back_to
        self.deleted = deleted
