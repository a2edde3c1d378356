"""Where rejected package files go: outside the published tree, each with a `.reason`."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from mirror.adapters.store.tree import ChannelTree

QUARANTINE_DIR = "quarantine"  # under the state directory


class Quarantine:
    """`<state_dir>/quarantine/<channel>/<subdir>/<file>` beside `<file>.reason`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def move(self, source: Path, channel: str, subdir: str, reason: str) -> Path:
        """Move a local file (out of a drop folder, or a local tree) here; where it went."""
        target, reason = self._target(source.name, channel, subdir, reason)
        try:
            os.replace(source, target)
        except OSError:
            shutil.move(str(source), target)  # across filesystems (a drop folder elsewhere)
        return self._reason(target, reason)

    def take(self, tree: ChannelTree, key: str, channel: str, subdir: str, reason: str) -> Path:
        """Move a file out of the tree, whatever store holds it (a bucket's object is copied
        here, then deleted there)."""
        target, reason = self._target(key.rsplit("/", 1)[-1], channel, subdir, reason)
        with tree.local_file(key) as path:
            try:
                os.replace(path, target)
            except OSError:
                shutil.copyfile(path, target)
        tree.remove(key)
        return self._reason(target, reason)

    def _target(self, name: str, channel: str, subdir: str, reason: str) -> tuple[Path, str]:
        """Where a file named `name` goes, and its reason (naming the original when the name
        had to be shortened)."""
        folder = self.root / channel / subdir
        folder.mkdir(parents=True, exist_ok=True)
        kept = _quarantine_name(name)
        if kept != name:
            reason = f"{reason.rstrip()}\n(quarantined as {kept!r}; its name was {name!r})"
        target = folder / kept
        if target.exists() or target.is_symlink():
            target = folder / f"{kept}.{uuid.uuid4().hex[:8]}"
        return target, reason

    def _reason(self, target: Path, reason: str) -> Path:
        target.with_name(target.name + ".reason").write_text(reason.rstrip() + "\n")
        return target

    def count(self) -> int:
        if not self.root.exists():
            return 0
        return sum(1 for p in self.root.rglob("*.reason") if p.is_file())


_NAME_MAX_BYTES = 255  # every filesystem we write to
_QUARANTINE_SUFFIX_BYTES = len(".12345678" + ".reason")  # a clash suffix, then the .reason


def _quarantine_name(name: str) -> str:
    """`name`, or when `<name>.<clash>.reason` would not fit NAME_MAX (a file refused for a
    name too long for our temp names), its first bytes and a digest of the whole."""
    raw = os.fsencode(name)
    if len(raw) + _QUARANTINE_SUFFIX_BYTES <= _NAME_MAX_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    keep = _NAME_MAX_BYTES - _QUARANTINE_SUFFIX_BYTES - len(digest) - 1
    prefix = name
    while len(os.fsencode(prefix)) > keep:  # cut between characters, never inside one
        prefix = prefix[: -max(1, (len(os.fsencode(prefix)) - keep) // 4)]
    return f"{prefix}~{digest}"
