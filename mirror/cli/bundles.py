"""`mirror export`, `mirror import` and `mirror snapshots`: carrying a tree across an air gap."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.cli.exit_codes import EXIT_CODES_HELP, EXIT_OK
from mirror.errors import UsageError

if TYPE_CHECKING:
    from mirror.cli.runtime import Subparsers


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    epilog = EXIT_CODES_HELP
    export = sub.add_parser(
        "export",
        parents=[common],
        help="write a bundle of what changed since a snapshot (or everything) for an offline site",
        description="Write a bundle folder: manifest.json (+ its sha256, + a signature when "
        "bundles.sign_command is set) and the files added or changed since the snapshot, in "
        "data parts no larger than --split-size. Deleted files are listed. `mirror import` "
        "applies it on the offline side.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    since = export.add_mutually_exclusive_group(required=True)
    since.add_argument("--since", type=int, metavar="SNAPSHOT", help="changes after this one")
    since.add_argument("--full", action="store_true", help="every file (for a new site)")
    export.add_argument("--out", required=True, metavar="PATH", help="the bundle folder to create")
    export.add_argument("--split-size", metavar="SIZE", help="largest part, e.g. 4G or 700MB")
    export.add_argument("--channel", action="append", default=[], metavar="NAME")
    export.set_defaults(handler=cmd_export)

    imp = sub.add_parser(
        "import",
        parents=[common],
        help="apply a bundle to this (offline) tree",
        description="Check the manifest, every part and every file's sha256, and that this "
        "tree is at the bundle's source snapshot; then install packages, then repodata and "
        "shards, then deletions, each file atomically. Safe to run again after an "
        "interruption, and a second import of the same bundle changes nothing.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("bundle", metavar="BUNDLE", help="the bundle folder")
    imp.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    imp.set_defaults(handler=cmd_import)

    snaps = sub.add_parser(
        "snapshots",
        parents=[common],
        help="list the tree's snapshots and what a bundle since each would weigh",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    snaps.add_argument("--channel", action="append", default=[], metavar="NAME")
    snaps.add_argument("--json", action="store_true")
    snaps.set_defaults(handler=cmd_snapshots)


def cmd_export(args: argparse.Namespace) -> int:
    from mirror.bundles.export import DEFAULT_SPLIT_SIZE, ExportOptions, run_export
    from mirror.config import load_config, resolve_config_path

    config = load_config(resolve_config_path(args.config))
    config.check_channels(args.channel)
    split = _size(args.split_size) if args.split_size else config.bundles.split_size
    report = run_export(
        config,
        ExportOptions(
            out=Path(args.out).expanduser().absolute(),
            since=None if args.full else args.since,
            split_size=split or DEFAULT_SPLIT_SIZE,
            channels=tuple(args.channel),
        ),
    )
    if report.manifest is None:
        print(f"nothing changed since snapshot {args.since}: no bundle written", file=sys.stderr)
        return EXIT_OK
    manifest = report.manifest
    for change in manifest.channels:
        source = change.source.id if change.source else "full"
        print(f"{change.channel}: {source} -> {change.target.id}, {len(change.deleted)} deleted")
    mb = manifest.stream_size / 1e6
    rate = mb / max(report.seconds, 1e-9)
    print(
        f"wrote {report.path}: {len(manifest.files)} files, {mb:,.1f} MB in "
        f"{len(manifest.parts)} parts, {report.seconds:.2f} s ({rate:,.0f} MB/s)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from mirror.bundles.importer import run_import
    from mirror.config import load_config, resolve_config_path

    config = load_config(resolve_config_path(args.config))
    bundle = Path(args.bundle).expanduser().absolute()
    if not bundle.is_dir():
        raise UsageError(f"{bundle}: not a folder; give the bundle folder `mirror export` wrote")
    report = run_import(config, bundle, dry_run=args.dry_run)
    for line in report.channels:
        print(line)
    mb = report.written_bytes / 1e6
    if args.dry_run:
        done = (
            f"would write {report.written} files ({mb:,.1f} MB), keep {report.skipped} already "
            f"in place and delete {report.deleted}; nothing was changed"
        )
    else:
        done = (
            f"wrote {report.written} files ({mb:,.1f} MB), kept {report.skipped} already in "
            f"place, deleted {report.deleted} in {report.seconds:.2f} s"
        )
    print(f"{bundle}: verified; {done}", file=sys.stderr)
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    from mirror.adapters.snapshots import SNAPSHOTS_NAME, SnapshotStore
    from mirror.config import load_config, resolve_config_path
    from mirror.publish.snapshot import take_snapshot
    from mirror.publish.tree import open_tree

    config = load_config(resolve_config_path(args.config))
    tree = open_tree(config)
    names = config.check_channels(args.channel) or [c.name for c in config.channels]
    rows: list[dict[str, Any]] = []
    with SnapshotStore(config.state_dir / SNAPSHOTS_NAME) as store:
        for name in names:
            take_snapshot(tree, store, name)  # what is published now is the newest
            current = store.current(name)
            if current is None:
                continue
            for snap in store.snapshots(name):
                delta = store.bytes_since(name, snap.id)
                rows.append({
                    "channel": name, "id": snap.id, "remote_id": snap.remote_id,
                    "origin": snap.origin, "created_at": snap.created_at, "files": snap.files,
                    "bytes": snap.bytes, "bundle_since_bytes": delta,
                    "current": snap.id == current.id,
                })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'channel':<16} {'id':>6} {'origin':<7} {'files':>8} {'size MB':>10} {'since MB':>10}")
    for row in rows:
        shown = f"{row['id']}" + (f" ({row['remote_id']})" if row["remote_id"] else "")
        print(
            f"{row['channel']:<16} {shown:>6} {row['origin']:<7} {row['files']:>8} "
            f"{row['bytes'] / 1e6:>10,.1f} {row['bundle_since_bytes'] / 1e6:>10,.1f}"
            + ("  <- current" if row["current"] else "")
        )
    return EXIT_OK


_UNITS = {
    "": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
    "KB": 1000, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
}  # fmt: skip


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise UsageError(f"--split-size {text!r}: give a size such as 4G, 700MB or 1GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
