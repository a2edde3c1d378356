"""How a drop folder is watched: kernel events or polling, decided from its filesystem type.

inotify reports only changes made through the local kernel: a file written into an NFS, SMB,
sshfs or other FUSE folder by another host (or by the FUSE server itself) produces no event at
all, so such folders are polled. The mount table is parsed here (text in, values out); reading
it is the adapter's job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class WatchMode(StrEnum):
    AUTO = "auto"  # configured only: decided per folder from its filesystem type
    EVENTS = "events"  # the platform's native observer (inotify on Linux)
    POLL = "poll"  # a directory snapshot every poll interval


WATCH_MODES = tuple(WatchMode)
USED_MODES = (WatchMode.EVENTS, WatchMode.POLL)  # what a folder ends up with

# Filesystems whose files can change without the local kernel seeing it: network and cluster
# filesystems (another client writes), host-shared folders of virtual machines (the host
# writes), and automount points (an NFS share usually sits behind them). Every FUSE type
# (`fuse`, `fuseblk`, `fuse.sshfs`, `fuse.glusterfs`, ...) is matched by its prefix.
NETWORK_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "9p",
        "afs",
        "coda",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "orangefs",
        "pvfs2",
        "ocfs2",
        "gfs2",
        "davfs",
        "virtiofs",
        "vboxsf",
        "vmhgfs",
        "autofs",
    }
)
FUSE_PREFIX = "fuse"
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, the parts we read."""

    mount_point: str
    fs_type: str
    source: str


@dataclass(frozen=True)
class WatchDecision:
    mode: WatchMode  # EVENTS or POLL, never AUTO
    fs_type: str | None  # None: the mount table did not say
    why: str  # for the start-up log line and `check-config`


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """The mounts of a mountinfo text, in its order (later lines mount over earlier ones).

    A line is `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER`;
    spaces, tabs, newlines and backslashes in paths are written as octal escapes (`\\040`).
    Lines that do not have that shape are skipped.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if len(fields) < separator + 3:
            continue
        mount_point = unescape_mount_path(fields[4])
        fs_type, source = fields[separator + 1], unescape_mount_path(fields[separator + 2])
        if mount_point.startswith("/") and fs_type:
            mounts.append(Mount(mount_point, fs_type, source))
    return tuple(mounts)


def unescape_mount_path(text: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), text)


def mount_of(real_path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount a resolved absolute path lives on: the longest mount point that is the path or
    one of its parents (by whole components: /srv/a is not under /srv/ab). Of several mounts on
    the same point, the last one mounted is the one visible."""
    best: Mount | None = None
    for mount in mounts:
        if _contains(mount.mount_point, real_path) and (
            best is None or len(mount.mount_point) >= len(best.mount_point)
        ):
            best = mount
    return best


def _contains(mount_point: str, path: str) -> bool:
    if mount_point == "/":
        return path.startswith("/")
    point = mount_point.rstrip("/")
    return path == point or path.startswith(point + "/")


def is_network_fs(fs_type: str) -> bool:
    """True where inotify can miss writes: network, cluster, host-shared and FUSE filesystems."""
    kind = fs_type.lower()
    return kind in NETWORK_FS_TYPES or kind.startswith(FUSE_PREFIX)


def decide_watch_mode(configured: WatchMode, fs_type: str | None) -> WatchDecision:
    """The mode a folder is watched with. `auto` polls unless the filesystem is known to be
    local: missing a drop forever is worse than polling a local folder."""
    if configured == WatchMode.EVENTS:
        return WatchDecision(WatchMode.EVENTS, fs_type, "configured")
    if configured == WatchMode.POLL:
        return WatchDecision(WatchMode.POLL, fs_type, "configured")
    if fs_type is None:
        return WatchDecision(WatchMode.POLL, None, "auto: filesystem type unknown")
    if is_network_fs(fs_type):
        return WatchDecision(WatchMode.POLL, fs_type, f"auto: {fs_type} is a network or FUSE fs")
    return WatchDecision(WatchMode.EVENTS, fs_type, f"auto: {fs_type} is local")


def settle_window_s(mode: WatchMode, settle_s: float, poll_interval_s: float) -> float:
    """How long a file must keep its size and mtime before it is taken when no close event
    can vouch for it. A polled folder sits on a share whose client caches file attributes for
    seconds (NFS: acregmin, 3 s by default), so a file another host is still writing can look
    unchanged for that long: there the window is at least one poll interval too."""
    if mode == WatchMode.POLL:
        return max(settle_s, poll_interval_s)
    return settle_s
