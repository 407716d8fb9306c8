"""The serving account's UUID in `metadata.user_id` (issue 14). Pure functions, no I/O.

Claude Code puts the account UUID of its own login into `metadata.user_id`, either as a
JSON document in a string (`{"device_id":…,"account_uuid":…,"session_id":…}`) or, in older
versions, as `user_<hex>_account_<uuid>_session_<id>`. A pooled request carries another
account's token, so the UUID is replaced by the UUID of the account serving the attempt.

Only that one string value changes: the body is spliced, never re-serialized, so every byte
outside the value (key order, spacing, escapes, numbers, a UUID in message text) stays as
the client sent it. Every top-level `metadata` object's `user_id` is rewritten (a body with
duplicate keys gets them all rewritten, whichever one the API reads). A `user_id` of any
other form is left as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The older form; the account part is empty when Claude Code had no OAuth login.
_LEGACY = re.compile(r"user_[0-9a-fA-F]+_account_(?P<account>[0-9a-fA-F-]*)_session_[0-9A-Za-z-]+")

Status = Literal["absent", "same", "rewritten", "malformed"]

# Parses one JSON value at an offset (the C scanner) and returns (value, end).
_parse_at = json.JSONDecoder().raw_decode
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class _NotJson(Exception):
    pass


@dataclass(frozen=True)
class UserIdRewrite:
    """The body to send and what happened: `absent` (no `metadata.user_id`, or not a JSON
    object body), `same` (already this UUID), `rewritten`, or `malformed` (a `user_id` of
    an unknown form, left as it is)."""

    body: bytes
    status: Status


def rewrite_account_uuid(body: bytes, account_uuid: str) -> UserIdRewrite:
    """`body` with the account UUID in every top-level `metadata.user_id` set to `account_uuid`."""
    if not UUID.fullmatch(account_uuid):
        raise ValueError("account_uuid must be a UUID")
    text = _text(body)
    if text is None:
        return UserIdRewrite(body, "absent")
    try:
        spans = list(_user_id_spans(text))
    except _NotJson:
        return UserIdRewrite(body, "absent")
    if not spans:
        return UserIdRewrite(body, "absent")
    status: Status = "same"
    ascii_only = text.isascii()  # then character offsets are byte offsets
    pieces: list[bytes] = []
    done = 0
    for start, end in spans:
        literal = text[start:end]
        old = json.loads(literal)
        new = _with_account(old, account_uuid) if isinstance(old, str) else None
        if new is None:
            return UserIdRewrite(body, "malformed")  # nothing changes unless every one is understood
        if new == old:
            continue
        status = "rewritten"
        if not ascii_only:
            start, end = (len(text[:i].encode("utf-8")) for i in (start, end))
        pieces += [body[done:start], json.dumps(new, ensure_ascii=literal.isascii() and not old.isascii()).encode("utf-8")]
        done = end
    if status != "rewritten":
        return UserIdRewrite(body, status)
    pieces.append(body[done:])
    return UserIdRewrite(b"".join(pieces), status)


def has_user_id(body: bytes) -> bool:
    """Whether the body (a JSON object) has a top-level `metadata.user_id`."""
    text = _text(body)
    if text is None:
        return False
    try:
        return next(_user_id_spans(text), None) is not None
    except _NotJson:
        return False


def _text(body: bytes) -> str | None:
    # Cheap exit for bodies that cannot hold the key (an escaped key name needs a backslash-u).
    if not body or (b"user_id" not in body and b"\\u" not in body):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _user_id_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each `metadata.user_id` value literal, after checking the whole text
    is one JSON object."""
    spans: list[tuple[int, int]] = []
    try:
        members, end = _walk(text, _skip(text, 0))
        for key, value_start, _ in members:
            if key == "metadata" and text[value_start] == "{":
                spans += [(s, e) for name, s, e in _walk(text, value_start)[0] if name == "user_id"]
    except (IndexError, ValueError, RecursionError):
        raise _NotJson from None
    if _skip(text, end) != len(text):
        raise _NotJson
    yield from spans


def _walk(text: str, start: int) -> tuple[list[tuple[str, int, int]], int]:
    """The members of the object starting at `start` as (key, value start, value end), and
    where the object ends. Each value is parsed by the C scanner, so a malformed one raises."""
    if text[start] != "{":
        raise ValueError("not an object")
    members: list[tuple[str, int, int]] = []
    at = _skip(text, start + 1)
    if text[at] == "}":
        return members, at + 1
    while True:
        if text[at] != '"':
            raise ValueError("expected a key")
        key, at = _parse_at(text, at)
        at = _skip(text, at)
        if text[at] != ":":
            raise ValueError("expected ':'")
        value_start = _skip(text, at + 1)
        _, at = _parse_at(text, value_start)
        members.append((key, value_start, at))
        at = _skip(text, at)
        if text[at] == "}":
            return members, at + 1
        if text[at] != ",":
            raise ValueError("expected ',' or '}'")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def _with_account(user_id: str, account_uuid: str) -> str | None:
    """`user_id` with its account UUID replaced, or None when its form is unknown."""
    if user_id.lstrip().startswith("{"):
        return _json_form(user_id, account_uuid)
    match = _LEGACY.fullmatch(user_id)
    if match is None:
        return None
    return user_id[: match.start("account")] + account_uuid + user_id[match.end("account"):]


def _json_form(user_id: str, account_uuid: str) -> str | None:
    """The JSON form, spliced too: only the `account_uuid` value changes."""
    try:
        members, end = _walk(user_id, _skip(user_id, 0))
    except (IndexError, ValueError, RecursionError):
        return None
    spans = [(s, e) for key, s, e in members if key == "account_uuid"]
    if _skip(user_id, end) != len(user_id) or not spans or any(user_id[s] != '"' for s, _ in spans):
        return None
    pieces: list[str] = []
    done = 0
    for s, e in spans:
        pieces += [user_id[done:s], json.dumps(account_uuid)]
        done = e
    pieces.append(user_id[done:])
    return "".join(pieces)
