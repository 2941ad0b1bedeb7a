"""``flow``: Prefect's flow decorator for provenflow's flows, refusing credentials in parameters.

Prefect stores a flow run's parameters as given and shows them in its UI, API and events, so no
parameter may carry a credential (a URL's user-info, a token, a password in an environment).
A parameter that does is refused twice: before the flow run is created, when a flow is called from
Python or the CLI (nothing reaches Prefect), and before the body runs, when the run was created by
a deployment, a schedule or an automation (it then fails with the reason and does not run).
"""

from __future__ import annotations

from typing import Any

from prefect.flows import Flow

from provenflow.flows import _heartbeats
from provenflow.redact import refuse_credentials

_heartbeats.install()  # no 1 s wait at the end of each flow run, heartbeats kept


class CredentialFreeFlow(Flow):
    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        # The engine calls this just before it creates the flow run in the API.
        refuse_credentials(self.name, parameters)
        return super().serialize_parameters(parameters)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        # The engine calls this before the body, for runs created elsewhere (deployments) too.
        refuse_credentials(self.name, parameters)
        return super().validate_parameters(parameters)

    def with_options(self, **options: Any) -> CredentialFreeFlow:
        copy = super().with_options(**options)  # Prefect builds a plain Flow: keep the guard
        copy.__class__ = CredentialFreeFlow
        return copy


def flow(**options: Any):
    """``prefect.flow(**options)`` for a provenflow flow."""
    return lambda fn: CredentialFreeFlow(fn=fn, **options)
