"""Swap the client's credentials for an account's, and take them out again afterwards (SPEC §3.7, §11)."""

from __future__ import annotations

from typing import Protocol

from teamclaude.gate import KEY_HEADER

OAUTH_BETA = "oauth-2025-04-20"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", KEY_HEADER)


class HeaderStore(Protocol):
    """The parts of `mitmproxy.http.Headers` used here (also satisfied by test doubles)."""

    def get_all(self, name: str) -> list[str]: ...
    def set_all(self, name: str, values: list[str]) -> None: ...
    def __contains__(self, name: object) -> bool: ...
    def __delitem__(self, name: str) -> None: ...
    def __setitem__(self, name: str, value: str) -> None: ...


def _beta_values(headers: HeaderStore) -> list[str]:
    values: list[str] = []
    for header in headers.get_all("anthropic-beta"):
        values.extend(part.strip() for part in header.split(",") if part.strip())
    return values


def _set_betas(headers: HeaderStore, values: list[str]) -> None:
    if values:
        headers.set_all("anthropic-beta", [",".join(values)])
    elif "anthropic-beta" in headers:
        del headers["anthropic-beta"]


def strip_client_credentials(headers: HeaderStore) -> None:
    for name in CREDENTIAL_HEADERS:
        if name in headers:
            del headers[name]


def apply_oauth(headers: HeaderStore, access_token: str) -> None:
    """Bearer token, and `oauth-2025-04-20` first in `anthropic-beta` unless already there."""
    strip_client_credentials(headers)
    headers["authorization"] = f"Bearer {access_token}"
    betas = _beta_values(headers)
    if OAUTH_BETA not in betas:
        betas.insert(0, OAUTH_BETA)
    _set_betas(headers, betas)


def apply_api_key(headers: HeaderStore, api_key: str) -> None:
    """`x-api-key`, and the OAuth beta removed (the API refuses it with a key)."""
    strip_client_credentials(headers)
    headers["x-api-key"] = api_key
    if "anthropic-beta" in headers:
        _set_betas(headers, [b for b in _beta_values(headers) if b != OAUTH_BETA])


def redact_injected(headers: HeaderStore, account: str) -> None:
    """Replace the injected credential in a stored flow with `<account:NAME>`."""
    marker = f"<account:{account}>"
    for name in ("authorization", "x-api-key"):
        if name in headers:
            headers[name] = marker
