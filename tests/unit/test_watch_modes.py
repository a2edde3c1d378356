"""How a drop folder is watched: events on local filesystems, polling where inotify is blind
(network, cluster, host-shared and FUSE filesystems), decided from the mount table."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.adapters.mounts import filesystem_type, read_mounts
from mirror.core.watch_modes import (
    Mount,
    WatchMode,
    decide_watch_mode,
    mount_of,
    parse_mountinfo,
    settle_window_s,
    unescape_mount_path,
)

LOCAL_TYPES = ["ext4", "ext3", "ext2", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "f2fs", "vfat"]
# where another host (or the FUSE server, or a VM's host) writes without the local kernel seeing
NETWORK_TYPES = [
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse",
    "fuseblk",
    "fuse.sshfs",
    "fuse.glusterfs",
    "fuse.rclone",
    "fuse.s3fs",
    "fuse.ceph-fuse",
    "9p",
    "afs",
    "ceph",
    "glusterfs",
    "lustre",
    "gpfs",
    "beegfs",
    "ocfs2",
    "gfs2",
    "virtiofs",
    "vboxsf",
    "autofs",
    "NFS4",  # the kernel writes types in lower case; an upper-case one is still a share
]


@pytest.mark.parametrize("fs_type", LOCAL_TYPES)
def test_auto_uses_events_on_a_local_filesystem(fs_type: str) -> None:
    decision = decide_watch_mode(WatchMode.AUTO, fs_type)
    assert decision.mode == WatchMode.EVENTS
    assert decision.fs_type == fs_type and fs_type in decision.why


@pytest.mark.parametrize("fs_type", NETWORK_TYPES)
def test_auto_polls_network_and_fuse_filesystems(fs_type: str) -> None:
    decision = decide_watch_mode(WatchMode.AUTO, fs_type)
    assert decision.mode == WatchMode.POLL
    assert fs_type in decision.why


def test_auto_polls_when_the_filesystem_type_is_unknown() -> None:
    """Polling a local folder costs a little; missing every drop on a share costs everything."""
    decision = decide_watch_mode(WatchMode.AUTO, None)
    assert decision.mode == WatchMode.POLL and "unknown" in decision.why


@pytest.mark.parametrize("fs_type", ["ext4", "nfs4", "fuse.sshfs", None])
@pytest.mark.parametrize("forced", [WatchMode.EVENTS, WatchMode.POLL])
def test_a_configured_mode_is_used_whatever_the_filesystem(
    forced: WatchMode, fs_type: str | None
) -> None:
    decision = decide_watch_mode(forced, fs_type)
    assert decision.mode == forced and decision.why == "configured"


def test_a_polled_folder_needs_a_file_quiet_for_a_whole_poll_interval() -> None:
    assert settle_window_s(WatchMode.POLL, 1.0, 5.0) == 5.0
    assert settle_window_s(WatchMode.POLL, 8.0, 5.0) == 8.0
    assert settle_window_s(WatchMode.EVENTS, 1.0, 5.0) == 1.0


MOUNTINFO = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "40 27 0:40 / /srv/incoming rw,relatime shared:7 - nfs4 filer:/export/in rw,vers=4.2\n"
    "41 27 0:41 / /srv/drop\\040box rw master:3 - fuse.sshfs user@host:/drops rw\n"
    "42 27 0:42 / /srv/in rw - tmpfs tmpfs rw\n"
    "43 40 0:43 /sub /srv/incoming/local rw - cifs //nas/share rw\n"
    "not a mountinfo line\n"
    "44 27 0:44 / /srv/stacked rw - ext4 /dev/vdb rw\n"
    "45 27 0:45 / /srv/stacked rw - nfs filer:/stacked rw\n"
)


def test_mountinfo_lines_give_mount_point_type_and_source() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert Mount("/", "ext4", "/dev/vda") == mounts[0]
    # optional fields (shared:7) before the separator are skipped
    assert Mount("/srv/incoming", "nfs4", "filer:/export/in") == mounts[1]
    # a space in a mount point is written \040
    assert Mount("/srv/drop box", "fuse.sshfs", "user@host:/drops") == mounts[2]
    assert len(mounts) == 7  # the malformed line is skipped


@pytest.mark.parametrize(
    ("path", "fs_type"),
    [
        ("/srv/incoming/a", "nfs4"),
        ("/srv/incoming", "nfs4"),
        ("/srv/incoming/local/x", "cifs"),  # the longest mount point wins
        ("/srv/drop box/x", "fuse.sshfs"),
        ("/srv/inbox", "ext4"),  # /srv/in is a prefix of the text, not a parent folder
        ("/srv/in/x", "tmpfs"),
        ("/srv/stacked/x", "nfs"),  # the last mount on a point hides the earlier one
        ("/home/user", "ext4"),
    ],
)
def test_a_folder_lives_on_the_longest_mount_point_above_it(path: str, fs_type: str) -> None:
    mount = mount_of(path, parse_mountinfo(MOUNTINFO))
    assert mount is not None and mount.fs_type == fs_type


def test_no_mount_table_means_no_known_type() -> None:
    assert mount_of("/srv/x", ()) is None


_COMPONENT = st.text(alphabet="ab \t\\", min_size=1, max_size=4)


def _escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@settings(derandomize=True, max_examples=200)
@given(st.lists(_COMPONENT, min_size=1, max_size=4), st.lists(_COMPONENT, max_size=3))
def test_the_mount_found_holds_the_path_and_no_deeper_mount_does(
    mount_parts: list[str], below: list[str]
) -> None:
    point = "/" + "/".join(mount_parts)
    text = (
        "1 0 0:1 / / rw - ext4 /dev/root rw\n"
        f"2 1 0:2 / {_escape(point)} rw - nfs4 filer:/x rw\n"
        f"3 1 0:3 / {_escape(point + 'z')} rw - tmpfs tmpfs rw\n"
    )
    mounts = parse_mountinfo(text)
    assert mounts[1].mount_point == point  # escapes round-trip
    path = "/".join([point, *below])
    found = mount_of(path, mounts)
    assert found is not None and found.fs_type == "nfs4"
    assert unescape_mount_path(_escape(path)) == path


def test_the_adapter_reads_the_type_of_a_folder_through_symlinks(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (tmp_path / "link").symlink_to(share)
    table = tmp_path / "mountinfo"
    table.write_text(
        "1 0 0:1 / / rw - ext4 /dev/root rw\n"
        f"2 1 0:2 / {_escape(str(share.resolve()))} rw - nfs4 filer:/x rw\n"
    )
    mounts = read_mounts(table)
    assert filesystem_type(tmp_path / "link", mounts) == "nfs4"
    assert filesystem_type(tmp_path, mounts) == "ext4"
    assert read_mounts(tmp_path / "absent") == ()
