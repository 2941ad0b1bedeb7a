"""Asking a local HTTP endpoint whether it is up, without any HTTP library beyond the standard one."""

from __future__ import annotations

import urllib.error
import urllib.request


def answers_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers 200; False on any error, refusal or timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
