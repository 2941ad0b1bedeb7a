"""The one place that knows what a credential looks like: masking, finding, splitting (no services)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import provenflow.flows
from provenflow.data.credentials import Credentials, split_url, storage_options
from provenflow.errors import ConfigError
from provenflow.redact import credential_in, redact, refuse_credentials


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:pw@host/x.csv", "http://***@host/x.csv"),
        ("https://TOKEN@github.com/org/repo", "https://***@github.com/org/repo"),
        ("postgresql+psycopg://postgres:pw@127.0.0.1:5432/db", "postgresql+psycopg://***@127.0.0.1:5432/db"),
        ("s3://bucket/k.csv?X-Amz-Signature=abc&x=1", "s3://bucket/k.csv?X-Amz-Signature=***&x=1"),
        ("user:pw@registry.local:5000", "***@registry.local:5000"),
        ("key AKIAABCDEFGHIJKLMNOP in text", "key *** in text"),
        ("http://host/x.csv", "http://host/x.csv"),
        ("penguins@3", "penguins@3"),
    ],
)
def test_redact_masks_every_kind(text, shown):
    assert redact(text) == shown


def test_redact_masks_known_secret_values():
    assert redact("login failed for s3cr3t at host", "s3cr3t", None, "") == "login failed for *** at host"


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("http://u:p@h/x.csv", True),
        ("http://h/x.csv?token=abc", True),
        ({"PROVENFLOW_SERVE_TOKEN": "abc"}, True),
        ({"AWS_SECRET_ACCESS_KEY": "abc"}, True),
        (["ok", "ghp_" + "a" * 36], True),
        ({"max_tokens": 3, "token_pattern": r"\w+", "n_estimators": 10}, False),  # estimator parameters
        ({"PROVENFLOW_SERVE_TOKEN": ""}, False),
        ("127.0.0.1:5000", False),
        ("penguins@latest", False),
        (None, False),
    ],
)
def test_credential_in(value, found):
    assert bool(credential_in(value)) is found


def test_refusal_names_the_parameter_and_masks_the_value():
    with pytest.raises(ConfigError) as refused:
        refuse_credentials("data-run", {"name": "s", "source": "http://u:SECRET@h/x.csv"})
    assert "parameter 'source' of flow 'data-run'" in str(refused.value)
    assert "SECRET" not in str(refused.value) and "http://***@h/x.csv" in str(refused.value)


def test_split_url_takes_the_credentials_out():
    url, credentials = split_url("http://us%40er:p%3Aw@host:8080/x.csv?a=1")
    assert url == "http://host:8080/x.csv?a=1"
    assert credentials == Credentials("us@er", "p:w")
    assert "p:w" not in repr(credentials) and "p:w" not in str(credentials)
    assert split_url("data/x.csv") == ("data/x.csv", None)
    assert split_url("http://host/x.csv") == ("http://host/x.csv", None)


def test_storage_options_per_protocol():
    secret = Credentials("u", "p")
    options = storage_options("https://h/x.csv", secret)
    assert options["client_kwargs"]["trust_env"]
    assert options["auth"].login == "u" and options["auth"].password == "p"
    assert storage_options("http://h/x.csv", None) == {"client_kwargs": {"trust_env": True}}  # ~/.netrc
    assert storage_options("s3://b/k", secret) == {"key": "u", "secret": "p"}
    assert storage_options("s3://b/k", None) == {}  # AWS_* variables, ~/.aws/credentials
    with pytest.raises(ConfigError, match="gcs://"):
        storage_options("gcs://b/k", secret)


def test_secret_block_values():
    assert Credentials.from_value("u:p%41", "block") == Credentials("u", "p%41")  # as saved, not URL-encoded
    assert Credentials.from_value("token", "block") == Credentials("token", None)
    assert Credentials.from_value({"username": "u", "password": "p"}, "block") == Credentials("u", "p")
    with pytest.raises(ConfigError, match="holds no credentials"):
        Credentials.from_value("", "the Secret block 'x'")


def test_every_flow_refuses_credentials():
    """Each flow in flows/ is built by provenflow.flows._flow.flow, so none can take a credential as a parameter."""
    from prefect.flows import Flow

    from provenflow.flows._flow import CredentialFreeFlow

    found = []
    for module in pkgutil.iter_modules(provenflow.flows.__path__):
        loaded = importlib.import_module(f"provenflow.flows.{module.name}")
        found += [
            obj
            for obj in vars(loaded).values()
            if isinstance(obj, Flow) and obj.__module__ == loaded.__name__
        ]
    assert len(found) >= 9
    assert all(isinstance(f, CredentialFreeFlow) for f in found), [f.name for f in found]
    assert isinstance(found[0].with_options(retries=1), CredentialFreeFlow)


def test_prefect_yaml_holds_no_credential():
    """Deployment parameters are stored in Prefect as written; prefect.yaml must name blocks instead."""
    import yaml

    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        assert not credential_in(deployment.get("parameters") or {}), deployment["name"]
        for trigger in deployment.get("triggers") or []:
            assert not credential_in(trigger.get("parameters") or {}), deployment["name"]
