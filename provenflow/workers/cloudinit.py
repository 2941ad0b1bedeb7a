"""Cloud-init for worker VMs, delivered through vSphere guestinfo.

``render_user_data`` fills the template (``infra/cloud-init/worker-user-data.yaml`` by default, a
``string.Template``) for one VM; ``guestinfo`` turns user data and metadata into the extraConfig keys that
cloud-init's VMware datasource reads (``guestinfo.userdata`` / ``guestinfo.metadata``, base64, with their
``.encoding`` keys); ``decode_guestinfo`` reverses it.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Mapping
from pathlib import Path

import yaml

from provenflow.errors import ConfigError

USERDATA, METADATA = "guestinfo.userdata", "guestinfo.metadata"


def _plain(field: str, value: str) -> str:
    """A value safe on one line of a systemd EnvironmentFile, a shell script and a YAML comment."""
    if any(c in value for c in "\n\r'\"\\`$") or not value.isprintable():
        raise ConfigError(
            f"{field}: {value!r} contains a quote, backslash, dollar sign or line break; "
            "worker VMs get it through a shell-readable file: use a value without them"
        )
    return value


def render_user_data(
    template: Path,
    *,
    hostname: str,
    work_pool: str,
    prefect_api_url: str,
    project_source: str | None = None,
    wheelhouse_url: str | None = None,
    ssh_authorized_keys: tuple[str, ...] = (),
) -> str:
    """The cloud-config of one worker VM; raises ConfigError for a missing template or a bad value."""
    try:
        text = template.read_text()
    except OSError as error:
        raise ConfigError(
            f"cannot read the cloud-init template {template}: {error.strerror}; "
            "set cloud_init_template on the worker pool to a readable file"
        ) from None
    values = {
        "hostname": _plain("hostname", hostname),
        "work_pool": _plain("work_pool", work_pool),
        "prefect_api_url": _plain("prefect_api_url", prefect_api_url),
        "project_source": _plain("project_source", project_source or ""),
        "wheelhouse_url": _plain("wheelhouse_url", wheelhouse_url or ""),
    }
    values.update({f"{k}_q": f"'{v}'" for k, v in list(values.items())})
    values["work_pool_systemd"] = f'"{values["work_pool"]}"'
    keys = [_plain("ssh_authorized_keys", key.strip()) for key in ssh_authorized_keys if key.strip()]
    values["ssh_keys_block"] = (
        "ssh_authorized_keys:\n" + "".join(f"  - {json.dumps(key)}\n" for key in keys) if keys else ""
    ).rstrip("\n")
    try:
        rendered = string.Template(text).substitute(values)
    except (KeyError, ValueError) as error:
        raise ConfigError(
            f"the cloud-init template {template} has an unknown or malformed placeholder ({error}); "
            f"known: {', '.join(sorted(values))} (write $$ for a dollar sign)"
        ) from None
    if not rendered.startswith("#cloud-config\n"):
        raise ConfigError(f"the cloud-init template {template} must start with a '#cloud-config' line")
    try:
        yaml.safe_load(rendered)
    except yaml.YAMLError as error:
        raise ConfigError(
            f"the cloud-init template {template} does not render to valid YAML: {error}"
        ) from None
    return rendered


def render_metadata(hostname: str) -> str:
    """Cloud-init instance metadata: one instance id and host name per VM (JSON)."""
    return json.dumps({"instance-id": hostname, "local-hostname": hostname}, sort_keys=True)


def guestinfo(user_data: str, metadata: str) -> dict[str, str]:
    """The extraConfig keys cloud-init's VMware datasource reads."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode("ascii")

    return {
        USERDATA: b64(user_data),
        f"{USERDATA}.encoding": "base64",
        METADATA: b64(metadata),
        f"{METADATA}.encoding": "base64",
    }


def decode_guestinfo(extra_config: Mapping[str, str]) -> tuple[str, str]:
    """(user data, metadata) from a VM's extraConfig, undoing the declared encoding."""

    def read(key: str) -> str:
        value = extra_config[key]
        encoding = extra_config.get(f"{key}.encoding", "")
        if encoding in ("base64", "b64"):
            return base64.b64decode(value).decode()
        if encoding in ("gzip+base64", "gz+b64"):
            import gzip

            return gzip.decompress(base64.b64decode(value)).decode()
        return value

    return read(USERDATA), read(METADATA)
