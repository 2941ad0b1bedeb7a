"""Credentials for a source URL, kept apart from the URL.

A URL is shown and recorded everywhere (Prefect's flow-run parameters, the ledger, run cards), so a
credential never travels inside one: ``split_url`` takes ``user:password@`` out of a URL, and
``storage_options`` hands the credential to fsspec beside the clean URL. Where no credential is given,
each filesystem's own environment applies: ``~/.netrc`` and proxy variables for HTTP(S), the AWS
variables and ``~/.aws/credentials`` for S3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from provenflow.errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    """A user name and a password (or a token alone, as the user), never printed."""

    username: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, userinfo: str) -> Credentials:
        """``user:password`` or ``token``, percent-decoded as in a URL."""
        user, colon, password = userinfo.partition(":")
        return cls(unquote(user), unquote(password) if colon else None)

    @classmethod
    def from_value(cls, value: object, where: str) -> Credentials:
        """A secret's value: ``"user:password"``, ``"token"`` or ``{"username": …, "password": …}``."""
        if isinstance(value, str) and value:
            user, colon, password = value.partition(":")  # as saved: not percent-encoded
            return cls(user, password if colon else None)
        if isinstance(value, dict) and value.get("username"):
            return cls(str(value["username"]), str(value["password"]) if value.get("password") else None)
        raise ConfigError(
            f"{where} holds no credentials; set its value to 'user:password', a token, "
            'or {"username": …, "password": …}'
        )

    def __str__(self) -> str:
        return f"{self.username}:***" if self.password is not None else "***"


def split_url(url: str) -> tuple[str, Credentials | None]:
    """The URL without its user-info, and the credentials that were in it (None if there were none)."""
    from provenflow.redact import userinfo_end

    if "://" not in url:
        return url, None
    scheme, _, rest = url.partition("://")
    at = userinfo_end(rest)  # any character in a password, even an unescaped '/', '?', '#' or '@'
    if at is None:
        return url, None
    return f"{scheme}://{rest[at + 1 :]}", Credentials.parse(rest[:at])


# Protocols whose URLs name a file storage_options can authenticate (a SQL source's URL is none).
FILE_PROTOCOLS = frozenset({"http", "https", "s3", "s3a", "ftp", "sftp", "ssh", "smb", "webdav", "file"})


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def storage_options(url: str, credentials: Credentials | None) -> dict:
    """fsspec options that authenticate URL (a clean one) with CREDENTIALS, or from the environment."""
    protocol = protocol_of(url)
    if protocol in ("http", "https"):
        # trust_env: aiohttp reads ~/.netrc (and proxy variables) for a request without credentials.
        options: dict = {"client_kwargs": {"trust_env": True}}
        if credentials:
            # Per request, not on the session: aiohttp then drops it on a redirect to another host.
            import warnings

            import aiohttp

            with warnings.catch_warnings():  # deprecated for aiohttp 4 (3.14 still takes it)
                warnings.simplefilter("ignore", DeprecationWarning)
                options["auth"] = aiohttp.BasicAuth(credentials.username, credentials.password or "")
        return options
    if credentials is None:
        return {}
    if protocol in ("s3", "s3a"):
        return {"key": credentials.username, "secret": credentials.password}
    if protocol in ("ftp", "sftp", "ssh", "smb", "webdav"):
        return {"username": credentials.username, "password": credentials.password}
    raise ConfigError(
        f"credentials cannot be given for {protocol}:// URLs here; configure them the way {protocol} "
        "reads them from the environment"
    )
