"""`mirror sync` and `mirror check-config`: mirror the configured channels once."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from mirror.cli.exit_codes import EXIT_CODES_HELP, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from mirror.cli.runtime import stop_on_signals, terminal_progress
from mirror.errors import UsageError

if TYPE_CHECKING:
    from mirror.cli.runtime import Subparsers


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    sync = sub.add_parser(
        "sync",
        parents=[common],
        help="mirror the configured channels once",
        description="Fetch upstream repodata, select records with the filters, download and "
        "verify the files, publish repodata, and prune what is no longer selected.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME",
        help="only this channel (repeatable)",
    )
    sync.add_argument(
        "--subdir",
        action="append",
        default=[],
        metavar="S",
        help="only this subdir, e.g. linux-64 (repeatable)",
    )
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be downloaded and deleted, change nothing",
    )
    sync.add_argument(
        "--final-zst",
        action="store_true",
        help="recompress repodata.json.zst at the high final level before exiting",
    )
    sync.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="this once, allow deleting more than max_delete_fraction of a subdir (in one run "
        "or within guard_window_days)",
    )
    sync.add_argument(
        "--allow-mass-replace",
        action="store_true",
        help="this once, allow upstream to change the bytes of more than max_replace_fraction "
        "of the files a subdir publishes, under the same names",
    )
    sync.set_defaults(handler=cmd_sync)

    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the config and print the effective one",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.set_defaults(handler=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    import yaml

    from mirror.config import load_config, resolve_config_path
    from mirror.config.model import describe
    from mirror.local.watch_plan import effective_watch, plan_watch

    config = load_config(resolve_config_path(args.config))
    described = describe(config, effective_watch(plan_watch(config)))
    print(yaml.safe_dump(described, sort_keys=False, default_flow_style=False), end="")
    print(f"# {config.source}: OK ({len(config.channels)} channels)", file=sys.stderr)
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.sync.run import SyncOptions, run_sync

    config = load_config(resolve_config_path(args.config))
    config.check_channels(args.channel)
    stop = threading.Event()
    with stop_on_signals(stop):
        report = run_sync(
            config,
            SyncOptions(
                channels=tuple(args.channel),
                subdirs=tuple(args.subdir),
                dry_run=args.dry_run,
                allow_mass_delete=args.allow_mass_delete,
                allow_mass_replace=args.allow_mass_replace,
                final_zst=args.final_zst,
            ),
            redactor=args.redact,
            stop=stop,
            progress=terminal_progress(),
        )
    if stop.is_set():
        return EXIT_INTERRUPTED
    if not report.subdirs:
        raise UsageError("nothing to sync: no configured subdir matches --channel/--subdir")
    return EXIT_OK if report.ok else EXIT_FAILED
