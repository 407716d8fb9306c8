"""`teamclaude service install|uninstall`: the unit file written where systemd looks for it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from teamclaude.cli import main
from teamclaude.systemd_unit import UNIT_NAME


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A settings file with the proxy key and a token in the accounts file beside it."""
    path = tmp_path / "team config" / "config.yaml"
    path.parent.mkdir()
    path.write_text("port: 3999\n")
    (path.parent / "accounts.yaml").write_text(
        "proxy_key: tc-secret-proxy-key\naccounts:\n- {name: a, type: apikey, api_key: sk-ant-api03-secret}\n")
    monkeypatch.setenv("TEAMCLAUDE_CONFIG", str(path))
    return path


def unit_file() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user" / UNIT_NAME


def test_install_writes_the_unit_and_prints_the_lines_to_run(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "install"]) == 0
    out = capsys.readouterr().out
    text = unit_file().read_text()
    assert f'Environment="TEAMCLAUDE_CONFIG={settings_file}"' in text
    assert stat.S_IMODE(unit_file().stat().st_mode) == 0o644
    assert "tc-secret-proxy-key" not in text and "sk-ant" not in text
    assert "systemctl --user daemon-reload && systemctl --user enable --now teamclaude\n" in out
    assert "loginctl enable-linger $USER\n" in out
    assert "restart" not in out
    assert main(["service", "install"]) == 0  # again: an update, with how to apply it
    assert "systemctl --user daemon-reload && systemctl --user restart teamclaude\n" in capsys.readouterr().out


def test_install_print_shows_the_unit_and_writes_nothing(settings_file: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(settings_file.parent)
    monkeypatch.delenv("TEAMCLAUDE_CONFIG")
    assert main(["service", "install", "--config", "config.yaml", "--print", "--", "--set", "certs=*=c.pem"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Written by `teamclaude service install`")
    assert f'Environment="TEAMCLAUDE_CONFIG={settings_file}"' in out  # made absolute
    assert '"server" "--" "--set" "certs=*=c.pem"' in out
    assert not unit_file().exists()


def test_install_without_a_settings_file_names_the_command_that_creates_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "install"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no settings file at ~/.config/teamclaude/config.yaml yet: run teamclaude login to create it" in err
    assert not unit_file().exists()


def test_install_with_a_named_missing_file_says_how_to_create_that_one(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "team" / "config.yaml"
    assert main(["service", "install", "--config", str(missing)]) == 1
    assert f"run TEAMCLAUDE_CONFIG={missing} teamclaude login to create it" in capsys.readouterr().err


def test_install_refuses_broken_settings(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings_file.write_text("port: 3999\nprot: 4\n")
    assert main(["service", "install"]) == 1
    assert "unknown key 'prot'" in capsys.readouterr().err
    assert not unit_file().exists()


def test_uninstall_removes_the_unit_and_its_enable_link(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "install"]) == 0
    wants = unit_file().parent / "default.target.wants"
    wants.mkdir()
    (wants / UNIT_NAME).symlink_to(unit_file())  # what `systemctl --user enable` makes
    capsys.readouterr()
    assert main(["service", "uninstall"]) == 0
    assert "systemctl --user stop teamclaude; systemctl --user daemon-reload" in capsys.readouterr().out
    assert not unit_file().exists() and not (wants / UNIT_NAME).is_symlink()
    assert main(["service", "uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_a_unit_teamclaude_did_not_write_is_left_alone(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit_file().parent.mkdir(parents=True)
    unit_file().write_text("[Service]\nExecStart=/usr/local/bin/my-own-proxy\n")
    assert main(["service", "install"]) == 1
    assert "was not written by teamclaude" in capsys.readouterr().err
    assert main(["service", "uninstall"]) == 1
    assert "was not written by teamclaude" in capsys.readouterr().err
    assert unit_file().read_text() == "[Service]\nExecStart=/usr/local/bin/my-own-proxy\n"


def test_service_without_an_action_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service"]) == 0
    out = capsys.readouterr().out
    assert "install" in out and "uninstall" in out and "docs/deploy.md" in out


def test_an_unwritable_unit_directory_is_one_line(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit_file().parent.parent.mkdir(parents=True)
    unit_file().parent.write_text("a file where the directory should be\n")
    assert main(["service", "install"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the unit" in err
