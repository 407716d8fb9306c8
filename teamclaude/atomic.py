"""Crash-safe file replacement for files that hold secrets or shared state."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file.

    The temp file lives in the same directory (so `os.replace` is a rename on one file
    system) and is created with `mode` from the start, so a secret is never readable by
    others even for a moment. The directory is fsynced after the rename so the new name
    survives a power loss. A missing parent directory is created 0700.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(parent)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def leftover_temp_files(path: Path) -> list[Path]:
    """Temp files of `atomic_write(path, ...)` calls that never renamed theirs (a crash).

    Only meaningful while no write of `path` can be running: under the file's own lock.
    """
    path = Path(path)
    try:
        return sorted(path.parent.glob(f".{_glob_escape(path.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return []


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
