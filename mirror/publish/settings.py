"""What a subdir's publish writes: which index files, patches, the shard grace period."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mirror import __version__
from mirror.adapters.patch_source import load_patches
from mirror.config.model import IndexSettings
from mirror.core.patches import NO_PATCHES, PatchSet


@dataclass(frozen=True)
class PublishSettings:
    zst: bool = True
    bz2: bool = False
    shards: bool = True
    current_repodata: bool = False
    run_exports: bool = True
    shard_grace_days: float = 7.0
    patches: PatchSet = NO_PATCHES

    def render_key(self, top: dict[str, bytes]) -> str:
        """Changes whenever repodata.json would be rendered differently from the same records."""
        parts = (__version__, sorted(top.items()), self.patches.digest)
        return hashlib.sha256(repr(parts).encode()).hexdigest()


def settings_for(index: IndexSettings, subdir: str, local_channel: bool) -> PublishSettings:
    """What to write for one subdir. run_exports.json needs the packages' info/, which only
    local packages give, so by default it is written for channels without an upstream."""
    run_exports = index.run_exports if index.run_exports is not None else local_channel
    return PublishSettings(
        zst=index.zst,
        bz2=index.bz2,
        shards=index.shards,
        current_repodata=index.current_repodata,
        run_exports=run_exports,
        shard_grace_days=index.shard_grace_days,
        patches=load_patches(index.patch_instructions, subdir),
    )


def channeldata_enabled(index: IndexSettings, local_channel: bool) -> bool:
    return index.channeldata if index.channeldata is not None else local_channel
