"""Import the account Claude Code is logged into (behaviour §7.3).

Claude Code keeps its OAuth tokens in `~/.claude/.credentials.json` (or under
`CLAUDE_CONFIG_DIR`) as `claudeAiOauth{accessToken, refreshToken, expiresAt,
subscriptionType}`, and who it is logged in as in `~/.claude.json` (`oauthAccount`). The
import records where the tokens came from, so the proxy can re-read that file when Claude
Code has rotated the refresh token they share.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teamclaude import oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore, merge_duplicates
from teamclaude.paths import display_path
from teamclaude.settings import Settings


class ImportFailed(Exception):
    """The credentials file is missing or unusable; the message says what to do."""


@dataclass(frozen=True, repr=False)
class ClaudeCodeTokens:
    access_token: str | None
    refresh_token: str | None
    expires_at: int | None  # epoch ms
    plan: str | None

    def __repr__(self) -> str:
        return f"ClaudeCodeTokens(expires_at={self.expires_at}, plan={self.plan!r})"


@dataclass(frozen=True)
class Identity:
    id: str | None
    email: str | None
    org: str | None
    plan: str | None


@dataclass(frozen=True)
class ImportResult:
    account: Account
    created: bool
    identified: bool  # False when neither the profile nor Claude Code said who it is
    messages: tuple[str, ...] = ()


def claude_config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("CLAUDE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".claude"


def claude_credentials_path(env: Mapping[str, str] | None = None) -> Path:
    return claude_config_dir(env) / ".credentials.json"


def claude_code_has_login(env: Mapping[str, str] | None = None) -> bool:
    """Whether Claude Code on this machine has an OAuth login of its own."""
    try:
        tokens = read_claude_credentials(claude_credentials_path(env))
    except ImportFailed:
        return False
    return bool(tokens.refresh_token or tokens.access_token)


def read_claude_credentials(path: Path) -> ClaudeCodeTokens:
    where = display_path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportFailed(
            f"{where} does not exist: log in with Claude Code first ('claude', then /login), "
            "or use 'teamclaude import --from PATH' or 'teamclaude login'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed(f"cannot read {where}: {exc}") from None
    except ValueError:
        raise ImportFailed(f"{where} is not valid JSON") from None
    block = raw.get("claudeAiOauth") if isinstance(raw, dict) else None
    if not isinstance(block, dict):
        raise ImportFailed(f"{where} has no 'claudeAiOauth' login: log in with Claude Code (/login) first")
    access, refresh = _text(block.get("accessToken")), _text(block.get("refreshToken"))
    if not (access or refresh):
        raise ImportFailed(f"{where} has a 'claudeAiOauth' entry without tokens: log in with Claude Code again")
    expires = block.get("expiresAt")
    return ClaudeCodeTokens(
        access_token=access,
        refresh_token=refresh,
        expires_at=int(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else None,
        plan=_text(block.get("subscriptionType")),
    )


def claude_code_identity(env: Mapping[str, str] | None = None) -> Identity | None:
    """Who Claude Code says it is logged in as (`oauthAccount` in its `.claude.json`)."""
    env = os.environ if env is None else env
    config_dir = claude_config_dir(env)
    home = Path(env.get("HOME") or Path.home())
    candidates = [config_dir / ".claude.json"]
    if not env.get("CLAUDE_CONFIG_DIR"):
        candidates.insert(0, home / ".claude.json")
    for path in candidates:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        block = raw.get("oauthAccount") if isinstance(raw, dict) else None
        if isinstance(block, dict):
            return Identity(
                id=_text(block.get("accountUuid")),
                email=_text(block.get("emailAddress")),
                org=_text(block.get("organizationName")),
                plan=None,
            )
    return None


def import_account(
    store: AccountsStore,
    settings: Settings,
    *,
    source: Path | None = None,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ImportResult:
    """Add or update the account whose tokens are in `source` (default: Claude Code's file)."""
    default_source = claude_credentials_path(env)
    path = (source or default_source).expanduser().resolve()
    tokens = read_claude_credentials(path)
    identity = _identify(tokens, settings)
    if identity is None and source is None:
        identity = claude_code_identity(env)

    def upsert(doc: AccountsDoc) -> ImportResult:
        existing = _match(doc, identity, str(path), name)
        holder = doc.get(name) if name else None
        if holder is not None and holder is not existing:
            raise ImportFailed(
                f"the name '{name}' is already used by another account: choose another --name "
                f"or remove it first ('teamclaude remove {name}')"
            )
        account = existing or Account(name="", type="oauth")
        account.access_token = tokens.access_token
        account.refresh_token = tokens.refresh_token
        account.expires_at = tokens.expires_at
        account.source = str(path)
        if identity is not None:
            account.id = identity.id or account.id
            account.email = identity.email or account.email
            account.org = identity.org or account.org
        account.plan = (identity.plan if identity else None) or tokens.plan or account.plan
        account.name = name or account.name or _free_name(doc, identity)
        if existing is None:
            doc.accounts.append(account)
        messages = tuple(merge_duplicates(doc))
        return ImportResult(account, existing is None, identity is not None, messages)

    return store.update(upsert)


def _identify(tokens: ClaudeCodeTokens, settings: Settings) -> Identity | None:
    """Ask the profile endpoint who the token belongs to; None when that is not possible.

    Only the access token is used: refreshing here would rotate the refresh token that
    Claude Code shares with us and log Claude Code out.
    """
    if not tokens.access_token:
        return None
    try:
        profile = oauth.fetch_profile(settings.oauth_profile_url, tokens.access_token, timeout=10.0)
    except oauth.OAuthError:
        return None
    return Identity(profile.id, profile.email, profile.org, profile.plan)


def _match(doc: AccountsDoc, identity: Identity | None, source: str, name: str | None) -> Account | None:
    known_id = identity.id if identity is not None else None
    if known_id:
        by_id = next((a for a in doc.accounts if a.type == "oauth" and a.id == known_id), None)
        if by_id is not None:
            return by_id
    if name is not None:
        by_name = doc.get(name)
        if by_name is not None and by_name.type == "oauth" and not (known_id and by_name.id):
            return by_name
        return None
    if not known_id:
        # Unidentified re-import of the same file: update what it created last time.
        return next((a for a in doc.accounts if a.source == source and not a.id), None)
    return None


def _free_name(doc: AccountsDoc, identity: Identity | None) -> str:
    if identity is not None and identity.email:
        return doc.free_name(email_names(identity.email, identity.org))
    return doc.free_name(f"imported-{n}" for n in itertools.count(1))


def email_names(email: str, org: str | None) -> Iterator[str]:
    """Names for an account: its email, then with its organization, then numbered."""
    yield email
    if org:
        yield f"{email} ({org})"
    yield from (f"{email}-{n}" for n in itertools.count(2))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
