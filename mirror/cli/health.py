"""`mirror verify [--repair]` and `mirror status`: is the tree what it claims, and how is it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mirror.cli.exit_codes import EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from mirror.cli.runtime import Subparsers


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="check the published tree; --repair puts it right",
        description="Check that every record names a file with the recorded size and hash, "
        "that repodata.json.zst and the shards agree with repodata.json, and that no temp or "
        "unindexed file is left. By default a file whose size and mtime match the state "
        "database is not hashed again (--full hashes everything).",
        epilog=EXIT_CODES_HELP.replace("some work failed", "problems found (after --repair: left)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("--channel", action="append", default=[], metavar="NAME")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="re-fetch bad mirrored files, quarantine bad local ones, re-index",
    )
    verify.add_argument("--full", action="store_true", help="hash every file")
    verify.set_defaults(handler=cmd_verify)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="show what each channel publishes and its last sync",
        description="Per channel and subdir: packages and bytes published, the last sync (time, "
        "outcome), the next scheduled run and files in quarantine. Reads the state database, "
        "so it works while the daemon runs.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=cmd_status)


def cmd_verify(args: argparse.Namespace) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.health.repair import run_verify

    config = load_config(resolve_config_path(args.config))
    config.check_channels(args.channel)
    outcome = run_verify(config, tuple(args.channel), full=args.full, repair=args.repair,
                         redactor=args.redact)  # fmt: skip
    for problem in outcome.before.problems:
        print(f"{'found' if args.repair else 'problem'}: {problem}")
    final = outcome.after or outcome.before
    if outcome.after is not None:
        for problem in final.problems:
            print(f"left: {problem}")
    checked = sum(s.records for s in outcome.before.subdirs)
    hashed = sum(s.hashed for s in outcome.before.subdirs)
    print(
        f"verified {checked} records in {len(outcome.before.subdirs)} subdirs (hashed {hashed}) "
        f"in {outcome.before.seconds:.2f} s: {len(outcome.before.problems)} problems"
        + (f", {len(final.problems)} left after repair" if outcome.after is not None else ""),
        file=sys.stderr,
    )
    return EXIT_OK if final.ok else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.health.status import collect_status, format_status, status_json

    config = load_config(resolve_config_path(args.config))
    rows = collect_status(config)
    if args.json:
        print(status_json(rows))
    else:
        print(args.redact(format_status(rows)))
    return EXIT_OK
