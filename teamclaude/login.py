"""`teamclaude login`: add a Claude subscription with OAuth (PKCE S256), or an API key.

The browser comes back to a one-shot callback server on 127.0.0.1 (random port). When the
browser runs on another machine, the person opens the second link instead and pastes the
`code#state` it shows. Each link has its own `state`, which says which redirect URI the code
must be exchanged with; a code with an unknown state is refused.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import itertools
import os
import queue
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from teamclaude import oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore, merge_duplicates
from teamclaude.importer import email_names
from teamclaude.settings import Settings

LOGIN_TIMEOUT_S = 120.0
CALLBACK_PATH = "/callback"
# Where the hosted "copy this code" page lives, relative to the token endpoint's host.
MANUAL_CALLBACK_PATH = "/oauth/code/callback"


class LoginError(Exception):
    """Login did not complete; the message says what to do next."""


@dataclass(frozen=True)
class LoginResult:
    account: Account
    created: bool
    messages: tuple[str, ...] = ()


@dataclass(frozen=True, repr=False)
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def authorize_url(settings: Settings, *, redirect_uri: str, challenge: str, state: str) -> str:
    params = {
        "code": "true",
        "client_id": oauth.CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": oauth.SCOPES,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    return f"{settings.oauth_authorize_url}?{urlencode(params)}"


def browser_available() -> bool:
    """True when `webbrowser` would open a graphical browser (never a text one in this tty)."""
    if sys.platform not in ("darwin", "win32") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def open_in_browser(url: str) -> bool:
    return browser_available() and webbrowser.open(url)


# ---- the two ways a code comes back ----


@dataclass(frozen=True, repr=False)
class _Code:
    code: str
    state: str


class _CallbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, expected_state: str, answers: queue.Queue[_Code | LoginError]) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.expected_state = expected_state
        self.answers = answers


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path != CALLBACK_PATH:
            self._page(404, "Not found", "This is teamclaude's sign-in callback.")
            return
        if not secrets.compare_digest(query.get("state", ""), self.server.expected_state):
            self._page(400, "Sign-in refused", "This link does not belong to the running 'teamclaude login'.")
            return
        if "error" in query:
            reason = query.get("error_description") or query["error"]
            self.server.answers.put(LoginError(f"sign-in was refused: {reason[:200]}; run 'teamclaude login' again"))
            self._page(400, "Sign-in refused", "Return to the terminal.")
            return
        if not query.get("code"):
            self._page(400, "No code", "The sign-in page sent no code; run 'teamclaude login' again.")
            return
        self.server.answers.put(_Code(query["code"], query["state"]))
        self._page(200, "Signed in", "teamclaude got the sign-in. You can close this tab and return to the terminal.")

    def _page(self, status: int, title: str, text: str) -> None:
        body = (f"<!doctype html><title>{html.escape(title)}</title>"
                f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line carries the authorization code."""


def parse_pasted(text: str) -> tuple[str, str]:
    """(code, state) from a pasted `code#state` or a copied callback URL."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        query = {k: v[0] for k, v in parse_qs(urlsplit(text).query).items()}
        code, state = query.get("code", ""), query.get("state", "")
    else:
        code, _, state = text.partition("#")
    if not code or not state:
        raise LoginError("paste the whole code shown after signing in, including the part after '#'")
    return code, state


def _read_pastes(read_line: Callable[[], str], answers: queue.Queue[_Code | LoginError],
                 out: Callable[[str], None], done: threading.Event) -> None:
    while not done.is_set():
        try:
            line = read_line()
        except (EOFError, OSError):
            return
        if done.is_set() or not line.strip():
            continue
        try:
            code, state = parse_pasted(line)
        except LoginError as exc:
            out(str(exc))
            continue
        answers.put(_Code(code, state))


# ---- the login itself ----


def login_oauth(
    store: AccountsStore,
    settings: Settings,
    *,
    name: str | None = None,
    timeout_s: float = LOGIN_TIMEOUT_S,
    open_browser: Callable[[str], bool] | None = None,
    read_line: Callable[[], str] | None = None,
    out: Callable[[str], None] = print,
) -> LoginResult:
    """Sign in with OAuth and store the account (matched by its UUID, then by name).

    `open_browser` defaults to the system browser when there is one. `read_line` reads a
    pasted code (None: no paste prompt). Everything the person must see goes through
    `out`; no token is ever printed.
    """
    open_browser = open_browser or open_in_browser
    pkce = new_pkce()
    loopback_state, paste_state = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    answers: queue.Queue[_Code | LoginError] = queue.Queue()
    server = _CallbackServer(loopback_state, answers)
    done = threading.Event()
    redirects = {
        loopback_state: f"http://localhost:{server.server_address[1]}{CALLBACK_PATH}",
        paste_state: urljoin(settings.oauth_token_url, MANUAL_CALLBACK_PATH),
    }
    threading.Thread(target=server.serve_forever, args=(0.05,), name="teamclaude-login-callback",
                     daemon=True).start()
    try:
        loopback_url = authorize_url(settings, redirect_uri=redirects[loopback_state],
                                     challenge=pkce.challenge, state=loopback_state)
        opened = open_browser(loopback_url)
        out(("Your browser should open to sign in to Claude. If it did not, open this link:"
             if opened else "Open this link in a browser on this machine to sign in to Claude:"))
        out(f"\n  {loopback_url}\n")
        if read_line is not None:
            paste_url = authorize_url(settings, redirect_uri=redirects[paste_state],
                                      challenge=pkce.challenge, state=paste_state)
            out("Browser on another machine? Open this link there instead and paste the code it shows:")
            out(f"\n  {paste_url}\n")
        # Before the paste prompt: printed after it, the line would land on the prompt's line.
        out(f"Waiting up to {timeout_s:g} s for the sign-in…")
        if read_line is not None:
            threading.Thread(target=_read_pastes, args=(read_line, answers, out, done),
                             name="teamclaude-login-paste", daemon=True).start()
        code = _await_code(answers, redirects, timeout_s, out)
    finally:
        done.set()
        server.shutdown()
        server.server_close()

    tokens = oauth.exchange_code(settings.oauth_token_url, code=code.code, verifier=pkce.verifier,
                                 redirect_uri=redirects[code.state], state=code.state)
    try:
        profile = oauth.fetch_profile(settings.oauth_profile_url, tokens.access_token)
    except oauth.OAuthError:
        profile = oauth.Profile(tokens.account_id, tokens.email, tokens.org, None)
    return save_oauth_account(store, tokens, profile, name=name)


def _await_code(answers: queue.Queue[_Code | LoginError], redirects: dict[str, str], timeout_s: float,
                out: Callable[[str], None]) -> _Code:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise LoginError(f"no sign-in arrived within {timeout_s:g} s: run 'teamclaude login' again") from None
        if isinstance(answer, LoginError):
            raise answer
        if answer.state in redirects:
            return answer
        out("That code belongs to another sign-in attempt: paste the code shown after using the link above.")


def save_oauth_account(store: AccountsStore, tokens: oauth.TokenSet, profile: oauth.Profile, *,
                       name: str | None = None) -> LoginResult:
    """Add or update the signed-in account: same UUID, else same name, else a new entry."""
    account_id = profile.id or tokens.account_id
    email = profile.email or tokens.email

    def upsert(doc: AccountsDoc) -> LoginResult:
        existing = next((a for a in doc.accounts if a.type == "oauth" and account_id and a.id == account_id), None)
        if existing is None and name is not None:
            candidate = doc.get(name)
            if candidate is not None and candidate.type == "oauth" and not (candidate.id and account_id):
                existing = candidate
        holder = doc.get(name) if name else None
        if holder is not None and holder is not existing:
            raise LoginError(
                f"the name '{name}' is already used by another account: choose another --name "
                f"or remove it first ('teamclaude remove {name}')"
            )
        account = existing or Account(name="", type="oauth")
        account.id = account_id or account.id
        account.email = email or account.email
        account.org = profile.org or tokens.org or account.org
        account.plan = profile.plan or account.plan
        account.access_token = tokens.access_token
        account.refresh_token = tokens.refresh_token
        account.expires_at = tokens.expires_at
        account.source = None  # a login of our own: no longer shares tokens with Claude Code
        if name:
            account.name = name
        elif not account.name:
            account.name = doc.free_name(
                email_names(email, account.org) if email else (f"account-{n}" for n in itertools.count(1))
            )
        if existing is None:
            doc.accounts.append(account)
        return LoginResult(account, existing is None, tuple(merge_duplicates(doc)))

    return store.update(upsert)


def login_api_key(store: AccountsStore, *, key: str, name: str | None = None) -> LoginResult:
    """Store a Console API key as an `apikey` account (a new name, or replacing that name's key)."""
    key = key.strip()
    if not key.startswith("sk-ant-"):
        raise LoginError("that does not look like an Anthropic API key (they start with 'sk-ant-'); nothing saved")

    def upsert(doc: AccountsDoc) -> LoginResult:
        same_key = next((a for a in doc.accounts if a.type == "apikey" and a.api_key == key), None)
        if same_key is not None and same_key.name != (name or same_key.name):
            raise LoginError(f"this API key is already stored as '{same_key.name}'")
        if same_key is not None:
            return LoginResult(same_key, False)
        existing = doc.get(name) if name else None
        if existing is not None and existing.type != "apikey":
            raise LoginError(f"'{name}' is an OAuth account: choose another --name")
        if existing is not None:
            existing.api_key = key
            return LoginResult(existing, False)
        account = Account(name=name or doc.free_name(f"api-key-{n}" for n in itertools.count(1)),
                          type="apikey", api_key=key)
        doc.accounts.append(account)
        return LoginResult(account, True)

    return store.update(upsert)
