from __future__ import annotations

import queue
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from teamclaude import oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.fakeupstream import FakeUpstream
from teamclaude.login import (
    LoginError,
    login_api_key,
    login_oauth,
    parse_pasted,
    save_oauth_account,
)
from teamclaude.settings import Settings


class Browser:
    """Follows the printed link like a browser would (the fake auto-approves with a 302)."""

    def __init__(self, rewrite: Callable[[str], str] = lambda url: url) -> None:
        self.rewrite = rewrite
        self.statuses: list[int] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, url: str) -> bool:
        thread = threading.Thread(target=self._visit, args=(self.rewrite(url),))
        thread.start()
        self.threads.append(thread)
        return True

    def _visit(self, url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                self.statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            self.statuses.append(exc.code)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)


def link_params(lines: list[str], marker: str) -> dict[str, str]:
    url = next(line.strip() for line in lines if marker in line)
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_browser_callback_login_stores_the_account(fake: FakeUpstream, settings: Settings) -> None:
    store = AccountsStore(settings.accounts_file)
    browser, lines = Browser(), []
    result = login_oauth(store, settings, open_browser=browser, out=lines.append, timeout_s=10)
    browser.join()
    assert browser.statuses == [200]
    alice = fake.account("alice")
    stored = store.read().get("alice@example.com")
    assert stored is not None and result.created
    assert (stored.id, stored.email, stored.org, stored.plan) == (alice.uuid, "alice@example.com", "Alice Org", "max")
    assert stored.access_token == alice.access_token and stored.refresh_token == alice.refresh_token
    params = link_params(lines, "localhost")
    assert params["code_challenge_method"] == "S256" and params["client_id"] == oauth.CLIENT_ID
    assert params["scope"] == oauth.SCOPES
    assert params["redirect_uri"].startswith("http://localhost:")
    assert not any("sk-ant" in line for line in lines)
    assert [c.grant_type for c in fake.token_calls] == ["authorization_code"]


def test_paste_login_with_code_and_state(fake: FakeUpstream, settings: Settings) -> None:
    store = AccountsStore(settings.accounts_file)
    pastes: queue.Queue[str] = queue.Queue()
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if "/oauth/authorize" in line and "oauth%2Fcode%2Fcallback" in line:
            params = link_params([line], "/oauth/authorize")
            code = fake.issue_code(params["state"], params["code_challenge"], params["redirect_uri"])
            pastes.put("not-a-code")
            pastes.put(f"  {code}#{params['state']}\n")

    result = login_oauth(store, settings, open_browser=lambda url: False, read_line=pastes.get,
                         out=out, timeout_s=10, name="work")
    assert result.account.name == "work" and result.account.id == fake.account("alice").uuid
    assert any("including the part after '#'" in line for line in lines)
    assert store.read().get("work").refresh_token == fake.account("alice").refresh_token


def test_pasted_code_with_a_foreign_state_is_refused(fake: FakeUpstream, settings: Settings) -> None:
    store = AccountsStore(settings.accounts_file)
    pastes: queue.Queue[str] = queue.Queue()
    pastes.put("somecode#forged-state")
    lines: list[str] = []
    with pytest.raises(LoginError, match="no sign-in arrived within 0.5 s"):
        login_oauth(store, settings, open_browser=lambda url: False, read_line=pastes.get,
                    out=lines.append, timeout_s=0.5)
    assert any("belongs to another sign-in attempt" in line for line in lines)
    assert fake.token_calls == []
    assert not store.path.exists()


def test_callback_with_a_wrong_state_is_refused(fake: FakeUpstream, settings: Settings) -> None:
    def forge(url: str) -> str:
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        return f"{params['redirect_uri']}?code=stolen&state=forged"

    browser = Browser(forge)
    with pytest.raises(LoginError, match="no sign-in arrived"):
        login_oauth(AccountsStore(settings.accounts_file), settings, open_browser=browser,
                    out=lambda line: None, timeout_s=0.5)
    browser.join()
    assert browser.statuses == [400]
    assert fake.token_calls == []


def test_refused_consent_ends_the_login(fake: FakeUpstream, settings: Settings) -> None:
    def deny(url: str) -> str:
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        return f"{params['redirect_uri']}?error=access_denied&state={params['state']}"

    browser = Browser(deny)
    with pytest.raises(LoginError, match="sign-in was refused: access_denied"):
        login_oauth(AccountsStore(settings.accounts_file), settings, open_browser=browser,
                    out=lambda line: None, timeout_s=10)
    browser.join()


def test_timeout_closes_the_callback_server(settings: Settings) -> None:
    lines: list[str] = []
    with pytest.raises(LoginError, match="run 'teamclaude login' again"):
        login_oauth(AccountsStore(settings.accounts_file), settings, open_browser=lambda url: False,
                    out=lines.append, timeout_s=0.2)
    port = int(link_params(lines, "localhost")["redirect_uri"].split(":")[2].split("/")[0])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not settings.accounts_file.exists()


def test_parse_pasted_accepts_code_hash_state_and_urls() -> None:
    assert parse_pasted(" abc#xyz \n") == ("abc", "xyz")
    assert parse_pasted("http://localhost:1/callback?code=abc&state=xyz") == ("abc", "xyz")
    with pytest.raises(LoginError):
        parse_pasted("abc")


def tokens(access: str, refresh: str) -> oauth.TokenSet:
    return oauth.TokenSet(access_token=access, refresh_token=refresh, expires_at=1)


def test_relogin_updates_the_same_account_by_uuid(tmp_path: Path) -> None:
    store = AccountsStore(tmp_path / "accounts.yaml")
    profile = oauth.Profile("uuid-1", "a@example.com", "Org", "pro")
    first = save_oauth_account(store, tokens("sk-ant-oat01-1", "sk-ant-ort01-1"), profile)

    def rename_and_mark_imported(doc: AccountsDoc) -> None:
        doc.accounts[0].name = "mine"
        doc.accounts[0].source = "/somewhere/.credentials.json"

    store.update(rename_and_mark_imported)
    again = save_oauth_account(store, tokens("sk-ant-oat01-2", "sk-ant-ort01-2"),
                               oauth.Profile("uuid-1", "a@example.com", "Org", "max"))
    assert first.created and not again.created
    (account,) = store.read().accounts
    assert (account.name, account.plan, account.refresh_token, account.source) == ("mine", "max", "sk-ant-ort01-2", None)


def test_same_email_in_another_org_gets_its_own_name(tmp_path: Path) -> None:
    store = AccountsStore(tmp_path / "accounts.yaml")
    save_oauth_account(store, tokens("a1", "r1"), oauth.Profile("uuid-1", "a@example.com", "Home", "max"))
    save_oauth_account(store, tokens("a2", "r2"), oauth.Profile("uuid-2", "a@example.com", "Work", "team"))
    assert [a.name for a in store.read().accounts] == ["a@example.com", "a@example.com (Work)"]
    with pytest.raises(LoginError, match="'a@example.com' is already used by another account"):
        save_oauth_account(store, tokens("a3", "r3"), oauth.Profile("uuid-3", None, None, None), name="a@example.com")


def test_api_key_login(tmp_path: Path) -> None:
    store = AccountsStore(tmp_path / "accounts.yaml")
    first = login_api_key(store, key=" sk-ant-api03-one \n")
    assert (first.account.name, first.created) == ("api-key-1", True)
    assert login_api_key(store, key="sk-ant-api03-one").created is False
    assert login_api_key(store, key="sk-ant-api03-two", name="ci").account.name == "ci"
    login_api_key(store, key="sk-ant-api03-three", name="ci")
    assert [(a.name, a.api_key) for a in store.read().accounts] == [
        ("api-key-1", "sk-ant-api03-one"), ("ci", "sk-ant-api03-three"),
    ]
    with pytest.raises(LoginError, match="already stored as 'api-key-1'") as info:
        login_api_key(store, key="sk-ant-api03-one", name="other")
    assert "sk-ant-api03-one" not in str(info.value)
    with pytest.raises(LoginError, match="does not look like an Anthropic API key"):
        login_api_key(store, key="hunter2")
    store.update(lambda doc: doc.accounts.append(Account(name="sub", type="oauth", refresh_token="r")))
    with pytest.raises(LoginError, match="'sub' is an OAuth account"):
        login_api_key(store, key="sk-ant-api03-four", name="sub")
