from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from routing.config import RoutingConfig
from teamclaude import settings as settings_module
from teamclaude.settings import (
    SETTINGS_KEYS,
    Settings,
    SettingsError,
    example_config_text,
    load_settings,
    parse_settings,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file_gives_defaults_beside_it(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "config.yaml")
    assert settings.port == 3456
    assert settings.accounts_file == tmp_path / "accounts.yaml"
    assert settings.path == tmp_path / "config.yaml"
    assert not (tmp_path / "config.yaml").exists()


def test_create_copies_the_example_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.yaml"
    settings = load_settings(path, create=True)
    assert path.read_text() == example_config_text()
    assert settings == Settings.defaults(path)
    path.write_text("port: 4000\n")
    assert load_settings(path, create=True).port == 4000


def test_empty_and_comment_only_files_give_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).switch_threshold == 0.98
    assert load_settings(write(tmp_path, "# nothing\n")).failover == "transparent"


def test_values_are_converted(tmp_path: Path) -> None:
    text = (
        "port: 4000\n"
        "switch_threshold: 0.9\n"
        "ramp_tiers: {16h: 8, 8h: 100, 2d: 2}\n"
        "backoff_ladder_s: [30, 60]\n"
        "failover: client\n"
        "log_dir: logs\n"
        "accounts_file: ~/secrets/acc.yaml\n"
        "upstream: http://127.0.0.1:9999/\n"
        "telemetry: answer\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.port == 4000
    assert settings.ramp_tiers == ((8.0, 100.0), (16.0, 8.0), (48.0, 2.0))
    assert settings.backoff_ladder_s == (30.0, 60.0)
    assert settings.failover == "client"
    assert settings.log_dir == tmp_path / "logs"
    assert settings.accounts_file == Path.home() / "secrets" / "acc.yaml"
    assert settings.upstream == "http://127.0.0.1:9999"
    assert settings.telemetry == "answer"


def test_routing_config_carries_every_routing_field(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "pace_tie_band: 0.2\nmax_inflight_per_account: 2\n"))
    config = settings.routing_config()
    assert isinstance(config, RoutingConfig)
    assert config.pace_tie_band == 0.2
    assert config.max_inflight_per_account == 2
    for f in dataclasses.fields(RoutingConfig):
        assert getattr(config, f.name) == getattr(settings, f.name)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    message = error_for(tmp_path, "port: 1\n\n\nprot: 3\n")
    assert re.fullmatch(r".*config\.yaml line 4: unknown key 'prot' \(did you mean 'port'\?\)", message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port: abc\n", "line 1: 'port' must be an integer 0-65535 (0 picks a free port), got 'abc'"),
        ("port: 70000\n", "'port' must be an integer 0-65535 (0 picks a free port), got 70000"),
        ("port: true\n", "'port' must be an integer"),
        ("\n\nswitch_threshold: 1.5\n", "line 3: 'switch_threshold' must be a number above 0 and at most 1"),
        ("five_hour_warn: 0\n", "'five_hour_warn' must be a number above 0"),
        ("hold_budget_s: 541\n", "Claude Code gives up on a request after 600 s"),
        ("client_retry_after_max_s: 90\n", "Claude Code gives up"),
        ("failover: sometimes\n", "'failover' must be 'transparent' or 'client', got 'sometimes'"),
        ("telemetry: quiet\n", "'telemetry' must be one of pass, answer, drop, got 'quiet'"),
        ("telemetry: false\n", "'telemetry' must be one of pass, answer, drop, got false"),
        ("probe_gate: yes please\n", "'probe_gate' must be true or false"),
        ("ramp_tiers: {soon: 3}\n", "'ramp_tiers' has the bound 'soon'"),
        ("ramp_tiers: {8h: -1}\n", "'ramp_tiers' weight for '8h'"),
        ("ramp_tiers: [1, 2]\n", "'ramp_tiers' must be a mapping"),
        ("backoff_ladder_s: [60, -1]\n", "'backoff_ladder_s' must be a list of positive seconds"),
        ("backoff_ladder_s: []\n", "'backoff_ladder_s' must be a list of positive seconds"),
        ("upstream: api.anthropic.com\n", "'upstream' must be an http:// or https:// URL"),
        ("oauth_token_url: ftp://x/y\n", "'oauth_token_url' must be an http:// or https:// URL"),
        ("listen_host: ''\n", "'listen_host' must be a host name"),
        ("port:\n", "'port' has no value; give one or remove the line to use the default (3456)"),
        ("warm_window_s: 4000\n", "'binding_evict_s' (1800) must be at least 'warm_window_s' (4000)"),
        ("port: 1\nport: 2\n", "line 2: 'port' is set twice (also on line 1)"),
        ("- port\n", "line 1: expected 'key: value' lines"),
        ("port: 1\nupstream: [\n", "line 3: not valid YAML"),
        ("port: 1\n\nproxy_key: tc-abc\n", "line 3: 'proxy_key' is not set here: it lives in accounts.yaml"),
        ("port: 1\nblocked_models: 3\n", "line 2: 'blocked_models' must be a list of model globs"),
        ("blocked_models: ['claude-*', '']\n", "every model glob must be a non-empty string"),
        ("\nmodel_routes: [a, b]\n", "line 2: 'model_routes' must map model globs to account lists"),
        ("model_routes:\n  claude-opus-*: []\n", "line 1: 'model_routes' rule 'claude-opus-*' must list at least one"),
        ("model_routes: {claude-*: [work, 3]}\n", "'model_routes' rule 'claude-*': account names must be"),
    ],
)
def test_bad_values_name_line_key_and_value(tmp_path: Path, text: str, expected: str) -> None:
    message = error_for(tmp_path, text)
    assert expected in message
    assert message.startswith(str(tmp_path / "config.yaml") + " line ")


def test_proxy_key_value_is_not_echoed(tmp_path: Path) -> None:
    assert "tc-secretvalue" not in error_for(tmp_path, "proxy_key: tc-secretvalue\n")


def test_every_key_has_a_converter_and_dataclass_field() -> None:
    assert set(settings_module._CONVERTERS) == set(SETTINGS_KEYS)
    assert "path" not in SETTINGS_KEYS


def test_example_parses_to_defaults_and_uncommented_too(tmp_path: Path) -> None:
    text = example_config_text()
    path = tmp_path / "config.yaml"
    assert parse_settings(text, path) == Settings.defaults(path)
    uncommented = re.sub(r"(?m)^# ([a-z_]+:)", r"\1", text)
    settings = parse_settings(uncommented, path)
    defaults = Settings.defaults(path)
    for key in SETTINGS_KEYS:
        if key != "state_file":  # the example shows the ~/.local/state fallback literally
            assert getattr(settings, key) == getattr(defaults, key), key


def test_example_documents_every_key_with_an_explanation() -> None:
    lines = example_config_text().splitlines()
    key_line = re.compile(r"# [a-z_]+: ")
    for key in SETTINGS_KEYS:
        matches = [i for i, line in enumerate(lines) if line.startswith(f"# {key}: ")]
        assert len(matches) == 1, key
        above = matches[0] - 1
        while key_line.match(lines[above]):  # keys documented together share one comment
            above -= 1
        assert lines[above].startswith("# ") and len(lines[above]) > 12, key


def test_root_example_is_the_packaged_one() -> None:
    assert (REPO / "config.example.yaml").read_text() == example_config_text()


def test_model_rules_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    text = "blocked_models: ['*-20240229']\nmodel_routes:\n  claude-opus-*: [work]\n  'claude-*': [home, work]\n"
    settings = parse_settings(text, path)
    assert settings.model_rules().blocked == ("*-20240229",)
    assert settings.model_rules().routes == (("claude-opus-*", ("work",)), ("claude-*", ("home", "work")))


@pytest.mark.parametrize("option", ["foo=bar", "socket_timeout=abc"])
def test_a_redis_url_option_the_client_rejects_is_a_one_line_error(tmp_path: Path, option: str) -> None:
    message = error_for(tmp_path, f"shared_state: redis://:secret-pw@127.0.0.1:6379/0?{option}\n")
    assert "'shared_state'" in message and option.split("=")[0] in message and "secret-pw" not in message


def test_a_redis_url_with_a_wrong_scheme_shows_no_password(tmp_path: Path) -> None:
    message = error_for(tmp_path, "shared_state: http://secret-pw@127.0.0.1:6379/0\n")
    assert "'shared_state'" in message and "secret-pw" not in message
