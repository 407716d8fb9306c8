"""Swap the client's credentials for an account's, and take them out again afterwards (behaviour §3.7, §11).

Each function makes one pass over the header fields (mitmproxy `Headers.fields`, raw byte
pairs) and assigns the result once: every `headers[name]` lookup on a mitmproxy `Headers`
is itself a scan of all fields, and these run on every request.
"""

from __future__ import annotations

from typing import Protocol

from teamclaude.client_keys import Keyring
from teamclaude.gate import KEY_HEADER, holder_in

OAUTH_BETA = "oauth-2025-04-20"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", KEY_HEADER)

Fields = tuple[tuple[bytes, bytes], ...]

_CREDENTIALS = frozenset(name.encode() for name in CREDENTIAL_HEADERS)
_BETA = b"anthropic-beta"
_INJECTED = frozenset((b"authorization", b"x-api-key"))


class HeaderFields(Protocol):
    """What is used of `mitmproxy.http.Headers`: its raw fields, read and replaced whole."""

    fields: Fields


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _split_betas(raw_values: list[bytes]) -> list[str]:
    values: list[str] = []
    for raw in raw_values:
        header = raw.decode("utf-8", "surrogateescape")
        values.extend(part.strip() for part in header.split(",") if part.strip())
    return values


def _replace_credentials(headers: HeaderFields, name: bytes, value: str, betas) -> None:
    """Drop every client credential, add `name: value`, and rewrite `anthropic-beta` with
    `betas(list)` in the place of its first occurrence (appended when it was absent; dropped
    when `betas` leaves nothing)."""
    kept: list[tuple[bytes, bytes]] = []
    beta_values: list[bytes] = []
    beta_at: int | None = None
    beta_name = _BETA
    for field in headers.fields:
        lowered = field[0].lower()
        if lowered in _CREDENTIALS:
            continue
        if lowered == _BETA:
            if beta_at is None:
                beta_at, beta_name = len(kept), field[0]
            beta_values.append(field[1])
            continue
        kept.append(field)
    kept.append((name, _encode(value)))
    merged = betas(_split_betas(beta_values))
    if merged:
        beta = (beta_name, _encode(",".join(merged)))
        if beta_at is None:
            kept.append(beta)
        else:
            kept.insert(beta_at, beta)
    headers.fields = tuple(kept)


def strip_proxy_key(headers: HeaderFields, keys: Keyring) -> None:
    """Drop `x-teamclaude-key`, and `authorization` / `x-api-key` when they carry the proxy
    key or a client key (`gate.holder_in`, the test that accepts them), keeping the client's
    own tokens."""
    key_header = KEY_HEADER.encode()
    headers.fields = tuple(
        field for field in headers.fields
        if field[0].lower() != key_header
        and holder_in(field[0].decode("latin-1"), field[1].decode("utf-8", "surrogateescape"), keys) is None
    )


def _with_oauth_beta(betas: list[str]) -> list[str]:
    return betas if OAUTH_BETA in betas else [OAUTH_BETA, *betas]


def _without_oauth_beta(betas: list[str]) -> list[str]:
    return [beta for beta in betas if beta != OAUTH_BETA]


def apply_oauth(headers: HeaderFields, access_token: str) -> None:
    """Bearer token, and `oauth-2025-04-20` first in `anthropic-beta` unless already there."""
    _replace_credentials(headers, b"authorization", f"Bearer {access_token}", _with_oauth_beta)


def apply_api_key(headers: HeaderFields, api_key: str) -> None:
    """`x-api-key`, and the OAuth beta removed (the API refuses it with a key)."""
    _replace_credentials(headers, b"x-api-key", api_key, _without_oauth_beta)


def redact_injected(headers: HeaderFields, account: str) -> None:
    """Replace the injected credential in a stored flow with `<account:NAME>`."""
    marker = _encode(f"<account:{account}>")
    redacted: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for field in headers.fields:
        lowered = field[0].lower()
        if lowered in _INJECTED:
            if lowered in seen:
                continue
            seen.add(lowered)
            field = (field[0], marker)
        redacted.append(field)
    if seen:
        headers.fields = tuple(redacted)
