"""The accounts file (behaviour §7.1): accounts and their secrets, shared by the CLI and the proxy.

Both the CLI and a running proxy write this file (login, import, remove, token refresh), so
every write is a read-modify-write under an exclusive lock on a sidecar file, and entries
are matched by a stable key (account id, else name), never by position. Fields and
top-level keys the program does not know are carried through unchanged.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from routing.types import AccountKind, AccountSpec
from teamclaude import yamlsafe
from teamclaude.atomic import atomic_write
from teamclaude.paths import display_path, fingerprint

ACCOUNT_KINDS: tuple[str, ...] = ("oauth", "apikey")
SECRET_FIELDS = frozenset({"access_token", "refresh_token", "api_key"})
PROXY_KEY_PREFIX = "tc-"

_FILE_HEADER = (
    "# teamclaude accounts and secrets (mode 0600). Written by 'teamclaude login/import/remove'\n"
    "# and by the proxy when it refreshes tokens. Hand edits are kept; comments are not.\n"
)

T = TypeVar("T")

# libyaml when PyYAML was built with it (it usually is): dumping is ~10x faster.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(repr=False)
class Account:
    """One pooled account. `extra` holds fields this version does not know, in file order."""

    name: str
    type: AccountKind
    id: str | None = None
    email: str | None = None
    org: str | None = None
    plan: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: int | None = None  # epoch milliseconds
    api_key: str | None = None
    disabled: bool = False
    priority: int = 0
    source: str | None = None  # credentials file an imported account came from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable identity across rewrites: the account UUID when known, else the name."""
        if self.type == "oauth" and self.id:
            return f"id:{self.id}"
        return f"name:{self.name}"

    def to_spec(self) -> AccountSpec:
        return AccountSpec(name=self.name, kind=self.type, priority=self.priority, disabled=self.disabled)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                shown = "<set>" if value else "None"
            elif f.name == "extra":
                # Unknown fields may hold secrets too: show only their names.
                shown = "{" + ", ".join(repr(k) for k in value) + "}"
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"Account({', '.join(parts)})"


_ACCOUNT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Account) if f.name != "extra")
_OPTIONAL_TEXT = ("id", "email", "org", "plan", "access_token", "refresh_token", "api_key", "source")


@dataclass(repr=False)
class AccountsDoc:
    """The whole accounts file. `extra` holds unknown top-level keys."""

    proxy_key: str | None = None
    accounts: list[Account] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def find(self, key: str) -> Account | None:
        """The account whose stable `Account.key` is `key`."""
        return next((a for a in self.accounts if a.key == key), None)

    def upsert(self, account: Account) -> Account | None:
        """Replace the entry with the same id (else the same name) or append; returns the old one."""
        for index, existing in enumerate(self.accounts):
            same_id = account.id is not None and existing.id == account.id
            if same_id or (existing.name == account.name and not (existing.id and account.id)):
                self.accounts[index] = account
                return existing
        self.accounts.append(account)
        return None

    def free_name(self, candidates: Iterable[str]) -> str:
        """The first of `candidates` (possibly endless) that no account uses yet."""
        taken = {a.name for a in self.accounts}
        return next(c for c in candidates if c not in taken)

    def remove(self, name: str) -> Account | None:
        account = self.get(name)
        if account is not None:
            self.accounts.remove(account)
        return account

    def __repr__(self) -> str:
        key = "<set>" if self.proxy_key else "None"
        return f"AccountsDoc(proxy_key={key}, accounts={self.accounts!r}, extra={list(self.extra)!r})"


class AccountsError(ValueError):
    """A bad accounts file. `str()` is one line naming file, line and account, never a secret."""

    def __init__(self, message: str) -> None:
        super().__init__(yamlsafe.printable(message))


class _Problem(Exception):
    def __init__(self, line: int | None, text: str) -> None:
        super().__init__(text)
        self.line = line
        self.text = text


class AccountsStore:
    """Reads and writes one accounts file; safe across processes (CLI and proxy)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> AccountsDoc:
        """The current file, validated; a missing file is an empty document."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AccountsDoc()
        except (OSError, UnicodeDecodeError) as exc:
            raise AccountsError(f"{display_path(self.path)}: cannot read the accounts file: {exc}") from None
        return parse_accounts(text, self.path)

    def update(self, mutate: Callable[[AccountsDoc], T]) -> T:
        """Apply `mutate` to the freshly read file under the lock and write it back if it changed.

        Blocking (file lock, fsync): the proxy calls it through `asyncio.to_thread`.
        """
        with self._locked():
            doc = self.read()
            before = dump_accounts(doc)
            result = mutate(doc)
            after = dump_accounts(doc)
            if after != before:
                try:
                    _parse(after)
                except _Problem as problem:
                    raise AccountsError(
                        f"{display_path(self.path)} not changed: {problem.text}"
                    ) from None
                atomic_write(self.path, after.encode("utf-8"), mode=0o600)
            return result

    def ensure_proxy_key(self) -> str:
        """The proxy key, generated (`tc-` + 32 url-safe characters) and saved if absent."""
        existing = self.read().proxy_key
        if existing:
            return existing

        def set_key(doc: AccountsDoc) -> str:
            if not doc.proxy_key:
                doc.proxy_key = new_proxy_key()
            return doc.proxy_key

        return self.update(set_key)

    def fingerprint(self) -> tuple[int, int, int] | None:
        """(mtime_ns, size, inode) of the file, None when missing: poll it to notice changes."""
        return fingerprint(self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def new_proxy_key() -> str:
    return PROXY_KEY_PREFIX + secrets.token_urlsafe(24)  # 24 bytes -> 32 characters


def merge_duplicates(doc: AccountsDoc) -> list[str]:
    """Merge OAuth entries with the same account id, keeping the one with the newest tokens.

    The survivor takes the place of the first duplicate. Returns one message per merge.
    """
    messages: list[str] = []
    by_id: dict[str, list[Account]] = {}
    for account in doc.accounts:
        if account.type == "oauth" and account.id:
            by_id.setdefault(account.id, []).append(account)
    for account_id, group in by_id.items():
        if len(group) < 2:
            continue
        newest = max(group, key=lambda a: a.expires_at if a.expires_at is not None else -1)
        first_index = doc.accounts.index(group[0])
        dropped = [a for a in group if a is not newest]
        doc.accounts = [a for a in doc.accounts if a not in group]
        doc.accounts.insert(min(first_index, len(doc.accounts)), newest)
        names = ", ".join(f"'{a.name}'" for a in dropped)
        messages.append(
            f"merged duplicate {names} into '{newest.name}' (same account {account_id[:8]}…; kept the newest tokens)"
        )
    return messages


# ---- YAML <-> documents ----


def dump_accounts(doc: AccountsDoc) -> str:
    data: dict[str, Any] = {}
    if doc.proxy_key is not None:
        data["proxy_key"] = doc.proxy_key
    data["accounts"] = [_account_to_dict(a) for a in doc.accounts]
    data.update(doc.extra)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096)
    return _FILE_HEADER + body


def _account_to_dict(account: Account) -> dict[str, Any]:
    out: dict[str, Any] = {"name": account.name, "type": account.type}
    for name in _ACCOUNT_FIELDS[2:]:
        value = getattr(account, name)
        if value is None or (name == "disabled" and value is False) or (name == "priority" and value == 0):
            continue
        out[name] = value
    out.update(account.extra)
    return out


def parse_accounts(text: str, path: Path) -> AccountsDoc:
    """Parse and validate accounts YAML read from `path` (named in errors)."""
    try:
        return _parse(text)
    except (_Problem, yamlsafe.PlainYamlError) as problem:
        at = f" line {problem.line}" if problem.line else ""
        text_of = problem.text if isinstance(problem, _Problem) else problem.problem
        raise AccountsError(f"{display_path(path)}{at}: {text_of}") from None


def _parse(text: str) -> AccountsDoc:
    root = yamlsafe.compose(text)
    doc = AccountsDoc()
    if root is None:
        return doc
    if not isinstance(root, yaml.MappingNode):
        raise _Problem(_line(root), "expected 'proxy_key:' and 'accounts:' at the top level")
    for key, node in _pairs(root, "the top level"):
        if key == "proxy_key":
            if not isinstance(node, yaml.ScalarNode) or not isinstance(_construct(node), str):
                raise _Problem(_line(node), "'proxy_key' must be a string (delete the line to get a new one)")
            doc.proxy_key = _construct(node)
        elif key == "accounts":
            doc.accounts = _parse_account_list(node)
        else:
            doc.extra[key] = _construct(node)
    return doc


def _parse_account_list(node: yaml.Node) -> list[Account]:
    if isinstance(node, yaml.ScalarNode) and _construct(node) is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise _Problem(_line(node), "'accounts' must be a list of accounts ('- name: ...')")
    accounts: list[Account] = []
    first_line: dict[str, int] = {}
    for position, item in enumerate(node.value, start=1):
        account = _parse_account(item, position)
        if account.name in first_line:
            raise _Problem(
                _line(item),
                f"account name '{account.name}' is used twice (also line {first_line[account.name]}); "
                "names must be unique",
            )
        first_line[account.name] = _line(item)
        accounts.append(account)
    return accounts


def _parse_account(node: yaml.Node, position: int) -> Account:
    if not isinstance(node, yaml.MappingNode):
        raise _Problem(_line(node), f"account #{position} must be a mapping with 'name' and 'type'")
    entries = _pairs(node, f"account #{position}")
    names = {key: value for key, value in entries}
    name_node = names.get("name")
    name = _construct(name_node) if name_node is not None else None
    if not isinstance(name, str) or not name.strip():
        raise _Problem(_line(name_node or node), f"account #{position} needs a 'name' (a non-empty string)")
    label = f"account '{name}'"
    type_node = names.get("type")
    kind = _construct(type_node) if type_node is not None else None
    if kind not in ACCOUNT_KINDS:
        got = "no 'type'" if type_node is None else f"type {_show_plain(kind)}"
        raise _Problem(_line(type_node or node), f"{label} has {got} (allowed: {', '.join(ACCOUNT_KINDS)})")

    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value_node in entries:
        if key in ("name", "type"):
            continue
        value = _construct(value_node)
        if key not in _ACCOUNT_FIELDS:
            extra[key] = value
            continue
        values[key] = _check_field(label, key, value, _line(value_node))
    account = Account(name=name, type=kind, extra=extra, **values)
    _check_required(account, _line(node))
    return account


def _check_field(label: str, key: str, value: Any, line: int) -> Any:
    if value is None:
        return None if key in _OPTIONAL_TEXT or key == "expires_at" else _default_of(key)
    if key in _OPTIONAL_TEXT:
        if not isinstance(value, str):
            shown = "" if key in SECRET_FIELDS else f", got {_show_plain(value)}"
            raise _Problem(line, f"{label}: '{key}' must be a string{shown}")
        return value
    if key == "expires_at":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _Problem(line, f"{label}: 'expires_at' must be epoch milliseconds, got {_show_plain(value)}")
        return int(value)
    if key == "disabled":
        if not isinstance(value, bool):
            raise _Problem(line, f"{label}: 'disabled' must be true or false, got {_show_plain(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int):  # priority
        raise _Problem(line, f"{label}: 'priority' must be an integer (lower goes first), got {_show_plain(value)}")
    return value


def _default_of(key: str) -> Any:
    return next(f.default for f in fields(Account) if f.name == key)


def _check_required(account: Account, line: int) -> None:
    label = f"account '{account.name}'"
    if account.type == "oauth" and not (account.refresh_token or account.access_token):
        raise _Problem(
            line,
            f"{label} (oauth) has neither 'refresh_token' nor 'access_token': "
            "run 'teamclaude login' or 'teamclaude import', or remove it",
        )
    if account.type == "apikey" and not account.api_key:
        raise _Problem(line, f"{label} (apikey) has no 'api_key': run 'teamclaude login --api', or remove it")


def _pairs(node: yaml.MappingNode, owner: str) -> list[tuple[str, yaml.Node]]:
    seen: dict[str, int] = {}
    pairs: list[tuple[str, yaml.Node]] = []
    for key_node, value_node in node.value:
        key = _construct(key_node)
        if not isinstance(key, str):
            raise _Problem(_line(key_node), f"{owner}: keys must be names, got {_show_plain(key)}")
        if key in seen:
            raise _Problem(_line(key_node), f"{owner}: '{key}' is set twice (also line {seen[key]})")
        seen[key] = _line(key_node)
        pairs.append((key, value_node))
    return pairs


def _construct(node: yaml.Node) -> Any:
    return yamlsafe.construct(node)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _show_plain(value: Any) -> str:
    text = f"'{value}'" if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
