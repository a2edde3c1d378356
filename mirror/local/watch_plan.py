"""How each configured drop folder is watched: its mode decided from its filesystem type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.mounts import filesystem_type, read_mounts
from mirror.config.model import MirrorConfig
from mirror.core.watch_modes import WatchMode, decide_watch_mode, settle_window_s
from mirror.reports import DropFolderStatus


@dataclass(frozen=True)
class FolderWatch:
    channel: str
    folder_index: int  # its position in the channel's drop_folders (a metric label, not a path)
    path: Path
    configured: WatchMode
    mode: WatchMode  # EVENTS or POLL
    fs_type: str | None
    why: str
    poll_interval_s: float
    settle_s: float  # quiet time a file needs when no close event vouches for it

    @property
    def polled(self) -> bool:
        return self.mode == WatchMode.POLL

    def describe(self) -> str:
        """One line for the start-up log: `poll every 5 s (auto: nfs4 is a network ...)`."""
        how = f"poll every {self.poll_interval_s:g} s" if self.polled else "events"
        return f"{how} ({self.why})"

    def status(self) -> DropFolderStatus:
        return DropFolderStatus(
            str(self.path),
            str(self.mode),
            filesystem=self.fs_type,
            poll_interval_s=self.poll_interval_s if self.polled else None,
        )


def plan_watch(config: MirrorConfig) -> tuple[FolderWatch, ...]:
    """Every drop folder of every channel, in config order, with the mode it gets now."""
    mounts = read_mounts()
    plan = []
    for channel in config.channels:
        for index, folder in enumerate(channel.drop_folders):
            fs_type = filesystem_type(folder.path, mounts)
            decision = decide_watch_mode(folder.mode, fs_type)
            plan.append(
                FolderWatch(
                    channel=channel.name,
                    folder_index=index,
                    path=folder.path,
                    configured=folder.mode,
                    mode=decision.mode,
                    fs_type=fs_type,
                    why=decision.why,
                    poll_interval_s=folder.poll_interval_s,
                    settle_s=settle_window_s(
                        decision.mode, config.service.settle_s, folder.poll_interval_s
                    ),
                )
            )
    return tuple(plan)


def effective_watch(plan: tuple[FolderWatch, ...]) -> dict[tuple[str, int], str]:
    """(channel, folder index) -> how it is watched, for `mirror check-config`."""
    return {(w.channel, w.folder_index): w.describe() for w in plan}
