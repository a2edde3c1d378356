"""`mirror index PATH`: index a local channel directory (like conda-index or rattler-index)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.cli.exit_codes import EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK
from mirror.cli.runtime import terminal_progress
from mirror.errors import UsageError

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
    index.add_argument(
        "path",
        metavar="PATH",
        help="the channel directory, or s3://<bucket>[/<prefix>]/<channel> for one kept in "
        "an object store (credentials from the AWS environment)",
    )
    index.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="for an s3:// PATH: take the endpoint, region and addressing from this config's "
        "storage block (default: AWS_ENDPOINT_URL and AWS_REGION)",
    )
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
    from mirror.adapters.store import QUARANTINE_DIR, ChannelMarker, Quarantine
    from mirror.cli.index_target import resolve_target
    from mirror.config.model import IndexSettings
    from mirror.local.indexer import IndexContext, index_channel
    from mirror.publish.recompress import recompress

    target = resolve_target(args.path, args.state_dir, args.config, os.environ)
    state_dir, tree, channel = target.state_dir, target.tree, target.channel
    patch = Path(args.patch_instructions).absolute() if args.patch_instructions else None
    if patch is not None and not patch.exists():
        raise UsageError(f"{patch}: patch instructions not found")
    settings = IndexSettings(
        zst=args.zst, bz2=args.bz2, shards=args.shards, current_repodata=args.current_repodata,
        run_exports=args.run_exports, channeldata=args.channeldata,
        shard_grace_days=args.shard_grace_days, patch_instructions=patch, deep_scan=args.deep,
    )  # fmt: skip
    with target.writer, Catalog.in_state_dir(state_dir) as catalog:
        tree.mark_channel(channel, ChannelMarker("local", str(state_dir)))
        ctx = IndexContext(
            tree=tree, catalog=catalog, quarantine=Quarantine(state_dir / QUARANTINE_DIR),
            settings=settings, workers=max(1, args.workers), progress=terminal_progress(),
            on_subdir=lambda report: log.info("%s", report.summary()),
        )  # fmt: skip
        if args.file:
            report = index_some_files(ctx, channel, args.file)
        else:
            report = index_channel(ctx, channel, args.subdir or None, force=args.force)
        if args.final_zst:
            for subdir in report.subdirs:
                recompress(tree, catalog, channel, subdir.subdir)
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
