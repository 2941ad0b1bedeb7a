"""Model seals: the key (file, environment), what a seal covers, legacy versions and `models sign`."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from provenflow.cli.main import app
from provenflow.digest import Digest
from provenflow.errors import ConfigError, SignatureError
from provenflow.modeling import signing, training
from provenflow.modeling.signing import ModelIdentity, SigningKey, seal, verify
from provenflow.settings import get_settings
from provenflow.workspace import Workspace
from tests.conftest import REPO
from tests.faults.test_unsigned_models import record_model

KEY = SigningKey(bytes(range(32)), "a test key")
MODEL = ModelIdentity("churn", 3, "ab" * 32, training.MODEL_FORMAT)


def test_a_seal_covers_name_version_hash_and_format():
    recorded = seal(MODEL, KEY)
    assert recorded.startswith(f"hmac-sha256:{KEY.id}:")
    verify(MODEL, recorded, KEY)
    for changed in (
        ModelIdentity("churn2", 3, MODEL.hash, MODEL.format),
        ModelIdentity("churn", 4, MODEL.hash, MODEL.format),
        ModelIdentity("churn", 3, "cd" * 32, MODEL.format),
        ModelIdentity("churn", 3, MODEL.hash, "other"),
    ):
        with pytest.raises(SignatureError, match="does not match"):
            verify(changed, recorded, KEY)
    other = SigningKey(bytes(32), "another key")
    with pytest.raises(SignatureError, match=f"sealed with key {KEY.id}.*is {other.id}"):
        verify(MODEL, recorded, other)
    with pytest.raises(SignatureError, match=r"no seal.*provenflow models sign churn@3"):
        verify(MODEL, None, KEY)


def test_key_file_is_made_once_with_mode_0600(project, tmp_path, monkeypatch):
    path = tmp_path / "keys" / "signing.key"
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY_FILE", str(path))
    get_settings.cache_clear()
    with pytest.raises(SignatureError, match="no model-signing key"):
        signing.signing_key()  # verifying never invents a key
    assert not path.exists()
    with ThreadPoolExecutor(8) as pool:  # concurrent first use: one key wins, all see it
        ids = set(pool.map(lambda _: signing.signing_key(create=True).id, range(16)))
    assert len(ids) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temporary files left
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}"):
        signing.signing_key()


def test_key_from_the_environment_wins_and_is_never_echoed(project, monkeypatch):
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY", KEY.secret.hex())
    get_settings.cache_clear()
    assert signing.signing_key().id == KEY.id
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY", "hunter2-not-hex")
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as caught:
        signing.signing_key()
    assert "hunter2" not in str(caught.value) and "64 hex digits" in str(caught.value)


def test_the_default_key_lives_outside_the_project_ledger_and_store(project):
    path = get_settings().resolved_signing_key_file
    assert path == get_settings().resolved_signing_key_file.expanduser()
    assert project not in path.parents and path.name == "signing.key"


def test_versions_recorded_before_seals_are_refused_until_signed(project):
    """Migration 0005 leaves older versions unsealed: they load only after `provenflow models sign`."""
    workspace = Workspace.default()
    ref = record_model(workspace)
    with sqlite3.connect(project / ".provenflow" / "ledger.db") as db:
        db.execute("UPDATE model_versions SET seal = NULL")  # what a version from before 0005 looks like
    with workspace.ledger.reader() as session:
        from provenflow.ledger.refs import resolve_model

        version = resolve_model(session, ref)
    with pytest.raises(SignatureError, match=f"provenflow models sign {ref}"):
        training.load_model(workspace.store, version)
    done = CliRunner().invoke(app, ["models", "sign", ref])
    assert done.exit_code == 0, done.output
    assert "sealed" in done.output
    with workspace.ledger.reader() as session:
        assert training.load_model(workspace.store, resolve_model(session, ref)).predict is not None
    again = CliRunner().invoke(app, ["models", "sign", "--all", "--json"])
    assert '"already sealed"' in again.output
    shown = CliRunner().invoke(app, ["models", "show", ref])
    assert "sealed by key" in shown.output, shown.output


def test_sign_refuses_a_changed_row_and_a_corrupt_object(project):
    workspace = Workspace.default()
    ref = record_model(workspace)
    with sqlite3.connect(project / ".provenflow" / "ledger.db") as db:
        db.execute("UPDATE model_versions SET format = 'changed'")
    cli = [sys.executable, "-c", "from provenflow.cli.main import run; run()"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([*cli, "models", "sign", ref], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "--replace" in done.stderr and "Traceback" not in done.stderr
    with workspace.ledger.reader() as session:
        from provenflow.ledger.refs import resolve_model

        path = workspace.store.path(Digest(resolve_model(session, ref).hash))
    with open(path, "ab") as f:
        f.write(b"x")
    done = subprocess.run(
        [*cli, "models", "sign", "--replace", ref], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "corrupt" in done.stderr, done.stderr


def test_key_rotation_reseals_what_the_previous_key_sealed(project, tmp_path, monkeypatch):
    workspace = Workspace.default()
    ref = record_model(workspace)
    old_file = get_settings().resolved_signing_key_file
    new_file = tmp_path / "new.key"
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY_FILE", str(new_file))
    get_settings.cache_clear()
    signing.signing_key(create=True)
    with workspace.ledger.reader() as session:
        from provenflow.ledger.refs import resolve_model

        with pytest.raises(SignatureError, match="sealed with key"):
            training.load_model(workspace.store, resolve_model(session, ref))
    done = CliRunner().invoke(app, ["models", "sign", "--all", "--previous-key-file", str(old_file)])
    assert done.exit_code == 0 and "re-sealed" in done.output, done.output
    with workspace.ledger.reader() as session:
        assert training.load_model(workspace.store, resolve_model(session, ref)) is not None


def test_migration_0005_adds_the_seal_and_leaves_older_versions_unsealed(ledger_url, project):
    """A ledger at 0004 with a model version upgrades in place; the old version has no seal."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from provenflow.ledger import db

    engine = create_engine(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        conn.execute(
            text(
                "INSERT INTO model_versions (name, version, hash, uri, format, size, created_at) "
                "VALUES ('old', 1, :h, 'x', 'sklearn-pickle-v5', 1, CURRENT_TIMESTAMP)"
            ),
            {"h": "ab" * 32},
        )
    engine.dispose()
    ledger = db.Ledger(ledger_url)
    with ledger.reader() as session:
        from provenflow.ledger import models as m

        (row,) = session.query(m.ModelVersion).all()
        assert row.ref == "old@1" and row.seal is None
    ledger.dispose()


def test_key_from_a_prefect_secret_block(project, prefect_api, monkeypatch):
    """What a team with a shared ledger uses: the same key on every worker, from a Secret block."""
    from prefect.blocks.system import Secret

    Secret(value=KEY.secret.hex()).save("provenflow-test-signing-key", overwrite=True)
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY_BLOCK", "provenflow-test-signing-key")
    get_settings.cache_clear()
    key = signing.signing_key()
    assert key.id == KEY.id and "provenflow-test-signing-key" in key.source
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY_BLOCK", "no-such-block")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="no-such-block"):
        signing.signing_key()
