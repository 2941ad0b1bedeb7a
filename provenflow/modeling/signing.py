"""Seals: proof that provenflow itself recorded a model version or a run's code, checked before
anything recorded is unpickled or executed.

A pickle runs code when it is loaded, and ``provenflow reproduce`` executes a run's recorded code;
the ledger and the store are writable by more people than should run code. So every model version
carries a seal over its name, version, content hash and format, and every run a seal over its code
identity (commit, diff hash, entry point, environment; provenflow.tracking.code_seal). The content
hashes (BLAKE3, checked on every read) tie the seals to the bytes.

Seals are Ed25519 signatures (``ed25519:KEYID:HEX``): the machines that record runs and models hold
the private key; model servers, deployments and reproducers need only the public key, so a
compromised serving pod can verify but not seal. Seals made before the move, HMAC-SHA256 under a
shared secret (``hmac-sha256:KEYID:HEX``), still verify when that secret is configured, for a
migration (SECURITY.md: "Moving to Ed25519"). Key texts:

    ed25519:<64 hex>          an Ed25519 private key (its seed); seals and verifies
    ed25519-public:<64 hex>   an Ed25519 public key; verifies only
    <64 hex>                  a legacy HMAC secret; seals (legacy) and verifies its own seals

The key, first found wins (see SECURITY.md for teams and rotation):

    PROVENFLOW_SIGNING_KEY          a key text, e.g. from a Kubernetes Secret
    PROVENFLOW_SIGNING_KEY_BLOCK    name of a Prefect Secret block holding a key text
    PROVENFLOW_SIGNING_KEY_FILE     a 0600 file; default ~/.config/provenflow/signing.key,
                                    created (Ed25519) on first sealing

``PROVENFLOW_VERIFY_KEYS`` (comma-separated key texts) adds keys that verify only: the old HMAC
secret during a migration, or a rotated-out public key. Verification never creates a key: a machine
without one refuses to load, rather than inventing one that matches nothing.
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

ALGORITHM = "ed25519"
LEGACY_ALGORITHM = "hmac-sha256"
PRIVATE_PREFIX = "ed25519:"
PUBLIC_PREFIX = "ed25519-public:"
# Domain separation: a seal can never be mistaken for a signature of something else under the same key.
DOMAIN = b"provenflow model seal v1\n"
KEY_BYTES = 32
NEW_KEY_HINT = (
    "a new key is made on first sealing in PROVENFLOW_SIGNING_KEY_FILE; `provenflow models public-key` "
    "prints its public half (ed25519-public:HEX) for servers"
)


def _key_id(material: bytes) -> str:
    return hashlib.sha256(b"provenflow key id\n" + material).hexdigest()[:12]


@dataclass(frozen=True)
class SigningKey:
    """A legacy shared HMAC secret: it seals (HMAC-SHA256) and verifies its own seals."""

    secret: bytes = field(repr=False)
    source: str  # where it came from, for messages (never the key itself)
    also_verify: tuple[Key, ...] = ()

    algorithm = LEGACY_ALGORITHM
    can_seal = True

    @property
    def id(self) -> str:
        """A short fingerprint that names the key in seals and messages; reveals nothing of it."""
        return _key_id(self.secret)

    def sign(self, message: bytes) -> str:
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def check(self, message: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(message), signature)

    def text(self) -> str:
        return self.secret.hex()

    def with_verify_keys(self, keys: tuple[Key, ...]) -> SigningKey:
        return SigningKey(self.secret, self.source, keys)


@dataclass(frozen=True)
class Ed25519Key:
    """An Ed25519 key: with its private half it seals; with the public half alone it only verifies."""

    public: bytes
    source: str
    private: bytes | None = field(default=None, repr=False)
    also_verify: tuple[Key, ...] = ()

    algorithm = ALGORITHM

    @property
    def id(self) -> str:
        return _key_id(self.public)

    @property
    def can_seal(self) -> bool:
        return self.private is not None

    @classmethod
    def generate(cls, source: str) -> Ed25519Key:
        return cls.from_private(secrets.token_bytes(KEY_BYTES), source)

    @classmethod
    def from_private(cls, seed: bytes, source: str) -> Ed25519Key:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(public, source, seed)

    def sign(self, message: bytes) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if self.private is None:
            raise SignatureError(
                f"this machine holds only the public key {self.id} ({self.source}): it verifies seals but "
                "cannot make them. Record runs and models on a machine with the private key"
            )
        return Ed25519PrivateKey.from_private_bytes(self.private).sign(message).hex()

    def check(self, message: bytes, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(bytes.fromhex(signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def text(self) -> str:
        """The key as configured: the private text when this machine has it."""
        return PRIVATE_PREFIX + self.private.hex() if self.private is not None else self.public_text()

    def public_text(self) -> str:
        return PUBLIC_PREFIX + self.public.hex()

    def public_only(self) -> Ed25519Key:
        return Ed25519Key(self.public, self.source, None, self.also_verify)

    def with_verify_keys(self, keys: tuple[Key, ...]) -> Ed25519Key:
        return Ed25519Key(self.public, self.source, self.private, keys)


Key = SigningKey | Ed25519Key


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


def seal_message(message: bytes, key: Key) -> str:
    """``ALGORITHM:KEYID:HEX``: the key id says which key to verify with after a rotation."""
    return f"{key.algorithm}:{key.id}:{key.sign(message)}"


def check_message(message: bytes, recorded: str, key: Key) -> str | None:
    """None when ``recorded`` is a seal of ``message`` under ``key`` or one of its verify-only keys;
    else why not: ``form`` (not a seal), ``key`` (no key here with its id) or ``mismatch``."""
    algorithm, _, rest = recorded.partition(":")
    key_id, _, signature = rest.partition(":")
    if algorithm not in (ALGORITHM, LEGACY_ALGORITHM) or not signature:
        return "form"
    for candidate in (key, *key.also_verify):
        if candidate.algorithm == algorithm and candidate.id == key_id:
            return None if candidate.check(message, signature) else "mismatch"
    return "key"


def seal(model: ModelIdentity, key: Key) -> str:
    return seal_message(model.message(), key)


def verify(model: ModelIdentity, recorded: str | None, key: Key) -> None:
    """Return quietly when ``recorded`` is ``model``'s seal under ``key``; else SignatureError."""
    if not recorded:
        raise SignatureError(
            f"model version {model.ref} ({model.hash[:12]}) has no seal: it was recorded before "
            "provenflow sealed models, or written outside provenflow. Refusing to unpickle it. Check the "
            f"model is the one you expect, then seal it with: provenflow models sign {model.ref}"
        )
    problem = check_message(model.message(), recorded, key)
    if problem == "form":
        algorithm = recorded.partition(":")[0]
        raise SignatureError(
            f"model version {model.ref} has a seal in an unknown form ({algorithm or recorded[:20]!r}); "
            f"expected {ALGORITHM}:KEYID:HEX. Refusing to unpickle it"
        )
    if problem == "key":
        raise SignatureError(
            f"model version {model.ref} was sealed with key {recorded.split(':')[1]}, but this machine's key "
            f"({key.source}) is {key.id}. Refusing to unpickle it; give this machine the key the trainers use "
            "(PROVENFLOW_SIGNING_KEY or PROVENFLOW_SIGNING_KEY_BLOCK, or the old one in PROVENFLOW_VERIFY_KEYS "
            "during a rotation; see SECURITY.md)"
        )
    if problem == "mismatch":
        raise SignatureError(
            f"model version {model.ref}: its seal does not match its name, version, hash {model.hash[:12]} "
            "and format, so its ledger record was changed after provenflow sealed it. Refusing to unpickle "
            "it; find out who changed the ledger, and restore the row or train the model again"
        )


def signing_key(create: bool = False) -> Key:
    """The configured key (with the verify-only keys of PROVENFLOW_VERIFY_KEYS); with ``create``, a new
    Ed25519 key file is made when none is configured or present."""
    from provenflow.settings import get_settings

    settings = get_settings()
    extra = tuple(
        parse_key(text, f"PROVENFLOW_VERIFY_KEYS[{i}]", verify_only=True)
        for i, text in enumerate(t for t in (settings.verify_keys or "").split(",") if t.strip())
    )
    return _configured_key(settings, create).with_verify_keys(extra)


def _configured_key(settings, create: bool) -> Key:
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


def parse_key(text: str, source: str, verify_only: bool = False) -> Key:
    """A key from its text (module docstring); ``source`` names where it came from, for messages.
    With ``verify_only``, a private Ed25519 key is kept as its public half."""
    text = text.strip()
    for prefix in (PRIVATE_PREFIX, PUBLIC_PREFIX):
        if text.startswith(prefix):
            try:
                raw = bytes.fromhex(text.removeprefix(prefix))
            except ValueError:
                raw = b""
            if len(raw) != KEY_BYTES:
                raise ConfigError(
                    f"the signing key from {source} is not {prefix}<{2 * KEY_BYTES} hex digits> "
                    f"({len(text)} characters); {NEW_KEY_HINT}"
                )
            if prefix == PUBLIC_PREFIX:
                return Ed25519Key(raw, source)
            key = Ed25519Key.from_private(raw, source)
            return key.public_only() if verify_only else key
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


def _from_block(name: str) -> Key:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, _sync=True).get()
    except Exception as exc:  # a missing block, an unreachable API: say which setting to fix
        raise ConfigError(
            f"cannot load the Prefect Secret block {name!r} named by PROVENFLOW_SIGNING_KEY_BLOCK "
            f"({type(exc).__name__}); create it in the Prefect UI with the key's hex digits"
        ) from None
    return parse_key(str(value), f"Prefect Secret block {name!r}")


def read_key_file(path: Path) -> Key:
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
        os.write(fd, (Ed25519Key.generate("new").text() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and never overwrites: a key that signed something is never lost
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
