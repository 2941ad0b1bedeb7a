"""Model seals: proof that provenflow itself recorded a model version, checked before unpickling.

A pickle runs code when it is loaded, and the ledger and the store are writable by more people
than should run code in a model server. So every model version carries a seal: HMAC-SHA256, under
a key kept outside the ledger and the store, over a canonical encoding of its name, version,
content hash and format. The content hash (BLAKE3, checked on every read) ties the seal to the
bytes. Whoever can write the ledger and the store but cannot read the key can no longer make a
loader unpickle bytes of their choosing: a changed hash, name, version or format breaks the seal.

The key, first found wins (see SECURITY.md for teams and rotation):

    PROVENFLOW_SIGNING_KEY          64 hex digits, e.g. from a Kubernetes Secret (shared workers)
    PROVENFLOW_SIGNING_KEY_BLOCK    name of a Prefect Secret block holding those digits
    PROVENFLOW_SIGNING_KEY_FILE     a 0600 file; default ~/.config/provenflow/signing.key,
                                    created on first signing

Verification uses ``hmac.compare_digest`` and never creates a key: a machine without the key
refuses to load, rather than inventing one that matches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from provenflow.errors import ConfigError, SignatureError

ALGORITHM = "hmac-sha256"
# Domain separation: a seal can never be mistaken for an HMAC of something else under the same key.
DOMAIN = b"provenflow model seal v1\n"
KEY_BYTES = 32
NEW_KEY_HINT = "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class SigningKey:
    secret: bytes = field(repr=False)
    source: str  # where it came from, for messages (never the key itself)

    @property
    def id(self) -> str:
        """A short fingerprint that names the key in seals and messages; reveals nothing of it."""
        return hashlib.sha256(b"provenflow key id\n" + self.secret).hexdigest()[:12]


class Sealable(Protocol):
    name: str
    version: int
    hash: str
    format: str


class Sealed(Sealable, Protocol):
    """A ledger row (or bundle metadata) that carries its seal."""

    seal: str | None


@dataclass(frozen=True)
class ModelIdentity:
    """What a seal covers."""

    name: str
    version: int
    hash: str
    format: str

    @classmethod
    def of(cls, model: Sealable) -> ModelIdentity:
        return cls(model.name, int(model.version), model.hash, model.format)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def message(self) -> bytes:
        fields = {"name": self.name, "version": self.version, "hash": self.hash, "format": self.format}
        return DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def seal(model: ModelIdentity, key: SigningKey) -> str:
    """``hmac-sha256:KEYID:HEX``: the key id says which key to verify with after a rotation."""
    mac = hmac.new(key.secret, model.message(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM}:{key.id}:{mac}"


def verify(model: ModelIdentity, recorded: str | None, key: SigningKey) -> None:
    """Return quietly when ``recorded`` is ``model``'s seal under ``key``; else SignatureError."""
    if not recorded:
        raise SignatureError(
            f"model version {model.ref} ({model.hash[:12]}) has no seal: it was recorded before "
            "provenflow sealed models, or written outside provenflow. Refusing to unpickle it. Check the "
            f"model is the one you expect, then seal it with: provenflow models sign {model.ref}"
        )
    algorithm, _, rest = recorded.partition(":")
    key_id, _, mac = rest.partition(":")
    if algorithm != ALGORITHM or not mac:
        raise SignatureError(
            f"model version {model.ref} has a seal in an unknown form ({algorithm or recorded[:20]!r}); "
            f"expected {ALGORITHM}:KEYID:HEX. Refusing to unpickle it"
        )
    if key_id != key.id:
        raise SignatureError(
            f"model version {model.ref} was sealed with key {key_id}, but this machine's key ({key.source}) "
            f"is {key.id}. Refusing to unpickle it; give this machine the key the trainers use "
            "(PROVENFLOW_SIGNING_KEY or PROVENFLOW_SIGNING_KEY_BLOCK; see SECURITY.md)"
        )
    if not hmac.compare_digest(seal(model, key), recorded):
        raise SignatureError(
            f"model version {model.ref}: its seal does not match its name, version, hash {model.hash[:12]} "
            "and format, so its ledger record was changed after provenflow sealed it. Refusing to unpickle "
            "it; find out who changed the ledger, and restore the row or train the model again"
        )


def signing_key(create: bool = False) -> SigningKey:
    """The configured key; with ``create``, a new key file is made when none is configured or present."""
    from provenflow.settings import get_settings

    settings = get_settings()
    if settings.signing_key is not None:
        return parse_key(settings.signing_key.get_secret_value(), "PROVENFLOW_SIGNING_KEY")
    if settings.signing_key_block:
        return _from_block(settings.signing_key_block)
    path = settings.resolved_signing_key_file
    if not path.exists():
        if not create:
            raise SignatureError(
                f"no model-signing key on this machine: {path} does not exist and neither "
                "PROVENFLOW_SIGNING_KEY nor PROVENFLOW_SIGNING_KEY_BLOCK is set. Refusing to unpickle "
                "unverified models; give this machine the key the trainers use (see SECURITY.md)"
            )
        try:
            _create_key_file(path)
        except OSError as exc:  # e.g. a worker with a read-only home: it should get the team's key anyway
            raise ConfigError(
                f"cannot create the model-signing key file {path} ({exc.strerror}); set "
                "PROVENFLOW_SIGNING_KEY_FILE to a writable place, or give this machine the team's key "
                "with PROVENFLOW_SIGNING_KEY or PROVENFLOW_SIGNING_KEY_BLOCK (see SECURITY.md)"
            ) from None
    return read_key_file(path)


def parse_key(text: str, source: str) -> SigningKey:
    """A key from its hex digits; ``source`` names where they came from, for messages."""
    text = text.strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < KEY_BYTES:
        # Never echo the value: it is meant to be a secret, even when it is a malformed one.
        raise ConfigError(
            f"the model-signing key from {source} is not at least {2 * KEY_BYTES} hex digits "
            f"({len(text)} characters); {NEW_KEY_HINT}"
        )
    return SigningKey(secret, source)


def _from_block(name: str) -> SigningKey:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, _sync=True).get()
    except Exception as exc:  # a missing block, an unreachable API: say which setting to fix
        raise ConfigError(
            f"cannot load the Prefect Secret block {name!r} named by PROVENFLOW_SIGNING_KEY_BLOCK "
            f"({type(exc).__name__}); create it in the Prefect UI with the key's hex digits"
        ) from None
    return parse_key(str(value), f"Prefect Secret block {name!r}")


def read_key_file(path: Path) -> SigningKey:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the model-signing key file {path} ({exc}); check the path") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the model-signing key file {path} is open to other users (mode {stat.filemode(mode)}); "
            f"run: chmod 600 {path}"
        )
    return parse_key(text, f"key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a new random key with mode 0600; when several processes race, the first one wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(KEY_BYTES) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and never overwrites: a key that signed something is never lost
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
