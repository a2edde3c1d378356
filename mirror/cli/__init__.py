"""Command line: argparse subcommands; the one place where errors become exit codes.

Each command group is a module with a `register(subparsers, common)` function; a handler
takes the parsed arguments (with `args.redact`, the log redactor) and returns an exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mirror import __version__
from mirror.cli import bundles, closure, daemon, health, index, sync
from mirror.cli.exit_codes import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_USAGE,
)
from mirror.cli.logs import setup_logging
from mirror.errors import ConfigError, Interrupted, LockBusyError, MirrorError, UsageError

log = logging.getLogger("mirror")
_GROUPS = (sync, index, daemon, health, closure, bundles)  # in the order `--help` lists them


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point. Exits with os._exit after flushing: py-rattler can crash during interpreter
    teardown after its work is done, and that must not change the exit status."""
    code = run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.redact = setup_logging(args.log_level).redact
    try:
        code: int = args.handler(args)
        return code
    except MirrorError as exc:
        print(f"error: {args.redact(str(exc))}", file=sys.stderr)
        if isinstance(exc, ConfigError | UsageError):
            return EXIT_USAGE
        return EXIT_LOCKED if isinstance(exc, LockBusyError) else EXIT_FAILED
    except (KeyboardInterrupt, Interrupted):
        return EXIT_INTERRUPTED
    except Exception:
        log.exception("internal error; please report it with this traceback")
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="config file (default: $MIRROR_CONFIG, else /etc/mirror/config.yaml)",
    )
    common.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    parser = argparse.ArgumentParser(
        prog="mirror",
        description="Mirror and index conda channels for offline sites.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mirror {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.register(sub, common)
    return parser
