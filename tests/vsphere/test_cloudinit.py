"""Cloud-init for worker VMs: the template renders to valid cloud-config, values are checked, guestinfo round-trips."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from provenflow.errors import ConfigError
from provenflow.workers.cloudinit import decode_guestinfo, guestinfo, render_metadata, render_user_data
from provenflow.workers.config import DEFAULT_CLOUD_INIT_TEMPLATE


def _render(**overrides) -> str:
    values = dict(hostname="gpu-worker-007", work_pool="ml gpu", prefect_api_url="http://10.1.2.3:4200/api",
                  project_source="http://files.internal/provenflow-0.1.0.tar.gz",
                  wheelhouse_url="http://files.internal/wheels/", ssh_authorized_keys=("ssh-ed25519 AAAAC3 ops@site",))  # fmt: skip
    values.update(overrides)
    return render_user_data(DEFAULT_CLOUD_INIT_TEMPLATE, **values)


def test_template_renders_a_cloud_config_that_starts_a_prefect_worker():
    text = _render()
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["hostname"] == "gpu-worker-007"
    assert document["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3 ops@site"]
    files = {f["path"]: f["content"] for f in document["write_files"]}
    env = files["/etc/provenflow/worker.env"]
    assert "PREFECT_API_URL='http://10.1.2.3:4200/api'" in env
    assert "PROVENFLOW_WHEELHOUSE_URL='http://files.internal/wheels/'" in env
    unit = files["/etc/systemd/system/provenflow-worker.service"]
    assert 'ExecStart=/opt/provenflow/venv/bin/provenflow pools worker "ml gpu" --name %H' in unit
    assert "EnvironmentFile=/etc/provenflow/worker.env" in unit and "Restart=always" in unit
    assert "--no-index --find-links" in files["/usr/local/sbin/provenflow-install"]
    assert ["systemctl", "enable", "--now", "provenflow-worker.service"] in document["runcmd"]
    assert "${" not in text


@pytest.mark.parametrize("field", ["work_pool", "prefect_api_url", "project_source"])
def test_values_that_would_break_the_shell_are_refused(field):
    with pytest.raises(ConfigError, match=field):
        _render(**{field: "x'; rm -rf / #"})


def test_a_missing_or_broken_template_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the cloud-init template"):
        render_user_data(
            tmp_path / "absent.yaml", hostname="a", work_pool="p", prefect_api_url="http://x/api"
        )
    broken = tmp_path / "broken.yaml"
    broken.write_text("#cloud-config\nhostname: ${hostname}\npool: ${no_such_value}\n")
    with pytest.raises(ConfigError, match="unknown or malformed placeholder"):
        render_user_data(broken, hostname="a", work_pool="p", prefect_api_url="http://x/api")


def test_guestinfo_keys_are_base64_with_their_encoding_and_round_trip():
    keys = guestinfo("#cloud-config\n", render_metadata("w-001"))
    assert set(keys) == {"guestinfo.userdata", "guestinfo.userdata.encoding", "guestinfo.metadata",
                         "guestinfo.metadata.encoding"}  # fmt: skip
    assert keys["guestinfo.userdata.encoding"] == keys["guestinfo.metadata.encoding"] == "base64"
    assert base64.b64decode(keys["guestinfo.userdata"]) == b"#cloud-config\n"
    user_data, metadata = decode_guestinfo(keys)
    assert user_data == "#cloud-config\n"
    assert json.loads(metadata) == {"instance-id": "w-001", "local-hostname": "w-001"}
