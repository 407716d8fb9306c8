"""Service: loading hostile settings and accounts files (one clear line, nothing overwritten)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamclaude import oauth
from teamclaude.credentials import RefreshFailed
from teamclaude.service import ConfigError, Service, load_config

PROXY_KEY = "tc-service-test-key-0123456789abcdefgh"
GOOD_ACCOUNTS = yaml.safe_dump({"proxy_key": PROXY_KEY, "accounts": [
    {"name": "ci", "type": "apikey", "api_key": "sk-ant-api03-ci-key-secret"}]})

HOSTILE_SNIPPETS = [
    "port: !!python/object/apply:os.system ['true']\n",
    "port: !custom tag\n",
    "<<: {port: 1}\n",
    "port: " + "[" * 3000 + "]" * 3000 + "\n",
    "port: 1" + "0" * 5000 + "\n",
    "port: &a [*a]\n",
    "port: !!binary AAAA\n",
    "port: 2001-12-14t21:59:43.10-05:00\n",
    "switch_threshold: .nan\n",
    "? [complex, key]\n: 1\n",
    "port: \x00\n",
    "\ufeffport: 1\n",
    "--- \n...\n--- \nport: 1\n",
    "accounts:\n  - name: a\n    type: apikey\n    api_key: !!binary AAAA\n",
    "accounts:\n  - name: a\n    type: oauth\n    expires_at: 1" + "0" * 5000 + "\n",
    "accounts:\n  - <<: {name: a}\n    type: apikey\n",
    "accounts: " + "[" * 3000 + "]" * 3000 + "\n",
    "proxy_key: !!python/name:os.system\n",
]

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
key_names = st.sampled_from(["port", "upstream", "accounts", "proxy_key", "name", "type", "api_key",
                             "access_token", "log_dir", "ramp_tiers", "failover", "hold_budget_s"])
yaml_documents = st.dictionaries(st.one_of(key_names, st.text(max_size=12)), yaml_values, max_size=5).map(
    lambda d: yaml.safe_dump(d, allow_unicode=True))
hostile_texts = st.one_of(
    st.sampled_from(HOSTILE_SNIPPETS),
    yaml_documents,
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def config_dir(root: Path, settings_text: str | None = None, accounts_text: str = GOOD_ACCOUNTS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(settings_text if settings_text is not None else f"state_file: {root / 'state.json'}\n",
                      encoding="utf-8", errors="surrogateescape")
    (root / "accounts.yaml").write_text(accounts_text, encoding="utf-8", errors="surrogateescape")
    return config


def assert_loads_or_one_clear_line(config: Path, *, first_run: bool) -> None:
    try:
        load_config(config, first_run=first_run)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        assert ".yaml" in message or "configuration" in message


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hostile_texts)
def test_hostile_settings_give_one_line_and_change_no_file(tmp_path, text):
    config = config_dir(tmp_path / "hostile", settings_text=text)
    before = {p.name: p.read_bytes() for p in config.parent.iterdir()}
    assert_loads_or_one_clear_line(config, first_run=False)
    assert {p.name: p.read_bytes() for p in config.parent.iterdir()} == before


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hostile_texts)
def test_hostile_accounts_give_one_line_and_are_never_rewritten_on_reload(tmp_path, text):
    config = config_dir(tmp_path / "hostile", accounts_text=text)
    before = (config.parent / "accounts.yaml").read_bytes()
    assert_loads_or_one_clear_line(config, first_run=False)
    assert (config.parent / "accounts.yaml").read_bytes() == before


@pytest.mark.parametrize("text", HOSTILE_SNIPPETS)
def test_known_hostile_snippets_are_refused_in_one_line(tmp_path, text):
    for config in (config_dir(tmp_path / "s", settings_text=text), config_dir(tmp_path / "a", accounts_text=text)):
        assert_loads_or_one_clear_line(config, first_run=True)


async def test_reload_with_a_hostile_file_keeps_the_last_good_configuration(tmp_path):
    config = config_dir(tmp_path)
    service = Service(load_config(config))
    (tmp_path / "accounts.yaml").write_text(HOSTILE_SNIPPETS[0])
    with pytest.raises(ConfigError):
        await service.reload(config)
    assert [a.name for a in service.accounts.accounts] == ["ci"] and service.proxy_key == PROXY_KEY
    assert "accounts.yaml" in (service.config_error or "")


def test_secrets_lists_every_credential_and_the_proxy_key(tmp_path):
    service = Service(load_config(config_dir(tmp_path)))
    assert set(service.secrets()) == {PROXY_KEY, "sk-ant-api03-ci-key-secret"}


async def test_no_account_message_calls_a_failing_token_endpoint_an_outage_and_asks_a_login_only_where_needed(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    accounts = yaml.safe_dump({"proxy_key": PROXY_KEY, "accounts": [
        {"name": "down", "type": "oauth", "access_token": "sk-ant-oat01-a", "refresh_token": "sk-ant-ort01-a",
         "expires_at": 1000},
        {"name": "gone", "type": "oauth", "access_token": "sk-ant-oat01-b", "refresh_token": "sk-ant-ort01-b"},
    ]})
    config = config_dir(tmp_path, f"state_file: {tmp_path / 'state.json'}\n"
                                  f"oauth_token_url: http://127.0.0.1:{closed}/v1/oauth/token\n", accounts)
    service = Service(load_config(config))
    oauth_delays, oauth.RETRY_DELAYS_S = oauth.RETRY_DELAYS_S, (0.0, 0.0)
    try:
        with pytest.raises(RefreshFailed):
            await service.credentials.fresh("down")
    finally:
        oauth.RETRY_DELAYS_S = oauth_delays
    message = service.no_account_message()
    assert "'down' cannot refresh its token" in message and f"cannot reach 127.0.0.1:{closed}" in message
    assert "login" not in message

    service.router.mark_needs_login("gone", True)
    message = service.no_account_message()
    assert "'gone' need a new login: run `teamclaude login`" in message
    assert "'down'" in message and "'down' need" not in message
