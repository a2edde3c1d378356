"""What a subdir holds now, and the changes a sync makes to it after transferring files:
files in place with the hashes the catalog vouches for, whether what was published is still
intact, records updated in place, files pruned."""

from __future__ import annotations

from mirror.adapters.catalog import CatalogFile, UpstreamState
from mirror.core.plan import ORIGIN_MIRROR, PresentFile, SyncPlan
from mirror.core.records import Record, UpstreamRepodata
from mirror.publish.records import pack_top_level
from mirror.publish.subdir import published_intact
from mirror.sync.context import SyncContext


class InPlace:
    """One channel/subdir of the tree, as a sync sees it."""

    def __init__(self, ctx: SyncContext, channel: str, subdir: str) -> None:
        self.ctx, self.name, self.subdir = ctx, channel, subdir

    def mirrored(self) -> dict[str, CatalogFile]:
        files = self.ctx.catalog.files(self.name, self.subdir)
        return {k: v for k, v in files.items() if v.origin == ORIGIN_MIRROR}

    def still_published(
        self, state: UpstreamState | None, selection_key: str, mirrored: dict[str, CatalogFile]
    ) -> bool:
        """Upstream is unchanged; is what we published last time still exactly right?

        In a bucket the package objects are not listed again for this (a round trip per
        1,000 keys, on every run of a tree that may hold 500,000): the index files are
        checked, and a package object changed behind the mirror's back is for `mirror verify`
        to find, not for each sync."""
        if state is None or state.selection_key != selection_key:
            return False
        if state.selection_valid_until_ms is not None and (
            self.ctx.clock() * 1000 >= state.selection_valid_until_ms
        ):
            return False
        tree = self.ctx.tree
        if not tree.store.cheap_listing:
            return published_intact(tree, self.ctx.catalog, self.name, self.subdir)
        on_disk = tree.scan_packages(self.name, self.subdir)
        for name, known in mirrored.items():
            stat = on_disk.get(name)
            if stat is None or (stat.size, stat.mtime_ns) != (known.size, known.mtime_ns):
                return False
        return published_intact(tree, self.ctx.catalog, self.name, self.subdir)

    def present(self) -> dict[str, PresentFile]:
        """Files on disk, with the hashes the catalog vouches for (stats unchanged)."""
        all_known = self.ctx.catalog.files(self.name, self.subdir)
        present = {}
        for name, stat in self.ctx.tree.scan_packages(self.name, self.subdir).items():
            entry = all_known.get(name)
            trusted = entry is not None and (entry.size, entry.mtime_ns) == (
                stat.size,
                stat.mtime_ns,
            )
            present[name] = PresentFile(
                filename=name,
                size=stat.size,
                sha256=entry.sha256 if trusted and entry else None,
                md5=entry.md5 if trusted and entry else None,
                origin=entry.origin if entry else None,
            )
        return present

    def update_records(
        self, records: dict[str, Record], good: set[str], repodata: UpstreamRepodata
    ) -> None:
        """Kept files whose upstream record changed (patched upstream) get the new record, and
        upstream's top-level keys (removed, unknown ones) are stored for publishing."""
        catalog = self.ctx.catalog
        stored = catalog.record_bytes(self.name, self.subdir)
        changed = [
            (fn, records[fn].fields.name, bytes(records[fn].raw))
            for fn in good
            if stored.get(fn) != bytes(records[fn].raw)
        ]
        top_level = pack_top_level({k: bytes(v) for k, v in repodata.top_level.items()})
        with catalog.transaction():
            if changed:
                catalog.update_records(
                    self.name, self.subdir, changed, int(self.ctx.clock() * 1000)
                )
            if catalog.top_level(self.name, self.subdir) != top_level:
                catalog.set_top_level(self.name, self.subdir, top_level)

    def prune(self, plan: SyncPlan, *, accepted: bool) -> int:
        """Delete files no longer selected (their records already left the published index),
        and log what this run deleted and replaced for the guards over time."""
        tree, catalog = self.ctx.tree, self.ctx.catalog
        for present in plan.delete:
            tree.remove(tree.package_key(self.name, self.subdir, present.filename))
        with catalog.transaction():
            catalog.remove_files(
                self.name, self.subdir, (p.filename for p in plan.delete), mark_dirty=False
            )
            catalog.log_changes(
                self.name,
                self.subdir,
                at=self.ctx.clock(),
                deleted=len(plan.delete),
                replaced=len(plan.replaced),
                accepted=accepted,
            )
        return plan.delete_bytes
