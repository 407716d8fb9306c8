"""Who may use the proxy and which paths bypass the pool (behaviour §3.2, §3.3). Pure functions."""

from __future__ import annotations

import base64
import re
import string
from collections.abc import Iterator, Mapping
from typing import Literal

from teamclaude.client_keys import Holder, Keyring

KEY_HEADER = "x-teamclaude-key"

# Paths that carry the client's own identity: forwarded untouched, no key, no account.
_PASS_THROUGH_EXACT = frozenset({"/v1/oauth/token"})
_PASS_THROUGH_PREFIXES = ("/api/oauth/", "/v1/code/")

# Claude Code warms its connection with a credential-less `HEAD /` (2.1.197) or
# `HEAD /api/hello` (2.1.332): answered locally with an empty 200.
_PRECONNECT_PATHS = frozenset({"/", "/api/hello"})
# Claude Code's own event logging (`/api/event_logging/batch`), see the `telemetry` setting.
TELEMETRY_PREFIX = "/api/event_logging/"
TelemetryMode = Literal["pass", "answer", "drop"]
TELEMETRY_MODES: tuple[TelemetryMode, ...] = ("pass", "answer", "drop")

_BROWSER_HEADERS = ("origin", "sec-fetch-site")
_KEY_HEADERS = (KEY_HEADER, "x-api-key", "authorization", "proxy-authorization")


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


def is_preconnect(method: str, path: str) -> bool:
    return method.upper() == "HEAD" and path in _PRECONNECT_PATHS


def telemetry_action(mode: TelemetryMode, path: str) -> TelemetryMode | None:
    """What to do with a request on `path` under the `telemetry` setting: None when it is not
    telemetry; "pass" routes it like any other request, "answer" gets a local `200 {}`, and
    "drop" closes the client's connection without an answer. Neither contacts upstream."""
    return mode if path.startswith(TELEMETRY_PREFIX) else None


def is_browser_request(headers: Mapping[str, str]) -> bool:
    """A browser page calling the proxy: refuse, so a web page cannot spend the pool."""
    values = header_values(headers, _BROWSER_HEADERS)
    if values.get("origin"):
        return True
    return values.get("sec-fetch-site", "").strip().lower() in ("cross-site", "same-site")


class BadPath(ValueError):
    """A request path that cannot be normalized unambiguously (refused with 400)."""


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-F]{2})")


def normalize_target(target: str) -> str:
    """The request target (`path?query`) with its path normalized as RFC 3986 §6.2.2 says:
    escaped unreserved characters decoded (`%2e` is `.`), other escapes upper-cased, dot
    segments removed, empty segments (`//`) collapsed. Pass-through and pooling are decided on
    this path, and it is the one forwarded upstream.

    Raises `BadPath` for what a server might read differently: a backslash, an escaped `/` or
    `\\`, a stray `%`, control characters or spaces, `..` above the root, no leading `/`.
    """
    path, separator, query = target.partition("?")
    if not path.startswith("/") or "\\" in path or any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise BadPath("the request path is not a plain absolute path")

    def unescape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    path = _ESCAPE.sub(unescape, path)
    if "%2F" in path or "%5C" in path or _STRAY_PERCENT.search(path):
        raise BadPath("the request path has an escaped slash or a stray %")
    segments: list[str] = []
    parts = path.split("/")[1:]
    for part in parts:
        if part == "..":
            if not segments:
                raise BadPath("the request path climbs above the root")
            segments.pop()
        elif part not in (".", ""):
            segments.append(part)
    trailing = parts[-1] in ("", ".", "..") and bool(segments)
    return "/" + "/".join(segments) + ("/" if trailing else "") + separator + query


def _key_in(name: str, value: str) -> str | None:
    """The key (proxy key or client key) a client may have put in this header field, if the field can hold one:
    the whole value of `x-teamclaude-key` / `x-api-key`, the token of `authorization: Bearer`
    or `proxy-authorization: Bearer` (any whitespace around and between, any case of the
    scheme), the password of `proxy-authorization: Basic` (a forward proxy's own credential)."""
    if name in (KEY_HEADER, "x-api-key"):
        return value.strip()
    if name in ("authorization", "proxy-authorization"):
        parts = value.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "bearer":
            return parts[1].strip()
        if len(parts) == 2 and parts[0].lower() == "basic" and name == "proxy-authorization":
            try:  # HTTPS_PROXY=http://teamclaude:KEY@host:port: the key is the password
                return base64.b64decode(parts[1].strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return None
    return None


def holder_in(name: str, value: str, keys: Keyring) -> Holder | None:
    """Whose key header field `name: value` carries (the proxy key or a client key), if any:
    the one notion of a match, for accepting a request and for taking the key out of it."""
    key = _key_in(name.lower(), value)
    return keys.holder(key) if key else None


def _key_fields(headers: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """Every field that may hold the key, one by one (repeated fields are not folded)."""
    fields = getattr(headers, "fields", None)
    if fields is None:
        for name in _KEY_HEADERS:
            value = headers.get(name)
            if value is not None:
                yield name, value
        return
    wanted = {name.encode() for name in _KEY_HEADERS}
    for raw_name, raw_value in fields:
        if raw_name.lower() in wanted:
            yield raw_name.decode("latin-1").lower(), raw_value.decode("utf-8", "surrogateescape")


def key_holder(headers: Mapping[str, str], keys: Keyring) -> Holder | None:
    """Who the request's key belongs to, None without an accepted key. Every presented field
    is checked; a client key names the client even beside the proxy key (the first one in
    header order when there are several)."""
    found: Holder | None = None
    for name, value in _key_fields(headers):
        holder = holder_in(name, value, keys)
        if holder is not None and (found is None or (found.client is None and holder.client is not None)):
            found = holder
    return found


def key_matches(headers: Mapping[str, str], keys: Keyring) -> bool:
    """Whether any presented field carries an accepted key (`key_holder`)."""
    return key_holder(headers, keys) is not None
