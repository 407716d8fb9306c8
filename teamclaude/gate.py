"""Who may use the proxy and which paths bypass the pool (behaviour §3.2, §3.3). Pure functions."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

KEY_HEADER = "x-teamclaude-key"

# Paths that carry the client's own identity: forwarded untouched, no key, no account.
_PASS_THROUGH_EXACT = frozenset({"/v1/oauth/token"})
_PASS_THROUGH_PREFIXES = ("/api/oauth/", "/v1/code/")

_BROWSER_HEADERS = ("origin", "sec-fetch-site")
_KEY_HEADERS = (KEY_HEADER, "x-api-key", "authorization")


def header_values(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The values of the (lowercase) `names` present, as `headers.get` gives them.

    For a mitmproxy `Headers` this is one pass over its raw fields instead of a scan per
    name; repeated fields are folded with ", " as mitmproxy does. Any other mapping is
    asked name by name.
    """
    fields = getattr(headers, "fields", None)
    if fields is None:
        return {name: value for name in names if (value := headers.get(name)) is not None}
    wanted = {name.encode(): name for name in names}
    found: dict[str, list[bytes]] = {}
    for raw_name, raw_value in fields:
        name = wanted.get(raw_name.lower())
        if name is not None:
            found.setdefault(name, []).append(raw_value)
    return {name: b", ".join(values).decode("utf-8", "surrogateescape") for name, values in found.items()}


def is_pass_through(method: str, path: str) -> bool:
    if path in _PASS_THROUGH_EXACT:
        return method.upper() == "POST"
    return path.startswith(_PASS_THROUGH_PREFIXES)


def is_browser_request(headers: Mapping[str, str]) -> bool:
    """A browser page calling the proxy: refuse, so a web page cannot spend the pool."""
    values = header_values(headers, _BROWSER_HEADERS)
    if values.get("origin"):
        return True
    return values.get("sec-fetch-site", "").strip().lower() in ("cross-site", "same-site")


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """Every value the client may have put the proxy key in."""
    values = header_values(headers, _KEY_HEADERS)
    keys = [values.get(KEY_HEADER, ""), values.get("x-api-key", "")]
    scheme, _, token = values.get("authorization", "").partition(" ")
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
