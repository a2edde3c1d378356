"""The kernel's mount table: which filesystem type a folder lives on (/proc/self/mountinfo)."""

from __future__ import annotations

import os
from pathlib import Path

from mirror.core.watch_modes import Mount, mount_of, parse_mountinfo

MOUNTINFO = Path("/proc/self/mountinfo")


def read_mounts(mountinfo: Path = MOUNTINFO) -> tuple[Mount, ...]:
    """The current mounts; none where the table cannot be read (not Linux, no /proc)."""
    try:
        return parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError:
        return ()


def filesystem_type(folder: Path, mounts: tuple[Mount, ...]) -> str | None:
    """The type of the filesystem holding `folder` (after symlinks), or None if unknown."""
    mount = mount_of(os.path.realpath(folder), mounts)
    return mount.fs_type if mount is not None else None
