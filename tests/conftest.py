import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

settings.register_profile("default", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True)
def private_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user's settings, accounts or state."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.delenv("TEAMCLAUDE_CONFIG", raising=False)


# ---- a real small file system, for disk-full and read-only tests ----


class SmallFs:
    """A 1 MiB tmpfs mounted at `path` that a test can fill, free, and remount read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Take every free block, so the next write of any size fails with ENOSPC."""
        with self._filler.open("ab", buffering=0) as filler:
            try:
                while filler.write(b"\0" * 4096):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        probe = self.path / "probe"
        try:
            probe.write_bytes(b"x")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        else:
            raise AssertionError("the file system still takes writes after fill()")

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)
        (self.path / "probe").unlink(missing_ok=True)

    def read_only(self) -> None:
        _run("mount", "-o", "remount,ro", str(self.path))

    def read_write(self) -> None:
        _run("mount", "-o", "remount,rw", str(self.path))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    """A real tmpfs (needs root, or CAP_SYS_ADMIN, to mount); the test is skipped without it."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    try:
        _run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point))
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        pytest.skip(f"cannot mount a tmpfs for a real full / read-only file system: {detail}")
    try:
        yield SmallFs(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False, timeout=60)


# ---- a real Redis, for shared state ----


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator["RedisServer"]:
    """A real redis-server on a free loopback port, stopped at the end. Missing from the
    machine: the test is skipped, except in CI (`.ci/run` installs it), where it fails."""
    from tests.redis_server import RedisServer, redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(binary, directory).start()
    try:
        yield server
    finally:
        server.stop()
