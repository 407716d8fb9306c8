import time

import pytest

from teamclaude.accounts_store import AccountsError, parse_accounts
from teamclaude.settings import SettingsError, parse_settings
from teamclaude.yamlsafe import printable

LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
    for i in range(9)
)

HOSTILE = {
    "alias bomb": (LAUGHS, "anchors and aliases"),
    "python tag": ("port: !!python/object/apply:os.system ['true']\n", "tags like"),
    "custom tag": ("port: !foo 3\n", "tags like"),
    "deep nesting": ("port: " + "[" * 3000 + "]" * 3000 + "\n", "nest"),
    "huge integer": ("port: " + "9" * 5000 + "\n", "unreadable value"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_settings_get_one_line_quickly(tmp_path, name):
    text, expected = HOSTILE[name]
    started = time.monotonic()
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, tmp_path / "config.yaml")
    assert time.monotonic() - started < 1
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_accounts_get_one_line_quickly(tmp_path, name):
    text, expected = HOSTILE[name]
    text = text.replace("port:", "accounts:", 1)
    started = time.monotonic()
    with pytest.raises(AccountsError) as caught:
        parse_accounts(text, tmp_path / "accounts.yaml")
    assert time.monotonic() - started < 1
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_control_characters_are_escaped_in_errors(tmp_path):
    with pytest.raises(SettingsError) as caught:
        parse_settings('"po\\x1b[2Jrt": 1\n', tmp_path / "config.yaml")
    assert "\x1b" not in str(caught.value) and "\\x1b" in str(caught.value)
    assert printable("a\tb\x07") == "a\\tb\\x07"
