"""Disks that fail, made by the tests themselves: a size-limited tmpfs (a disk that fills up) and immutable files
(a file nobody may write, root included: root ignores file modes, and a read-only remount is refused while a
process holds the file open for writing, as the API does).

Both need root (the CI containers run the tests as root); elsewhere `require()` skips locally and fails under
CI=true, with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import require

__all__ = ["fill", "immutable", "tmpfs"]


def _mount(*args: str) -> None:
    completed = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    if completed.returncode != 0:
        raise AssertionError(f"mount {' '.join(args)} failed: {completed.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def _require_mounting() -> None:
    require(os.geteuid() == 0, "mounting a small tmpfs or a read-only bind mount needs root (the CI containers are)")


@contextmanager
def tmpfs(path: Path, *, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "8m") mounted at `path` (made if missing); unmounted at the end."""
    _require_mounting()
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    except AssertionError as exc:
        require(False, f"cannot mount a tmpfs here: {exc}")
    try:
        yield path
    finally:
        _umount(path)


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The files made immutable (`chattr +i`: no write, even through a descriptor already open, even by root, who
    ignores file modes) until the end; needs root and a filesystem with inode flags (ext4, xfs, btrfs)."""
    _require_mounting()
    done: list[Path] = []
    try:
        for path in paths:
            completed = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
            require(completed.returncode == 0, f"chattr +i {path} failed: {completed.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def fill(path: Path, *, chunk: int = 64 * 1024) -> int:
    """Write `path` until its filesystem has no byte left (ENOSPC); returns the bytes written."""
    written = 0
    block = b"\0" * chunk
    with path.open("wb", buffering=0) as out:
        while chunk >= 1:
            try:
                written += out.write(block[:chunk])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2  # the last bytes, smaller and smaller, until not one more fits
    return written
