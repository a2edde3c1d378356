"""`mirror daemon`: the service (scheduled syncs, drop folders, status page and metrics)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mirror.cli.exit_codes import EXIT_CODES_HELP

if TYPE_CHECKING:
    from mirror.cli.runtime import Subparsers


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    daemon = sub.add_parser(
        "daemon",
        parents=[common],
        help="run the service: scheduled syncs, drop folders, metrics",
        description="Sync each channel on its schedule, publish packages dropped into drop "
        "folders, serve Prometheus metrics. SIGTERM/SIGINT stop cleanly; SIGHUP reloads the "
        "config (validated first; on error the running one is kept).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    daemon.set_defaults(handler=cmd_daemon)


def cmd_daemon(args: argparse.Namespace) -> int:
    import prometheus_client

    from mirror.config import resolve_config_path
    from mirror.service.daemon import Daemon

    # *_created series double every counter's cardinality and nobody alerts on them
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    daemon = Daemon(resolve_config_path(args.config), redactor=args.redact)
    return daemon.run()
