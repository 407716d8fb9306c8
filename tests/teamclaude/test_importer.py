from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from teamclaude.accounts_store import Account, AccountsStore
from teamclaude.fakeupstream import FakeUpstream
from teamclaude.importer import (
    ImportFailed,
    claude_code_has_login,
    claude_credentials_path,
    import_account,
)
from teamclaude.settings import Settings

from .conftest import ALICE_ACCESS, ALICE_REFRESH


def write_credentials(path: Path, access: str = ALICE_ACCESS, refresh: str = ALICE_REFRESH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"claudeAiOauth": {
        "accessToken": access, "refreshToken": refresh, "expiresAt": 1795000000000,
        "scopes": ["user:inference"], "subscriptionType": "pro",
    }}))
    return path


@pytest.fixture
def claude_env(tmp_path: Path) -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(tmp_path / "claude"), "HOME": str(tmp_path / "home")}


def test_credentials_path_honours_claude_config_dir(claude_env: dict[str, str]) -> None:
    assert claude_credentials_path(claude_env) == Path(claude_env["CLAUDE_CONFIG_DIR"]) / ".credentials.json"
    assert claude_credentials_path({"HOME": "/h"}) == Path("/h/.claude/.credentials.json")


def test_import_from_claude_code_uses_the_profile(
    fake: FakeUpstream, settings: Settings, claude_env: dict[str, str]
) -> None:
    source = write_credentials(claude_credentials_path(claude_env))
    store = AccountsStore(settings.accounts_file)
    result = import_account(store, settings, env=claude_env)
    assert result.created and result.identified
    account = store.read().get("alice@example.com")
    assert account is not None
    assert (account.id, account.plan, account.org) == (fake.account("alice").uuid, "max", "Alice Org")
    assert (account.access_token, account.refresh_token, account.expires_at) == (ALICE_ACCESS, ALICE_REFRESH, 1795000000000)
    assert account.source == str(source.resolve())
    assert fake.token_calls == []  # importing never rotates Claude Code's refresh token

    write_credentials(source, refresh="sk-ant-ort01-newer")
    again = import_account(store, settings, env=claude_env)
    assert not again.created
    (only,) = store.read().accounts
    assert only.refresh_token == "sk-ant-ort01-newer"


def test_import_without_profile_names_it_and_updates_it_on_reimport(
    settings: Settings, tmp_path: Path, unused_tcp_port: int
) -> None:
    offline = dataclasses.replace(settings, oauth_profile_url=f"http://127.0.0.1:{unused_tcp_port}/api/oauth/profile")
    source = write_credentials(tmp_path / "elsewhere" / "creds.json")
    store = AccountsStore(settings.accounts_file)
    first = import_account(store, offline, source=source)
    assert (first.account.name, first.identified, first.account.plan) == ("imported-1", False, "pro")
    write_credentials(source, refresh="sk-ant-ort01-rotated")
    import_account(store, offline, source=source)
    (only,) = store.read().accounts
    assert (only.name, only.refresh_token) == ("imported-1", "sk-ant-ort01-rotated")
    named = import_account(store, offline, source=write_credentials(tmp_path / "other.json"), name="laptop")
    assert named.account.name == "laptop"


def test_import_falls_back_to_claude_code_identity(
    settings: Settings, claude_env: dict[str, str], unused_tcp_port: int
) -> None:
    offline = dataclasses.replace(settings, oauth_profile_url=f"http://127.0.0.1:{unused_tcp_port}/x")
    write_credentials(claude_credentials_path(claude_env))
    Path(claude_env["CLAUDE_CONFIG_DIR"], ".claude.json").write_text(json.dumps({"oauthAccount": {
        "accountUuid": "uuid-cc", "emailAddress": "cc@example.com", "organizationName": "CC Org",
    }}))
    result = import_account(AccountsStore(settings.accounts_file), offline, env=claude_env)
    assert (result.account.name, result.account.id, result.account.org) == ("cc@example.com", "uuid-cc", "CC Org")


def test_import_refuses_a_name_used_by_another_account(
    fake: FakeUpstream, settings: Settings, claude_env: dict[str, str]
) -> None:
    store = AccountsStore(settings.accounts_file)
    store.update(lambda doc: doc.accounts.append(Account(name="ci", type="apikey", api_key="sk-ant-api03-x")))
    write_credentials(claude_credentials_path(claude_env))
    with pytest.raises(ImportFailed, match="'ci' is already used by another account"):
        import_account(store, settings, env=claude_env, name="ci")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist: log in with Claude Code first"),
        ("{not json", "is not valid JSON"),
        ('{"other": 1}', "has no 'claudeAiOauth' login"),
        ('{"claudeAiOauth": {"expiresAt": 1}}', "without tokens"),
    ],
)
def test_unusable_credentials_say_what_to_do(
    settings: Settings, claude_env: dict[str, str], content: str | None, expected: str
) -> None:
    path = claude_credentials_path(claude_env)
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(ImportFailed, match=expected):
        import_account(AccountsStore(settings.accounts_file), settings, env=claude_env)
    assert claude_code_has_login(claude_env) is False
