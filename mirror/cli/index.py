"""`mirror index PATH`: index a local channel directory (like conda-index or rattler-index)."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.cli.exit_codes import EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK
from mirror.cli.runtime import terminal_progress
from mirror.errors import MirrorError, UsageError

if TYPE_CHECKING:
    from mirror.cli.runtime import Subparsers
    from mirror.local.indexer import IndexContext
    from mirror.reports import IndexReport

log = logging.getLogger("mirror")


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    index = sub.add_parser(
        "index",
        help="index a local channel directory (like conda-index / rattler-index)",
        description="Read new and changed package files in PATH/<subdir>/ and write repodata "
        "(json, zst, CEP-16 shards, run_exports.json, channeldata.json, ...). Files that cannot "
        "be read or do not match their metadata are moved to quarantine with a reason.",
        epilog=EXIT_CODES_HELP.replace("some work failed", "some files were quarantined, or"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    index.add_argument("path", metavar="PATH", help="the channel directory")
    index.add_argument(
        "--subdir",
        action="append",
        default=[],
        metavar="S",
        help="only this subdir (repeatable; default: every subdir folder)",
    )
    index.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="SUBDIR/NAME",
        help="only look at this package file (added, replaced or deleted), without scanning "
        "the rest of its subdir (repeatable)",
    )
    index.add_argument(
        "--force", action="store_true", help="read every package again and rewrite every index file"
    )
    index.add_argument(
        "--state-dir",
        metavar="DIR",
        help="catalog and quarantine (default: the state directory the channel was last kept "
        "with, else $XDG_STATE_HOME/mirror/index/<name>-<hash>; never inside the tree)",
    )
    index.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="processes reading packages (default: CPU count)",
    )
    _add_output_arguments(index)
    index.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    index.set_defaults(handler=cmd_index)


def _add_output_arguments(index: argparse.ArgumentParser) -> None:
    """What to write, and how much to check while reading."""
    index.add_argument(
        "--final-zst",
        action="store_true",
        help="recompress the .zst files at the high final level before exiting",
    )
    for flag, default, text in (
        ("zst", True, "repodata.json.zst"),
        ("bz2", False, "repodata.json.bz2"),
        ("shards", True, "CEP-16 shards and repodata_shards.msgpack.zst"),
        ("current-repodata", False, "current_repodata.json and its .zst"),
        ("run-exports", True, "run_exports.json (CEP-12)"),
        ("channeldata", True, "channeldata.json (CEP-38)"),
    ):
        index.add_argument(
            f"--{flag}",
            action=argparse.BooleanOptionalAction,
            default=default,
            help=f"write {text} (default: {'yes' if default else 'no'})",
        )
    index.add_argument(
        "--deep",
        action="store_true",
        help="also check every member of every package (traversal, links, devices, bombs); "
        "by default only info/ is read, as an index needs",
    )
    index.add_argument(
        "--shard-grace-days",
        type=float,
        default=7.0,
        metavar="N",
        help="keep shards no index names for N days before deleting them (default 7)",
    )
    index.add_argument(
        "--patch-instructions",
        metavar="FILE",
        help="patch_instructions.json, a folder of <subdir>/ ones, or a patch package",
    )


def cmd_index(args: argparse.Namespace) -> int:
    from mirror.adapters.catalog import Catalog
    from mirror.adapters.lock import WriterLocks
    from mirror.adapters.store import QUARANTINE_DIR, ChannelMarker, Quarantine, local_tree
    from mirror.config.model import IndexSettings
    from mirror.local.indexer import IndexContext, index_channel
    from mirror.publish.recompress import recompress

    channel_dir = Path(args.path).expanduser().absolute()
    if not channel_dir.is_dir():
        raise UsageError(f"{channel_dir}: not a directory; give the channel folder")
    state_dir = index_state_dir(channel_dir, args.state_dir, os.environ)
    patch = Path(args.patch_instructions).absolute() if args.patch_instructions else None
    if patch is not None and not patch.exists():
        raise UsageError(f"{patch}: patch instructions not found")
    settings = IndexSettings(
        zst=args.zst, bz2=args.bz2, shards=args.shards, current_repodata=args.current_repodata,
        run_exports=args.run_exports, channeldata=args.channeldata,
        shard_grace_days=args.shard_grace_days, patch_instructions=patch, deep_scan=args.deep,
    )  # fmt: skip
    tree = local_tree(channel_dir.parent)
    try:
        tree.channel_key(channel_dir.name)
    except MirrorError:
        raise UsageError(
            f"{channel_dir}: a channel folder name may hold only letters, digits, '.', '_', '-'"
        ) from None
    with WriterLocks(channel_dir.parent, state_dir), Catalog.in_state_dir(state_dir) as catalog:
        tree.mark_channel(channel_dir.name, ChannelMarker("local", str(state_dir)))
        ctx = IndexContext(
            tree=tree, catalog=catalog, quarantine=Quarantine(state_dir / QUARANTINE_DIR),
            settings=settings, workers=max(1, args.workers), progress=terminal_progress(),
            on_subdir=lambda report: log.info("%s", report.summary()),
        )  # fmt: skip
        if args.file:
            report = index_some_files(ctx, channel_dir.name, args.file)
        else:
            report = index_channel(ctx, channel_dir.name, args.subdir or None, force=args.force)
        if args.final_zst:
            for subdir in report.subdirs:
                recompress(tree, catalog, channel_dir.name, subdir.subdir)
    if report.quarantined:
        log.warning("%d files quarantined under %s (see the .reason files)",
                    report.quarantined, state_dir / QUARANTINE_DIR)  # fmt: skip
        return EXIT_FAILED
    return EXIT_OK


def index_some_files(ctx: IndexContext, channel: str, files: list[str]) -> IndexReport:
    from mirror.core.records import is_safe_filename
    from mirror.local.indexer import index_files

    by_subdir: dict[str, list[str]] = {}
    for item in files:
        subdir, _, name = item.strip("/").rpartition("/")
        if not subdir or "/" in subdir or not is_safe_filename(name):
            raise UsageError(
                f"--file {item}: give SUBDIR/NAME with a package file name, e.g. "
                "linux-64/pkg-1.0-0.conda"
            )
        by_subdir.setdefault(subdir, []).append(name)
    return index_files(ctx, channel, by_subdir)


def index_state_dir(channel_dir: Path, given: str | None, env: Mapping[str, str]) -> Path:
    """Where `mirror index` keeps its catalog: never inside the published tree, and for a
    channel a sync, the daemon or an import keeps, nowhere: those are refused (their records
    are not the packages' own, and rebuilding them from files would lose upstream's)."""
    from mirror.adapters.store import read_marker

    marker = read_marker(channel_dir)
    if marker is not None and marker.kind != "local":
        keeper = f" with the config {marker.config}" if marker.config else ""
        raise UsageError(
            f"{channel_dir} is a {marker.kind} channel, kept{keeper} (state in "
            f"{marker.state_dir}); its records come from upstream or a bundle, not from the "
            "package files, so `mirror index` would lose them: use `mirror sync` or "
            "`mirror verify --repair` with that config instead"
        )
    chosen = Path(given).expanduser().absolute() if given else None
    kept = Path(marker.state_dir) if marker is not None else None
    if chosen is not None and kept is not None and chosen != kept:
        raise UsageError(
            f"{channel_dir} is indexed with the state in {kept}; run without --state-dir, or "
            f"with --state-dir {kept} (another catalog would not know what is published)"
        )
    if chosen is not None:
        return chosen
    if kept is not None:
        return kept
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(channel_dir.resolve()).encode()).hexdigest()[:8]
    return base / "mirror" / "index" / f"{channel_dir.name}-{digest}"
