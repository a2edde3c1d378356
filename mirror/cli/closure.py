"""`mirror check` and `mirror why`: the closure's two questions, asked from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mirror.cli.exit_codes import EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK
from mirror.errors import UsageError

if TYPE_CHECKING:
    from mirror.cli.runtime import Subparsers


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    epilog = EXIT_CODES_HELP
    check = sub.add_parser(
        "check",
        parents=[common],
        help="check that each channel's specs solve against the published tree",
        description="For each channel with `check:` (or the one named), solve its specs with "
        "py-rattler against the published repodata, per platform and dependency variant, with "
        "the platform's virtual packages, as an offline client would. Exit 1 names what is "
        "missing.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--channel", action="append", default=[], metavar="NAME")
    check.set_defaults(handler=cmd_check)
    why = sub.add_parser(
        "why",
        parents=[common],
        help="say why the dependency closure mirrors a package",
        description="Compute the closures (fetching upstream repodata, changing nothing) and "
        "print, for every selected record of NAME, the chain of dependencies from an include "
        "spec or lockfile down to it.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    why.add_argument("name", metavar="NAME", help="a package name, e.g. openssl")
    why.add_argument("--channel", action="append", default=[], metavar="NAME")
    why.set_defaults(handler=cmd_why)


def cmd_check(args: argparse.Namespace) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.sync.check import checked_channels, run_checks

    config = load_config(resolve_config_path(args.config))
    names = config.check_channels(args.channel)
    channels = checked_channels(config, names or None)
    if not channels:
        raise UsageError(
            "no channel to check: give a channel `check: true` (or `dependencies:`) in "
            f"{config.source}"
        )
    results = run_checks(config, [c.name for c in channels])
    for result in results:
        status = "solves" if result.ok else "DOES NOT SOLVE"
        print(f"{result.channel}/{result.platform}: {' '.join(result.specs)}: {status}"
              f" ({result.seconds:.2f} s)")  # fmt: skip
        if not result.ok:
            print("  " + result.message.replace("\n", "\n  "))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_why(args: argparse.Namespace) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.core.closure import dependency_name, why_chain
    from mirror.sync.closure import plan_closures, unavailable_message
    from mirror.sync.run import sync_context

    config = load_config(resolve_config_path(args.config))
    names = config.check_channels(args.channel) or [c.name for c in config.channels if c.mirrored]
    wanted = args.name.lower()
    with sync_context(config, write=False) as ctx:
        plan = plan_closures(ctx, names)
    found = 0
    for key in sorted(plan.reasons):
        filename = key[2]
        if filename.rsplit("-", 2)[0].lower() != wanted:
            continue
        found += 1
        chain = " <- ".join(why_chain(plan.reasons, key))
        print(args.redact(f"{'/'.join(key)}: {chain}"))
    for (channel, platform), specs in sorted(plan.unavailable.items()):
        for spec in specs:
            if dependency_name(spec) == wanted:  # asked for, but not there on this platform
                print(args.redact(f"{channel}/{platform}: {unavailable_message(spec, platform)}"))
    for channel, problems in plan.problems.items():
        for problem in problems:
            print(args.redact(f"{channel}: problem: {problem}"), file=sys.stderr)
    if not found:
        print(f"no dependency closure or lockfile selects {args.name}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
