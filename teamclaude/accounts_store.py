"""The accounts file (behaviour §7.1): accounts and their secrets, shared by the CLI and the proxy.

Both the CLI and a running proxy write this file (login, import, remove, token refresh), so
every write is a read-modify-write under an exclusive lock on a sidecar file, and entries
are matched by a stable key (account id, else name), never by position. Fields and
top-level keys the program does not know are carried through unchanged.

Rotated OAuth pairs must never be lost (a refresh token is single use): every write first
adopts newer pairs that a crashed or failed write left behind — entries of the token journal
(`token_journal.py`) and complete temp files of an interrupted `atomic_write` — and removes
those leftovers once the file holds what they had. `obtained_at` (epoch ms, written with
each pair) tells which pair is newer.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from routing.types import AccountKind, AccountSpec
from teamclaude import yamlsafe
from teamclaude.atomic import atomic_write, leftover_temp_files
from teamclaude.client_keys import BadClientKey, ClientKey, parse_record
from teamclaude.paths import display_path, fingerprint
from teamclaude.token_journal import ReceivedPair, TokenJournal

ACCOUNT_KINDS: tuple[str, ...] = ("oauth", "apikey")
SECRET_FIELDS = frozenset({"access_token", "refresh_token", "api_key"})
PROXY_KEY_PREFIX = "tc-"

_FILE_HEADER = (
    "# teamclaude accounts and secrets (mode 0600). Written by 'teamclaude login/import/remove'\n"
    "# and by the proxy when it refreshes tokens. Hand edits are kept; comments are not.\n"
)
# The last line of every file this program writes: a temp file that ends with it is complete.
_END_MARK = "# end of accounts\n"

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
    obtained_at: int | None = None  # epoch milliseconds when the token pair was received
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
        return AccountSpec(name=self.name, kind=self.type, priority=self.priority, disabled=self.disabled,
                           email=self.email, plan=self.plan)

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
_MILLIS = ("expires_at", "obtained_at")
_OPTIONAL_TEXT = ("id", "email", "org", "plan", "access_token", "refresh_token", "api_key", "source")


@dataclass(repr=False)
class AccountsDoc:
    """The whole accounts file. `extra` holds unknown top-level keys."""

    proxy_key: str | None = None
    accounts: list[Account] = field(default_factory=list)
    client_keys: list[ClientKey] = field(default_factory=list)  # `teamclaude keys`
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
        return (f"AccountsDoc(proxy_key={key}, accounts={self.accounts!r}, client_keys={self.client_keys!r}, "
                f"extra={list(self.extra)!r})")


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
        self.journal = TokenJournal(self.path.with_name(self.path.name + ".journal"))

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

        Newer token pairs left in the journal or in temp files are adopted first, and those
        leftovers removed once the file is written. OAuth accounts whose tokens `mutate`
        changed without setting `obtained_at` get it set to now. Raises `AccountsError` for
        a bad file and `OSError` when it cannot be written (leftovers are then kept).

        Blocking (file lock, fsync): the proxy calls it through `asyncio.to_thread`.
        """
        return self._update(mutate)[0]

    def recover(self) -> list[str]:
        """Adopt what interrupted writes left behind (see `update`); names of accounts that
        got a newer pair. Run by the proxy at start; any later write does the same."""
        return self._update(lambda doc: None)[1]

    def _update(self, mutate: Callable[[AccountsDoc], T]) -> tuple[T, list[str]]:
        with self._locked():
            doc = self.read()
            before = dump_accounts(doc)
            orphans = leftover_temp_files(self.path)
            adopted = adopt_newer(doc, self.journal.entries() + _pairs_in(orphans))
            tokens_before = {a.key: _tokens_of(a) for a in doc.accounts}
            result = mutate(doc)
            _stamp_new_pairs(doc, tokens_before, int(time.time() * 1000))
            after = dump_accounts(doc)
            if after != before:
                try:
                    _parse(after)
                except _Problem as problem:
                    raise AccountsError(
                        f"{display_path(self.path)} not changed: {problem.text}"
                    ) from None
                atomic_write(self.path, after.encode("utf-8"), mode=0o600)
            for leftover in [self.journal.path, *orphans]:
                _unlink(leftover)
            return result, adopted

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
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            # A read-only file system: an existing lock file still locks when opened for
            # reading. Without one nobody can write here at all, so there is nothing to
            # exclude, and the caller still gets to read (and refresh, keeping the pair).
            try:
                fd = os.open(self.lock_path, os.O_RDONLY)
            except OSError:
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def adopt_newer(doc: AccountsDoc, pairs: Iterable[ReceivedPair]) -> list[str]:
    """Give each OAuth account of `doc` the newest of `pairs` for it, when newer than its
    own; names of the accounts changed. Pairs of accounts not in `doc` are dropped (a
    removed account stays removed)."""
    changed: list[str] = []
    for pair in sorted(pairs, key=lambda p: p.obtained_at):
        account = doc.find(pair.key)
        if account is None or account.type != "oauth" or not is_newer(pair, account):
            continue
        account.access_token = pair.access_token
        account.refresh_token = pair.refresh_token or account.refresh_token
        account.expires_at = pair.expires_at
        account.obtained_at = pair.obtained_at
        if account.name not in changed:
            changed.append(account.name)
    return changed


def is_newer(candidate: ReceivedPair | Account, current: Account) -> bool:
    """Does `candidate` hold a newer token pair than `current` (the same account)?

    By `obtained_at` when both have it; else (a file written by an older version or by
    hand) by `expires_at`, which a later refresh moves forward.
    """
    if (candidate.access_token, candidate.refresh_token) == (current.access_token, current.refresh_token):
        return False
    if candidate.obtained_at is not None and current.obtained_at is not None:
        return candidate.obtained_at > current.obtained_at
    return (candidate.expires_at or 0) > (current.expires_at or 0)


def received_pair(account: Account) -> ReceivedPair | None:
    """The token pair of an OAuth account as a journal entry (None without one)."""
    if account.type != "oauth" or not account.access_token or account.obtained_at is None:
        return None
    return ReceivedPair(account.key, account.name, account.access_token, account.refresh_token,
                        account.expires_at, account.obtained_at)


def _pairs_in(temp_files: Iterable[Path]) -> list[ReceivedPair]:
    """Token pairs in temp files an interrupted write left; a file cut short is ignored."""
    pairs: list[ReceivedPair] = []
    for temp in temp_files:
        try:
            text = temp.read_text(encoding="utf-8")
            if not text.endswith(_END_MARK):
                continue
            doc = _parse(text)
        except (OSError, UnicodeDecodeError, _Problem, yamlsafe.PlainYamlError):
            continue
        pairs += [pair for pair in map(received_pair, doc.accounts) if pair is not None]
    return pairs


def _tokens_of(account: Account) -> tuple[str | None, str | None, int | None]:
    return account.access_token, account.refresh_token, account.obtained_at


def _stamp_new_pairs(doc: AccountsDoc, before: dict[str, tuple[str | None, str | None, int | None]], now_ms: int) -> None:
    """Set `obtained_at` of OAuth accounts that got tokens without it (login, import)."""
    for account in doc.accounts:
        if account.type != "oauth" or not (account.access_token or account.refresh_token):
            continue
        old = before.get(account.key)
        if old is None:
            new_account_unstamped = account.obtained_at is None
            if new_account_unstamped:
                account.obtained_at = now_ms
        elif old[:2] != _tokens_of(account)[:2] and old[2] == account.obtained_at:
            account.obtained_at = now_ms


def _unlink(path: Path) -> None:
    """Remove a leftover whose content the file now holds; one that cannot be removed (a
    read-only directory) is harmless: it is no newer than the file."""
    try:
        path.unlink()
    except OSError:
        pass


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
    if doc.client_keys:
        data["client_keys"] = [record.to_dict() for record in doc.client_keys]
    data.update(doc.extra)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096)
    return _FILE_HEADER + body + _END_MARK


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
        elif key == "client_keys":
            doc.client_keys = _parse_client_keys(node)
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


def _parse_client_keys(node: yaml.Node) -> list[ClientKey]:
    """The `client_keys:` list (`teamclaude keys`): records of `teamclaude.client_keys`."""
    if isinstance(node, yaml.ScalarNode) and _construct(node) is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise _Problem(_line(node), "'client_keys' must be a list ('- name: ...'), as 'teamclaude keys add' writes it")
    records: list[ClientKey] = []
    first_line: dict[str, int] = {}
    for position, item in enumerate(node.value, start=1):
        if not isinstance(item, yaml.MappingNode):
            raise _Problem(_line(item), f"client key #{position} must be a mapping with 'name' and 'sha256'")
        entries = _pairs(item, f"client key #{position}")
        try:
            record = parse_record({key: _construct(value) for key, value in entries})
        except BadClientKey as exc:
            at = next((value for key, value in entries if key == exc.field), item)
            raise _Problem(_line(at), str(exc)) from None
        if record.name in first_line:
            raise _Problem(_line(item), f"client key name '{record.name}' is used twice "
                                        f"(also line {first_line[record.name]}); names must be unique")
        first_line[record.name] = _line(item)
        records.append(record)
    return records


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
        return None if key in _OPTIONAL_TEXT or key in _MILLIS else _default_of(key)
    if key in _OPTIONAL_TEXT:
        if not isinstance(value, str):
            shown = "" if key in SECRET_FIELDS else f", got {_show_plain(value)}"
            raise _Problem(line, f"{label}: '{key}' must be a string{shown}")
        return value
    if key in _MILLIS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**63:
            raise _Problem(line, f"{label}: '{key}' must be epoch milliseconds, got {_show_plain(value)}")
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
