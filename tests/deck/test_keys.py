from deck.keys import parse_keys


def test_plain_and_special_keys():
    assert parse_keys(b"sq") == ["s", "q"]
    assert parse_keys(b"\r\n\x7f") == ["enter", "enter", "backspace"]
    assert parse_keys(b"\x1b[A\x1b[B\x1bOA") == ["up", "down", "up"]


def test_lone_escape_and_unknown_sequences():
    assert parse_keys(b"\x1b") == ["esc"]
    assert parse_keys(b"\x1bx") == ["esc", "x"]
    assert parse_keys(b"\x1b[1;5Cz") == ["z"]  # ctrl-right: dropped whole


def test_utf8_text():
    assert parse_keys("é→".encode()) == ["é", "→"]
