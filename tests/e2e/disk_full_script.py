"""Loaded into mitmdump next to the addon (`-s`): the state writer's disk is full while the
file named by $TEAMCLAUDE_TEST_DISK_FULL exists. Each refused write appends a line to that
file, so a test can wait for a number of failed writes instead of sleeping."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from teamclaude import statefile

_FLAG = Path(os.environ["TEAMCLAUDE_TEST_DISK_FULL"])
_real_atomic_write = statefile.atomic_write


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    if _FLAG.exists():
        with _FLAG.open("a") as flag:
            flag.write("refused\n")
        raise OSError(errno.ENOSPC, "No space left on device")
    _real_atomic_write(path, data, mode)


statefile.atomic_write = _atomic_write
