"""The inputs and results one subdir publish shares between its steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from mirror.adapters.catalog import Catalog, OutputStat
from mirror.adapters.store import ChannelTree
from mirror.publish.settings import PublishSettings


@dataclass
class PublishRun:
    """Inputs and results shared by the steps of one publish."""

    tree: ChannelTree
    catalog: Catalog
    channel: str
    subdir: str
    settings: PublishSettings
    now: float
    folder: str  # the subdir's key: <channel>/<subdir>
    changed: list[str] = field(default_factory=list)
    outputs: dict[str, OutputStat] = field(default_factory=dict)

    def key(self, name: str) -> str:
        """The key of one of the subdir's files (`shards/<hash>.msgpack.zst` included)."""
        return f"{self.folder}/{name}"


def remember_output(run: PublishRun, name: str, render_key: str | None = None) -> None:
    stat = run.tree.stat(run.key(name))
    if stat is not None:
        run.outputs[name] = OutputStat(stat.size, stat.mtime_ns, render_key)
