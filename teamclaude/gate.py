"""Who may use the proxy and which paths bypass the pool (SPEC §3.2, §3.3). Pure functions."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

KEY_HEADER = "x-teamclaude-key"

# Paths that carry the client's own identity: forwarded untouched, no key, no account.
_PASS_THROUGH_EXACT = frozenset({"/v1/oauth/token"})
_PASS_THROUGH_PREFIXES = ("/api/oauth/", "/v1/code/")


def is_pass_through(method: str, path: str) -> bool:
    if path in _PASS_THROUGH_EXACT:
        return method.upper() == "POST"
    return path.startswith(_PASS_THROUGH_PREFIXES)


def is_browser_request(headers: Mapping[str, str]) -> bool:
    """A browser page calling the proxy: refuse, so a web page cannot spend the pool."""
    if headers.get("origin"):
        return True
    return headers.get("sec-fetch-site", "").strip().lower() in ("cross-site", "same-site")


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """Every value the client may have put the proxy key in."""
    keys = [headers.get(KEY_HEADER, ""), headers.get("x-api-key", "")]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        keys.append(token.strip())
    return [key.strip() for key in keys if key.strip()]


def key_matches(headers: Mapping[str, str], proxy_key: str) -> bool:
    """Constant-time comparison of every presented key against the proxy key."""
    expected = proxy_key.encode()
    matched = False
    for key in presented_keys(headers):
        matched |= hmac.compare_digest(key.encode(), expected)
    return matched and bool(expected)
