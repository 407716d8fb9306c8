"""Loaded into mitmdump next to the addon (`-s`): while the file named by
$TEAMCLAUDE_TEST_STALL_ACCOUNTS exists, a write of the accounts file stops before it starts
(after the token endpoint answered and before the new file exists) and never returns; it
appends a line to that file first, so a test knows when to `kill -9` the proxy."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from teamclaude import accounts_store

_FLAG = Path(os.environ["TEAMCLAUDE_TEST_STALL_ACCOUNTS"])
_real_atomic_write = accounts_store.atomic_write


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    if _FLAG.exists():
        with _FLAG.open("a") as flag:
            flag.write("stalled\n")
        threading.Event().wait()  # in a worker thread: only the kill ends it
    _real_atomic_write(path, data, mode)


accounts_store.atomic_write = _atomic_write
