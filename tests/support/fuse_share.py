"""A folder seen through a FUSE mount (bindfs), standing in for a network share in tests.

Writes made directly into the backing folder reach the mount, but the kernel raises no inotify
event on the mount for them: exactly what a drop folder on NFS, SMB or sshfs sees when another
host writes into it. A bind mount would not do (inotify marks inodes, and a bind mount shares
them), so the second mount has to be a filesystem of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def fuse_unavailable() -> str | None:
    """Why no FUSE share can be made here, or None."""
    if shutil.which("bindfs") is None:
        return "bindfs (Debian package bindfs) is not installed"
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse"
    if os.geteuid() != 0 and shutil.which("fusermount") is None:
        return "not root and no fusermount"
    return None


@contextmanager
def fuse_share(backing: Path, mount_point: Path) -> Iterator[Path]:
    """Mount `backing` at `mount_point` through bindfs; skip the test if that fails here."""
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
    backing.mkdir(parents=True, exist_ok=True)
    mount_point.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        ["bindfs", "--no-allow-other", str(backing), str(mount_point)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if made.returncode != 0:
        pytest.skip(f"bindfs could not mount here: {made.stderr.strip()}")
    try:
        yield mount_point
    finally:
        unmount = ["fusermount", "-u", str(mount_point)]
        if subprocess.run(unmount, capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)
