"""Ed25519 seals (issue #19.1): machines that record hold the private key, servers and reproducers only
the public key, which verifies and cannot seal; HMAC seals stay verifiable during a migration."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import provenflow as pf
from provenflow.cli.main import app
from provenflow.errors import SignatureError
from provenflow.ledger import models as m
from provenflow.modeling import signing
from provenflow.modeling.signing import Ed25519Key, ModelIdentity, SigningKey
from provenflow.settings import get_settings
from provenflow.tracking import code_seal
from provenflow.workspace import Workspace

MODEL = ModelIdentity("churn", 3, "ab" * 32, "sklearn-pickle-v5")


def use_key(monkeypatch, text: str | None, verify: str | None = None) -> None:
    for name, value in (("PROVENFLOW_SIGNING_KEY", text), ("PROVENFLOW_VERIFY_KEYS", verify)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_a_new_key_file_is_ed25519_and_its_public_half_verifies_but_cannot_seal(project, monkeypatch):
    key = signing.signing_key(create=True)
    assert isinstance(key, Ed25519Key) and key.can_seal
    assert get_settings().resolved_signing_key_file.read_text().startswith("ed25519:")
    recorded = signing.seal(MODEL, key)
    assert recorded.startswith(f"ed25519:{key.id}:")

    use_key(monkeypatch, key.public_text())  # a model server, a deployment, a reproducer
    public = signing.signing_key()
    assert not public.can_seal and public.id == key.id
    signing.verify(MODEL, recorded, public)
    with pytest.raises(SignatureError, match=r"only the public key.*cannot make them"):
        signing.seal(MODEL, public)
    with pytest.raises(SignatureError, match="seal does not match"):
        signing.verify(ModelIdentity("churn", 4, MODEL.hash, MODEL.format), recorded, public)


def test_a_run_recorded_where_only_the_public_key_is_is_left_unsealed(project, monkeypatch):
    use_key(monkeypatch, Ed25519Key.generate("x").public_text())
    with pf.start("on-a-serving-pod") as run:
        pf.metric("x", 1.0)
    with Workspace.default().ledger.reader() as session:
        assert session.get(m.Run, run.id).code_seal is None


def test_hmac_seals_verify_during_the_migration_and_are_resealed(project, monkeypatch):
    """The team's old HMAC secret verifies what it sealed, next to the new Ed25519 key; `models sign
    --all` and `runs seal` move the seals to the new key, and then the old secret can go."""
    old = SigningKey(bytes(range(32)), "old")
    use_key(monkeypatch, old.text())
    with pf.start("trained-before") as run:  # recorded under the HMAC secret
        pf.metric("x", 1.0)
    with Workspace.default().ledger.reader() as session:
        assert session.get(m.Run, run.id).code_seal.startswith(f"hmac-sha256:{old.id}:")

    new = Ed25519Key.generate("new")
    use_key(monkeypatch, new.text(), verify=old.text())
    key = signing.signing_key()
    with Workspace.default().ledger.reader() as session:
        row = session.get(m.Run, run.id)
        code_seal.verify(code_seal.CodeIdentity.of(row), row.code_seal, key)  # still verifies
    done = CliRunner().invoke(app, ["runs", "seal", run.id])
    assert done.exit_code == 0 and "re-sealed" in done.output, done.output

    use_key(monkeypatch, new.public_text())  # the old secret removed everywhere
    with Workspace.default().ledger.reader() as session:
        row = session.get(m.Run, run.id)
        assert row.code_seal.startswith(f"ed25519:{new.id}:")
        code_seal.verify(code_seal.CodeIdentity.of(row), row.code_seal, signing.signing_key())


def test_runs_seal_refuses_a_changed_row_unless_replaced(project):
    with pf.start("x") as run:
        pf.metric("x", 1.0)
    with Workspace.default().ledger.transaction() as session:
        session.get(m.Run, run.id).parameters = {"changed": True}
    done = CliRunner().invoke(app, ["runs", "seal", run.id])
    message = str(done.exception)
    assert done.exit_code == 1 and "does not verify" in message and "--replace" in message
    done = CliRunner().invoke(app, ["runs", "seal", "--replace", run.id])
    assert done.exit_code == 0 and "replaced" in done.output


def test_public_key_command_prints_only_the_public_half(project):
    key = signing.signing_key(create=True)
    done = CliRunner().invoke(app, ["models", "public-key"])
    assert done.exit_code == 0 and done.output.strip() == key.public_text()
    assert key.private.hex() not in done.output
