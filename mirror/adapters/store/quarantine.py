"""Where rejected package files go: outside the published tree, each with a `.reason`."""

from __future__ import annotations

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
        target = self._target(source.name, channel, subdir)
        try:
            os.replace(source, target)
        except OSError:
            shutil.move(str(source), target)  # across filesystems (a drop folder elsewhere)
        return self._reason(target, reason)

    def take(self, tree: ChannelTree, key: str, channel: str, subdir: str, reason: str) -> Path:
        """Move a file out of the tree, whatever store holds it (a bucket's object is copied
        here, then deleted there)."""
        name = key.rsplit("/", 1)[-1]
        target = self._target(name, channel, subdir)
        with tree.local_file(key) as path:
            try:
                os.replace(path, target)
            except OSError:
                shutil.copyfile(path, target)
        tree.remove(key)
        return self._reason(target, reason)

    def _target(self, name: str, channel: str, subdir: str) -> Path:
        folder = self.root / channel / subdir
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if target.exists() or target.is_symlink():
            target = folder / f"{name}.{uuid.uuid4().hex[:8]}"
        return target

    def _reason(self, target: Path, reason: str) -> Path:
        target.with_name(target.name + ".reason").write_text(reason.rstrip() + "\n")
        return target

    def count(self) -> int:
        if not self.root.exists():
            return 0
        return sum(1 for p in self.root.rglob("*.reason") if p.is_file())
