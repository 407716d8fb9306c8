"""Turning raw terminal bytes (cbreak mode) into key names."""

from __future__ import annotations

_SEQUENCES = {
    b"\x1b[A": "up",
    b"\x1b[B": "down",
    b"\x1b[C": "right",
    b"\x1b[D": "left",
    b"\x1bOA": "up",
    b"\x1bOB": "down",
    b"\x1bOC": "right",
    b"\x1bOD": "left",
}
_SINGLE = {
    b"\r": "enter",
    b"\n": "enter",
    b"\x7f": "backspace",
    b"\x08": "backspace",
    b"\x1b": "esc",
    b"\x03": "ctrl-c",
    b"\x15": "ctrl-u",
}


def parse_keys(data: bytes) -> list[str]:
    """Key names in `data`: printable characters as themselves, specials by name.

    An escape followed by something that is not a known sequence counts as Esc, then the
    rest is read normally; unknown CSI sequences are dropped whole.
    """
    keys: list[str] = []
    index = 0
    while index < len(data):
        for sequence, name in _SEQUENCES.items():
            if data.startswith(sequence, index):
                keys.append(name)
                index += len(sequence)
                break
        else:
            if data.startswith(b"\x1b[", index):
                index = _skip_csi(data, index + 2)
                continue
            byte = data[index : index + 1]
            if byte in _SINGLE:
                keys.append(_SINGLE[byte])
                index += 1
                continue
            char, width = _decode_char(data, index)
            if char is not None and char.isprintable():
                keys.append(char)
            index += width
    return keys


def _skip_csi(data: bytes, index: int) -> int:
    while index < len(data) and not 0x40 <= data[index] <= 0x7E:
        index += 1
    return index + 1


def _decode_char(data: bytes, index: int) -> tuple[str | None, int]:
    for width in (1, 2, 3, 4):
        try:
            return data[index : index + width].decode("utf-8"), width
        except UnicodeDecodeError:
            continue
    return None, 1
