"""Source credentials in Prefect Secret blocks: the flows get a block's name, never the secret.

A flow run's parameters are stored and shown by Prefect as given, so a data source's password goes
into a ``Secret`` block (encrypted in Prefect's database, masked in its UI and API) and the flow
takes the block's name (``source_credentials``). The block holds ``user:password``, a token, or
``{"username": …, "password": …}``.
"""

from __future__ import annotations

import re

from prefect.blocks.system import Secret

from provenflow.data.credentials import Credentials
from provenflow.errors import ConfigError


def _secret(block: str, purpose: str) -> object:
    try:
        return Secret.load(block).get()
    except ValueError as exc:
        raise ConfigError(
            f"no Secret block named {block!r} for {purpose} ({exc}); create it in the Prefect UI (Blocks → Secret)"
        ) from None


def load_credentials(block: str) -> Credentials:
    """The credentials in the Secret block named BLOCK."""
    return Credentials.from_value(_secret(block, "the source's credentials"), f"the Secret block {block!r}")


def secret_values(blocks: dict[str, str]) -> dict[str, str]:
    """{KEY: BLOCK} → {KEY: the value of the Secret block BLOCK}, e.g. a server's environment."""
    return {key: str(_secret(block, key)) for key, block in blocks.items()}


def credentials_block_name(dataset: str) -> str:
    """The Secret block the CLI keeps a dataset's source credentials in: one per dataset, so a later
    run, a retry from the UI or a retrain finds them again, and another dataset on the same host,
    with other credentials, never replaces them. The user name stays out of it: it may be a token."""
    return "provenflow-source-" + (re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-") or "dataset")


def keep_credentials(dataset: str, credentials: Credentials) -> str:
    """Save CREDENTIALS for DATASET's source in its Secret block; its name. Call it only once the
    source accepted them (``datasets.check_source``): refused credentials never replace good ones."""
    name = credentials_block_name(dataset)
    value = credentials.username + (f":{credentials.password}" if credentials.password is not None else "")
    Secret(value=value).save(name, overwrite=True)
    return name
