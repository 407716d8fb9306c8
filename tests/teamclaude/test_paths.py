from __future__ import annotations

from pathlib import Path

from teamclaude.paths import config_path, default_state_path


def test_config_path_prefers_explicit_env() -> None:
    env = {"TEAMCLAUDE_CONFIG": "/etc/tc.yaml", "XDG_CONFIG_HOME": "/x", "HOME": "/h"}
    assert config_path(env) == Path("/etc/tc.yaml")


def test_config_path_uses_xdg_then_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path("/x/teamclaude/config.yaml")
    assert config_path({"HOME": "/h"}) == Path("/h/.config/teamclaude/config.yaml")


def test_state_path_uses_xdg_then_home() -> None:
    assert default_state_path({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/teamclaude/state.json")
    assert default_state_path({"HOME": "/h"}) == Path("/h/.local/state/teamclaude/state.json")
