"""Keeping credentials out of what provenflow records and prints: the one place that knows what a
credential looks like in text.

``redact`` masks them in anything shown or recorded (messages, the ledger, run cards);
``credential_in`` finds them in flow parameters, which provenflow refuses rather than masks,
because Prefect stores and shows a flow run's parameters as given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# scheme://…: where a URL starts; its user-info is found by userinfo_end
_URL = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s\"'<>]*)")


def userinfo_end(rest: str) -> int | None:
    """The index of the ``@`` that ends the user-info of a URL whose part after ``://`` is REST, or
    None when it has none.

    In a well-formed URL the user-info is inside the authority (before the first ``/``, ``?`` or
    ``#``). A password holding one of those unescaped (``user:a/b@host``) ends the authority early:
    the authority then reads ``user:a``, a "port" that is no number, and an ``@`` follows. Such a URL
    is no valid URL, so it is read the only way that makes sense of it: everything up to the last
    ``@`` is the user-info. (A token alone holding ``/``, ``https://ab/cd@host``, cannot be told from
    a path holding ``@``: percent-encode it.)"""
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at >= 0:
        return at
    authority = rest[:end]
    if ":" in authority and not authority.startswith("[") and not authority.rpartition(":")[2].isdigit():
        at = rest.rfind("@")
        if at > end:
            return at
    return None


def _mask_url(match: re.Match) -> str:
    rest = match["rest"]
    at = userinfo_end(rest)
    if at is None or rest[:at] == "***" or rest[:at].endswith(":***"):
        return match["scheme"] + rest  # nothing to hide, or masked already (SQLAlchemy's user:***@ kept)
    return match["scheme"] + "***" + rest[at:]


class _UrlUserinfo:
    """scheme://user:password@host or scheme://token@host, with any character in the password."""

    def search(self, text: str) -> re.Match | None:
        return next((m for m in _URL.finditer(text) if userinfo_end(m["rest"]) is not None), None)

    def sub(self, _replacement: str, text: str) -> str:
        return _URL.sub(_mask_url, text)


_URL_USERINFO = _UrlUserinfo()
# user:password@host without a scheme (a registry address, an scp-style target)
_BARE_USERINFO = re.compile(r"^(?P<keep>)[^\s/@:]+:[^\s/@]+(?=@[^\s/@]+$)")
# ?password=…, &token=…, presigned S3 URLs
_QUERY_SECRET = re.compile(
    r"(?P<keep>[?&](?:password|passwd|pwd|secret|token|access_token|api_key|apikey|sig|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#\s]+",
    re.IGNORECASE,
)
_KNOWN_SECRETS = re.compile(
    r"(?P<keep>)(?:-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b"  # GitHub tokens
    r"|\bglpat-[A-Za-z0-9_-]{20,}\b"  # GitLab tokens
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}\b)"  # Slack tokens
)
_PATTERNS = {
    "user-info (a user or password) in a URL": _URL_USERINFO,
    "user:password@ in an address": _BARE_USERINFO,
    "a credential in a URL's query": _QUERY_SECRET,
    "a private key or access token": _KNOWN_SECRETS,
}
# Keys of a mapping (an environment, storage options) whose values are secrets: PASSWORD, API_TOKEN,
# AWS_SECRET_ACCESS_KEY; not max_tokens or token_pattern (estimator parameters).
_SECRET_KEY = re.compile(
    r"(?:^|[_.-])(?:password|passwd|secret|token|api_?key|credentials?|secret_access_key|private_key)$",
    re.IGNORECASE,
)


def redact(text: str, *secrets: str | None) -> str:
    """The text with every credential in it replaced by ``***``: the user-info of URLs, credentials in
    query strings, well-known token formats, and each of SECRETS (values known to be secret)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _PATTERNS.values():
        text = pattern.sub(r"\g<keep>***", text)
    return text


def credential_in(value: Any, key: str | None = None) -> str | None:
    """What kind of credential VALUE holds (searched through lists and mappings), or None.

    KEY is the name the value is stored under: a non-empty value under a key such as
    ``PASSWORD`` or ``API_TOKEN`` (an environment for a container) counts as a credential.
    """
    if isinstance(value, str):
        if key is not None and value and _SECRET_KEY.search(key):
            return f"a value under {key!r}"
        return next((kind for kind, pattern in _PATTERNS.items() if pattern.search(value)), None)
    if isinstance(value, Mapping):
        found = (credential_in(v, str(k)) for k, v in value.items())
        return next((kind for kind in found if kind), None)
    if isinstance(value, (list, tuple, set)):
        return next((kind for kind in map(credential_in, value) if kind), None)
    return None


def refuse_credentials(flow: str, parameters: Mapping[str, Any]) -> None:
    """Raise ConfigError if a parameter of FLOW holds a credential (the message shows it masked)."""
    from provenflow.errors import ConfigError

    for name, value in parameters.items():
        kind = credential_in(value)
        if kind:
            shown = f" ({redact(value)!r})" if isinstance(value, str) else ""
            raise ConfigError(
                f"parameter {name!r} of flow {flow!r} holds {kind}{shown}, and Prefect stores and shows "
                "flow-run parameters as given; pass the URL without it and the credential through a "
                "Prefect Secret block (source_credentials=BLOCK) or the environment (~/.netrc, AWS_* "
                "variables); see 'Credentials' in the README"
            )
