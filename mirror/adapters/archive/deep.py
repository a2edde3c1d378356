"""The deep safety checks: refuse members that could escape or abuse the install prefix."""

from __future__ import annotations

import re

from mirror.adapters.archive.refusal import MiB, Refused, show
from mirror.adapters.archive.tar import DEVICES, DIRECTORY, FIFO, HARDLINK, SYMLINK, Member, normal

_MAX_PATH_CHARS = 4096  # PATH_MAX: no file system takes a longer name
_MAX_TRACKED_NAME_CHARS = 256 * MiB  # names a deep scan remembers (for links), all together
_MAX_SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS
_MAX_LINK_DEPTH = 256  # path components while following a symlink; real ones have a dozen
_MAX_LINK_STEPS = 1_000_000  # components followed for all symlinks together

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEPARATORS = re.compile(r"[/\\]")  # "\" separates on Windows, where win-64 clients extract
_DRIVE = re.compile(r"[A-Za-z]:")


class DeepCheck:
    """Refuses members that could write outside the prefix or create devices when extracted.

    Names are checked one by one. Symlink targets are checked at the end, against every symlink
    of the package: a target that stays inside on paper can leave through another symlink
    (a -> b/.. with b -> .), whichever order the tars are extracted in.
    """

    def __init__(self, max_members: int) -> None:
        self._members_left = max_members
        self._chars_left = _MAX_TRACKED_NAME_CHARS
        self._steps_left = _MAX_LINK_STEPS
        self._symlinks: dict[str, str] = {}
        self._names: set[str] = set()  # of the current tar: what a hardlink may point at

    def start_tar(self) -> None:
        self._names = set()

    def member(self, member: Member) -> None:
        name, kind = member.name, member.kind
        self._members_left -= 1
        self._chars_left -= len(name) + len(member.linkname)
        if self._members_left < 0 or self._chars_left < 0:
            raise Refused("too_large", "too many members to check")
        _check_path(name, "member")
        key = normal(name)
        if kind in DEVICES:
            what = "a fifo" if kind == FIFO else "a device file"
            raise Refused("unsafe_member", f"member {show(name)} is {what}")
        if not key and kind != DIRECTORY:
            raise Refused("unsafe_member", f"member {show(name)} has no file name")
        if kind == SYMLINK:
            self._symlink(key, member.linkname)
        elif kind == HARDLINK:
            _check_path(member.linkname, f"hardlink {show(name)} target")
            if normal(member.linkname) not in self._names:
                raise Refused(
                    "unsafe_member",
                    f"hardlink {show(name)} points at {show(member.linkname)}, "
                    "which is not an earlier file of the package",
                )
        self._names.add(key)

    def _symlink(self, key: str, target: str) -> None:
        shown = f"symlink {show(key)} -> {show(target)}"
        if not target:
            # Seen in real 2019 defaults .conda files; conda's own extractor fails on them.
            raise Refused("corrupt", f"{shown} has an empty target; no tool can install it")
        if _CONTROL.search(target) or len(target) > _MAX_PATH_CHARS:
            raise Refused("unsafe_member", f"{shown} has a control character or is too long")
        if target.startswith(("/", "\\")) or _DRIVE.match(target):
            raise Refused("unsafe_member", f"{shown} points at an absolute path")
        if key in self._symlinks:
            raise Refused("unsafe_member", f"{shown}: the symlink is defined twice")
        self._symlinks[key] = target

    def finish(self) -> None:
        for key, target in self._symlinks.items():
            if not self._stays_inside(f"{key.rpartition('/')[0]}/{target}"):
                raise Refused(
                    "unsafe_member",
                    f"symlink {show(key)} -> {show(target)} leads outside the package, or loops",
                )

    def _stays_inside(self, path: str) -> bool:
        """Whether path, relative to the package root, stays inside it through its symlinks."""
        todo = path.replace("\\", "/").split("/")[::-1]
        done: list[str] = []
        hops = 0
        while todo:
            self._steps_left -= 1
            if self._steps_left < 0:
                raise Refused("too_large", "too many symlinks to follow")
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    return False
                done.pop()
                continue
            done.append(part)
            if len(done) > _MAX_LINK_DEPTH:
                return False
            target = self._symlinks.get("/".join(done))
            if target is not None:
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    return False
                done.pop()
                todo.extend(target.replace("\\", "/").split("/")[::-1])
        return True


def _check_path(text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise Refused("unsafe_member", f"{what} {show(text)} has a NUL or control character")
    if text.startswith(("/", "\\")) or _DRIVE.match(text):
        raise Refused("unsafe_member", f"{what} {show(text)} is an absolute path")
    if ".." in _SEPARATORS.split(text):
        raise Refused("unsafe_member", f"{what} {show(text)} has a '..' component")
    if len(text) > _MAX_PATH_CHARS:
        raise Refused("unsafe_member", f"{what} {show(text)} is longer than any path can be")
