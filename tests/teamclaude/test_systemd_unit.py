"""The systemd user unit's text: quoting by systemd's rules, and `systemd-analyze verify` on it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from teamclaude.cli_service import proxy_command, service_environment
from teamclaude.systemd_unit import UNIT_NAME, UnitError, render, unit_path

SETTINGS = {"TEAMCLAUDE_CONFIG": "/home/ada/.config/teamclaude/config.yaml"}


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_the_unit_runs_the_command_with_the_settings_and_stops_cleanly() -> None:
    text = render(["/opt/tc/bin/teamclaude", "server"], SETTINGS)
    assert lines_starting(text, "ExecStart=") == ['ExecStart="/opt/tc/bin/teamclaude" "server"']
    assert lines_starting(text, "Environment=") == [
        'Environment="TEAMCLAUDE_CONFIG=/home/ada/.config/teamclaude/config.yaml"']
    for setting in ("Type=exec", "KillSignal=SIGINT", "TimeoutStopSec=30", "Restart=on-failure", "RestartSec=5",
                    "UMask=0077", "NoNewPrivileges=yes", "WantedBy=default.target"):
        assert setting in text.splitlines()
    assert "PrivateTmp" not in text  # see the module docstring: not for user units


def test_words_with_spaces_quotes_backslashes_and_specifiers_are_quoted_by_systemds_rules() -> None:
    text = render(["/home/a b/100%/$HOME/teamclaude", "server", "--", "--set", 'v=a b "c" 5% $HOME \\n'],
                  {"TEAMCLAUDE_CONFIG": '/home/a b/"q"/100%/$HOME\\x/config.yaml'})
    # The program path: `%` doubled; `$` stays (the path is never expanded). Arguments: `\`
    # and `"` escaped, `%` doubled, and `$` doubled (`$HOME` would be replaced at start).
    assert lines_starting(text, "ExecStart=") == [
        'ExecStart="/home/a b/100%%/$HOME/teamclaude" "server" "--" "--set" "v=a b \\"c\\" 5%% $$HOME \\\\n"'
    ]
    # Environment=: `$` has no meaning there; the rest as for arguments.
    assert lines_starting(text, "Environment=") == [
        'Environment="TEAMCLAUDE_CONFIG=/home/a b/\\"q\\"/100%%/$HOME\\\\x/config.yaml"']


@pytest.mark.parametrize("char", ['"', "'", "\\"])
def test_a_program_path_systemd_would_refuse_is_refused_here(char: str) -> None:
    with pytest.raises(UnitError, match="quote or a backslash"):
        render([f"/opt/a{char}b/teamclaude", "server"], {})


@pytest.mark.parametrize("bad", ["/tmp/a\nb", "/tmp/a\tb", "/tmp/a\x7fb", "/tmp/a\udcffb"])
def test_what_a_unit_cannot_hold_is_refused_by_name(bad: str) -> None:
    with pytest.raises(UnitError, match="the program path"):
        render([bad, "server"], {})
    with pytest.raises(UnitError, match="the value of TEAMCLAUDE_CONFIG"):
        render(["/bin/true"], {"TEAMCLAUDE_CONFIG": bad})


def test_a_relative_program_or_a_bad_variable_name_is_refused() -> None:
    with pytest.raises(UnitError, match="absolute path"):
        render(["teamclaude", "server"], {})
    with pytest.raises(UnitError, match="not an environment variable name"):
        render(["/bin/true"], {"1X": "y"})


def test_the_unit_goes_under_xdg_config_home_else_home() -> None:
    assert unit_path({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == Path("/x/cfg/systemd/user", UNIT_NAME)
    assert unit_path({"HOME": "/h"}) == Path("/h/.config/systemd/user", UNIT_NAME)


def test_the_command_is_this_environments_entry_point_else_the_interpreter(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    assert proxy_command([], executable=str(python)) == [str(python), "-m", "teamclaude.cli", "server"]
    python.parent.mkdir()
    (tmp_path / "bin" / "teamclaude").write_text("#!/bin/sh\n")
    assert proxy_command(["--set", "a=b"], executable=str(python)) == [
        str(tmp_path / "bin" / "teamclaude"), "server", "--", "--set", "a=b"]


def test_the_environment_carries_the_settings_and_a_set_state_directory() -> None:
    assert service_environment(Path("/c/config.yaml"), {}) == {
        "TEAMCLAUDE_CONFIG": "/c/config.yaml", "PYTHONUNBUFFERED": "1"}
    assert service_environment(Path("/c/config.yaml"), {"XDG_STATE_HOME": "/s"})["XDG_STATE_HOME"] == "/s"


# ---- systemd-analyze verify ------------------------------------------------------------------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run does)")


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --user` on `text` as teamclaude.service. No running systemd is
    needed; the user manager it simulates wants a runtime directory, given here."""
    assert SYSTEMD_ANALYZE is not None
    unit = tmp_path / "units" / UNIT_NAME
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--user", str(unit)], capture_output=True, text=True,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, timeout=60)


def complaints(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What systemd-analyze said about our unit (an unknown key is only a warning, exit 0)."""
    return [line for line in (result.stdout + result.stderr).splitlines() if UNIT_NAME in line]


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_unit_for_this_environment(tmp_path: Path) -> None:
    text = render(proxy_command(["--set", 'certs=*=/etc/tc/"cert" 1.pem', "--set", "a=$HOME 5% \\ ;"]),
                  service_environment(tmp_path / "config dir" / "config.yaml", {"XDG_STATE_HOME": str(tmp_path)}))
    result = verify(tmp_path, text)
    assert (result.returncode, complaints(result)) == (0, []), result.stdout + result.stderr


@needs_systemd_analyze
def test_systemd_analyze_finds_a_program_whose_path_needs_quoting(tmp_path: Path) -> None:
    program = tmp_path / "dir with spaces 100% $HOME ; [x] é" / "teamclaude"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    result = verify(tmp_path, render([str(program), "server"], SETTINGS))
    assert (result.returncode, complaints(result)) == (0, []), result.stdout + result.stderr


@needs_systemd_analyze
def test_systemd_analyze_refuses_a_program_that_is_not_there(tmp_path: Path) -> None:
    """The check above has teeth: verify looks for the program at the path it read."""
    result = verify(tmp_path, render([str(tmp_path / "no such dir" / "teamclaude"), "server"], SETTINGS))
    assert result.returncode != 0
    assert any("no such dir/teamclaude" in line for line in complaints(result)), result.stderr
