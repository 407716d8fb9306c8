"""Write-ahead journal of rotated OAuth token pairs, beside the accounts file.

A refresh token is single use: once the token endpoint has answered, the old one is dead and
the new pair exists only in this process. Rewriting the whole accounts file takes a YAML
dump, a validation parse, a temp file, two fsyncs and a rename; a `kill -9` in between loses
the pair for good. So a pair is first appended here as one JSON line (one `write` of a few
hundred bytes, then fsync), and the accounts file is written after. Everything that writes
the accounts file (`AccountsStore.update`, under its lock) first adopts journal entries that
are newer than the file's pair (`obtained_at`), and removes the journal once the file holds
them. The file is 0600: it holds secrets, like the accounts file.

A line cut short by a crash is not valid JSON and is skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, repr=False)
class ReceivedPair:
    """A token pair as received for one account (`key` is `Account.key`)."""

    key: str
    name: str
    access_token: str
    refresh_token: str | None
    expires_at: int | None  # epoch milliseconds
    obtained_at: int  # epoch milliseconds when the pair was received

    def __repr__(self) -> str:
        return f"ReceivedPair(key={self.key!r}, name={self.name!r}, obtained_at={self.obtained_at})"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "access_token": self.access_token,
                "refresh_token": self.refresh_token, "expires_at": self.expires_at, "obtained_at": self.obtained_at}

    @classmethod
    def from_json(cls, data: Any) -> ReceivedPair | None:
        if not isinstance(data, dict):
            return None
        key, name, access = data.get("key"), data.get("name"), data.get("access_token")
        refresh, expires, obtained = data.get("refresh_token"), data.get("expires_at"), data.get("obtained_at")
        if not (isinstance(key, str) and isinstance(name, str) and isinstance(access, str) and access):
            return None
        if refresh is not None and not isinstance(refresh, str):
            return None
        if not isinstance(obtained, int) or not _millis(obtained) or (expires is not None and not _millis(expires)):
            return None
        return cls(key, name, access, refresh or None, expires, obtained)


def _millis(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class TokenJournal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, pair: ReceivedPair) -> None:
        """Add one pair durably (write, then fsync). Raises OSError when it cannot."""
        line = (json.dumps(pair.to_json(), separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, line)  # one write: a kill leaves the whole line or a cut one
            if written != len(line):
                raise OSError(f"short write to {self.path.name}")
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[ReceivedPair]:
        """Every complete entry, oldest first; none when the journal is missing or unreadable."""
        try:
            raw = self.path.read_bytes()
        except OSError:
            return []
        pairs = []
        for line in raw.split(b"\n"):
            try:
                pair = ReceivedPair.from_json(json.loads(line))
            except ValueError:
                continue
            if pair is not None:
                pairs.append(pair)
        return pairs
