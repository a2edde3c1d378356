"""Use case: index a channel from the package files in its subdirs -> IndexReport.

Only new or changed files (size or mtime differ from the catalog) are read and hashed; a file
replaced in place under the same name is read again. Local files get their record from their
own info/; files the mirror downloaded keep their upstream record and are only re-hashed
against it. A file that cannot be read or does not agree with itself (or, for a mirrored file,
with its upstream record) is moved to quarantine with a `.reason` file, and the rest of the
subdir is still indexed. Then each changed subdir is published (publish.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import msgspec

from mirror.adapters.archive import PackageInfo
from mirror.adapters.archive.pool import ReadResult, read_packages
from mirror.adapters.catalog import Catalog, CatalogFile
from mirror.adapters.store import ChannelTree, FileStat, Quarantine
from mirror.config.model import IndexSettings
from mirror.core.package_records import InvalidPackage, local_record
from mirror.core.plan import ORIGIN_LOCAL, ORIGIN_MIRROR
from mirror.core.repodata_doc import published_records
from mirror.core.side_indexes import ABOUT_KEYS
from mirror.core.tree_store import join
from mirror.progress import NoProgress, Progress
from mirror.publish.channel import publish_channeldata
from mirror.publish.names import NOARCH, REPODATA_JSON
from mirror.publish.settings import channeldata_enabled, settings_for
from mirror.publish.subdir import publish_subdir
from mirror.reports import IndexReport, QuarantinedFile, SubdirIndexReport

log = logging.getLogger(__name__)

_READ_BATCH = 256  # package files fetched at once from an object store before they are read


@dataclass
class IndexContext:
    tree: ChannelTree
    catalog: Catalog
    quarantine: Quarantine
    settings: IndexSettings
    workers: int = 2
    clock: Callable[[], float] = time.time
    local_channel: bool = True  # no upstream: run_exports/channeldata default on
    progress: Progress = field(default_factory=NoProgress)
    on_subdir: Callable[[SubdirIndexReport], None] = field(default=lambda report: None)


def index_channel(
    ctx: IndexContext, channel: str, subdirs: Sequence[str] | None = None, *, force: bool = False
) -> IndexReport:
    """Index the given subdirs (default: every subdir folder present, and always noarch)."""
    chosen = list(subdirs) if subdirs else discover_subdirs(ctx.tree.folders(channel))
    reports = []
    for subdir in chosen:
        report = index_subdir(ctx, channel, subdir, force=force)
        ctx.on_subdir(report)
        reports.append(report)
    return IndexReport(tuple(reports), _channeldata(ctx, channel))


def index_files(ctx: IndexContext, channel: str, files: dict[str, list[str]]) -> IndexReport:
    """Index just these files ({subdir: [file names]}), without scanning their subdirs."""
    reports = []
    for subdir, names in files.items():
        report = index_subdir(ctx, channel, subdir, only=names)
        ctx.on_subdir(report)
        reports.append(report)
    return IndexReport(tuple(reports), _channeldata(ctx, channel))


def _channeldata(ctx: IndexContext, channel: str) -> bool:
    return publish_channeldata(
        ctx.tree,
        ctx.catalog,
        channel,
        discover_subdirs(ctx.tree.folders(channel)),
        ctx.settings,
        enabled=channeldata_enabled(ctx.settings, ctx.local_channel),
    )


def discover_subdirs(folders: Iterable[str]) -> list[str]:
    """Of a channel's folders, those that look like conda subdirs (linux-64, osx-arm64,
    noarch, ...), plus noarch."""
    return sorted({NOARCH, *(name for name in folders if _looks_like_subdir(name))})


# conda's platforms; a folder like `docs-old` in a channel is not a subdir
_PLATFORMS = frozenset({"linux", "osx", "win", "zos", "emscripten", "wasi", "freebsd"})


def _looks_like_subdir(name: str) -> bool:
    if name == NOARCH:
        return True
    platform, _, arch = name.partition("-")
    return platform in _PLATFORMS and bool(arch) and arch.replace("_", "").isalnum()


def index_subdir(
    ctx: IndexContext,
    channel: str,
    subdir: str,
    *,
    force: bool = False,
    only: Collection[str] | None = None,
) -> SubdirIndexReport:
    """Index one subdir. With `only`, just those file names are looked at (added, replaced or
    deleted): what a watcher that saw them change asks for, without scanning a large subdir."""
    started = time.monotonic()
    run = _SubdirIndex(ctx, channel, subdir)
    if only is not None and run.unknown_published_subdir():
        # the state database does not know this published subdir (new or lost): publishing
        # from it alone would drop every record it lacks; rebuild it from the folder instead
        log.warning("%s/%s: no state for this subdir yet; scanning it in full", channel, subdir)
        only = None
    on_disk, known = run.scan(only)
    fresh = [fn for fn in on_disk if fn not in known]
    touched = [
        fn
        for fn in on_disk
        if fn in known
        and (
            force
            or (known[fn].size, known[fn].mtime_ns) != (on_disk[fn].size, on_disk[fn].mtime_ns)
        )
    ]
    gone = [fn for fn in known if fn not in on_disk]
    run.recheck_mirrored(
        [fn for fn in touched if known[fn].origin == ORIGIN_MIRROR], on_disk, known
    )
    local = fresh + [fn for fn in touched if known[fn].origin != ORIGIN_MIRROR]
    run.read_local(local, on_disk, known)
    run.commit(known, gone)
    published = publish_subdir(
        ctx.tree,
        ctx.catalog,
        channel,
        subdir,
        settings_for(ctx.settings, subdir, ctx.local_channel),
        now=ctx.clock(),
        force=force,
    )
    return SubdirIndexReport(
        channel,
        subdir,
        new=len(fresh) - sum(1 for q in run.quarantined if q.filename in fresh),
        changed=len(touched),
        removed=len(gone),
        quarantined=tuple(run.quarantined),
        published=published,
        seconds=time.monotonic() - started,
    )


class _SubdirIndex:
    """The steps of indexing one subdir, sharing what they found and decided."""

    def __init__(self, ctx: IndexContext, channel: str, subdir: str) -> None:
        self.ctx, self.channel, self.subdir = ctx, channel, subdir
        self.directory = ctx.tree.subdir_key(channel, subdir)
        self.quarantined: list[QuarantinedFile] = []
        self.rows: list[CatalogFile] = []  # new or re-read files with their records
        self.stats_only: list[tuple[str, int, int]] = []  # touched, bytes unchanged
        self.drop: list[str] = []  # known files quarantined now

    def unknown_published_subdir(self) -> bool:
        catalog = self.ctx.catalog
        return not catalog.outputs(self.channel, self.subdir) and bool(
            self.ctx.tree.stat(join(self.directory, REPODATA_JSON))
        )

    def scan(
        self, only: Collection[str] | None
    ) -> tuple[dict[str, FileStat], dict[str, CatalogFile]]:
        """(files on disk, files the catalog knows): all of them, or just `only`."""
        tree, catalog = self.ctx.tree, self.ctx.catalog
        if only is not None:
            on_disk = tree.stat_packages(self.channel, self.subdir, only)
            return on_disk, catalog.files_named(self.channel, self.subdir, only)
        tree.clean_temp(self.channel, self.subdir)
        for name in tree.scan_unsafe_names(self.channel, self.subdir):
            self.reject(
                name,
                "unsafe_name",
                f"{name!r} is not a plain <name>-<version>-<build>.conda/.tar.bz2 file name "
                "clients could download; rename it (no spaces, quotes or control characters)",
            )
        on_disk = tree.scan_packages(self.channel, self.subdir)
        return on_disk, catalog.files(self.channel, self.subdir)

    def recheck_mirrored(
        self, names: list[str], on_disk: dict[str, FileStat], known: dict[str, CatalogFile]
    ) -> None:
        """Mirrored files keep their upstream record; touched ones are only re-hashed."""
        for filename in names:
            verdict = _recheck_mirrored(
                self.ctx.tree, join(self.directory, filename), known[filename]
            )
            if verdict is None:
                stat = on_disk[filename]
                self.stats_only.append((filename, stat.size, stat.mtime_ns))
            else:
                self.reject(filename, "mismatch", verdict)
                self.drop.append(filename)

    def read_local(
        self, names: list[str], on_disk: dict[str, FileStat], known: dict[str, CatalogFile]
    ) -> None:
        """Local files get their record from their own info/ (read in a process pool)."""
        ctx = self.ctx
        now_ms = int(ctx.clock() * 1000)
        ctx.progress.start(
            f"{self.channel}/{self.subdir}", len(names), sum(on_disk[f].size for f in names)
        )
        for filename, result in _read_all(
            ctx.tree, self.directory, names, ctx.workers, ctx.settings.deep_scan
        ):
            ctx.progress.advance(on_disk[filename].size)
            ctx.progress.file_done()
            try:
                if isinstance(result, tuple):
                    raise _Rejected(*result)
                row = _local_row(filename, self.subdir, result, on_disk[filename], known, now_ms)
                self.rows.append(row)
            except _Rejected as rejected:
                self.reject(filename, rejected.reason, rejected.message)
                if filename in known:
                    self.drop.append(filename)
        ctx.progress.finish()

    def commit(self, known: dict[str, CatalogFile], gone: list[str]) -> None:
        ctx = self.ctx
        if not ctx.local_channel and any(row.filename not in known for row in self.rows):
            self.rows = _adopt_published(
                ctx.tree.read_if_there(join(self.directory, REPODATA_JSON)), self.rows, known
            )
        with ctx.catalog.transaction():
            refused = ctx.catalog.put_files(self.channel, self.subdir, self.rows)
            ctx.catalog.update_stats(self.channel, self.subdir, self.stats_only)
            ctx.catalog.remove_files(self.channel, self.subdir, gone + self.drop + list(refused))
        for filename, why in sorted(refused.items()):
            self.reject(filename, "catalog", why)

    def reject(self, filename: str, reason: str, message: str) -> None:
        self.quarantined.append(
            _quarantine(self.ctx, self.channel, self.subdir, filename, reason, message)
        )


class _Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def package_record(filename: str, subdir: str, info: PackageInfo) -> bytes:
    """The record of a local package file (InvalidPackage when its metadata disagrees)."""
    return local_record(filename, subdir, info.index, size=info.size, sha256=info.sha256,
                        md5=info.md5, run_exports=info.run_exports)  # fmt: skip


def local_row(
    filename: str, stat: FileStat, info: PackageInfo, record: bytes, indexed_ms: int
) -> CatalogFile:
    """The catalog row of a local package file, with what run_exports.json and channeldata
    need from its info/."""
    about = {key: info.about[key] for key in ABOUT_KEYS if key in info.about}
    return CatalogFile(
        filename, stat.size, stat.mtime_ns, info.sha256, info.md5, ORIGIN_LOCAL,
        name=str(info.index["name"]), record=record, indexed_ms=indexed_ms,
        run_exports=msgspec.json.encode(info.run_exports or {}, order="sorted"),
        about=msgspec.json.encode(about),
    )  # fmt: skip


def _local_row(
    filename: str,
    subdir: str,
    info: PackageInfo,
    stat: FileStat,
    known: dict[str, CatalogFile],
    now_ms: int,
) -> CatalogFile:
    try:
        record = package_record(filename, subdir, info)
    except InvalidPackage as exc:
        raise _Rejected("invalid_metadata", f"{filename}: {exc}") from None
    previous = known.get(filename)
    # CEP-47: the time this content first entered the index; new bytes are a new entry
    same_bytes = previous is not None and previous.sha256 == info.sha256
    indexed_ms = previous.indexed_ms if same_bytes and previous and previous.indexed_ms else now_ms
    return local_row(filename, stat, info, record, indexed_ms)


def _adopt_published(
    repodata: bytes | None, rows: list[CatalogFile], known: dict[str, CatalogFile]
) -> list[CatalogFile]:
    """A mirrored channel whose state database was lost: a file the published repodata.json
    describes (same sha256) keeps that record, which is upstream's (patches and keys the
    package's info/ lacks), and stays a mirrored file the next sync may prune or update."""
    if repodata is None:
        return rows
    published = published_records(repodata)
    adopted = []
    for row in rows:
        stamp, raw = published.get(row.filename, (None, b""))
        if row.filename in known or stamp is None or stamp.sha256 != row.sha256:
            adopted.append(row)
            continue
        # the row a sync would have written: mirrored files carry no run_exports/about
        adopted.append(
            replace(
                row,
                origin=ORIGIN_MIRROR,
                record=raw,
                run_exports=None,
                about=None,
                indexed_ms=stamp.indexed_timestamp or row.indexed_ms,
            )
        )
    return adopted


def _recheck_mirrored(tree: ChannelTree, key: str, known: CatalogFile) -> str | None:
    """None when a touched mirrored file still hashes to its upstream record, else why not."""
    name = key.rsplit("/", 1)[-1]
    try:
        size, sha256, md5 = tree.digest(key)
    except OSError as exc:
        return f"{name}: cannot be read ({exc.strerror})"
    if (known.sha256 and sha256 == known.sha256) or (not known.sha256 and md5 == known.md5):
        return None
    return (
        f"{name}: its bytes no longer match the upstream record it was mirrored with "
        f"(size {size}); the next `mirror sync` downloads it again"
    )


def _quarantine(
    ctx: IndexContext, channel: str, subdir: str, filename: str, reason: str, message: str
) -> QuarantinedFile:
    # a file name straight from the folder listing: one path component, never "../"
    key = join(ctx.tree.subdir_key(channel, subdir), filename)
    moved = ctx.quarantine.take(ctx.tree, key, channel, subdir, f"{reason}: {message}")
    log.warning(
        "%s/%s: quarantined %s (%s): %s -> %s", channel, subdir, filename, reason, message, moved
    )
    return QuarantinedFile(filename, reason, message, moved)


def _read_all(
    tree: ChannelTree, folder: str, filenames: list[str], workers: int, deep: bool
) -> Iterator[tuple[str, ReadResult]]:
    """Package files read in a process pool, as files on this host (an object store's are
    fetched a batch at a time, and removed once read)."""
    keys = [join(folder, fn) for fn in filenames]
    batches = [keys[i : i + _READ_BATCH] for i in range(0, len(keys), _READ_BATCH)]
    paths = tree.local_batches(batches)
    results = read_packages(paths, total=len(filenames), workers=workers, deep=deep)
    yield from zip(filenames, results, strict=True)
