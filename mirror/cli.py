"""Command line: argparse subcommands; the one place where errors become exit codes."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from mirror import __version__, cli_bundles, cli_closure
from mirror.errors import ConfigError, LockBusyError, MirrorError, UsageError
from mirror.exit_codes import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
)

if TYPE_CHECKING:
    from mirror.indexer import IndexContext, IndexReport
    from mirror.progress import Progress

log = logging.getLogger("mirror")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point. Exits with os._exit after flushing: py-rattler can crash during interpreter
    teardown after its work is done, and that must not change the exit status."""
    code = run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def run(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    redactor = _setup_logging(args.log_level)
    try:
        code: int = args.handler(args, redactor)
        return code
    except MirrorError as exc:
        print(f"error: {redactor(str(exc))}", file=sys.stderr)
        if isinstance(exc, ConfigError | UsageError):
            return EXIT_USAGE
        return EXIT_LOCKED if isinstance(exc, LockBusyError) else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception:
        log.exception("internal error; please report it with this traceback")
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
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
        help="this once, allow deleting more than max_delete_fraction of a subdir",
    )
    sync.set_defaults(handler=_cmd_sync)

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
        help="catalog, lock and quarantine (default: .mirror-state/<name> beside PATH)",
    )
    index.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="processes reading packages (default: CPU count)",
    )
    index.add_argument(
        "--final-zst",
        action="store_true",
        help="recompress repodata.json.zst at the high final level before exiting",
    )
    for flag, default, text in (
        ("zst", True, "repodata.json.zst"),
        ("bz2", False, "repodata.json.bz2"),
        ("shards", True, "CEP-16 shards and repodata_shards.msgpack.zst"),
        ("current-repodata", False, "current_repodata.json"),
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
    index.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    index.set_defaults(handler=_cmd_index)

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
    daemon.set_defaults(handler=_cmd_daemon)

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
    verify.set_defaults(handler=_cmd_verify)

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
    status.set_defaults(handler=_cmd_status)

    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the config and print the effective one",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.set_defaults(handler=_cmd_check_config)
    cli_closure.add_parsers(sub, common, EXIT_CODES_HELP)
    cli_bundles.add_parsers(sub, common, EXIT_CODES_HELP)
    return parser


def _cmd_check_config(args: argparse.Namespace, redactor: object) -> int:
    import yaml

    from mirror.config import load_config, resolve_config_path
    from mirror.config.model import describe

    config = load_config(resolve_config_path(args.config))
    print(yaml.safe_dump(describe(config), sort_keys=False, default_flow_style=False), end="")
    print(f"# {config.source}: OK ({len(config.channels)} channels)", file=sys.stderr)
    return EXIT_OK


def _cmd_sync(args: argparse.Namespace, redactor: _RedactingFormatter) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.sync import SyncOptions, run_sync

    config = load_config(resolve_config_path(args.config))
    config.check_channels(args.channel)
    stop = threading.Event()
    with _stop_on_signals(stop):
        report = run_sync(
            config,
            SyncOptions(
                channels=tuple(args.channel),
                subdirs=tuple(args.subdir),
                dry_run=args.dry_run,
                allow_mass_delete=args.allow_mass_delete,
                final_zst=args.final_zst,
            ),
            redactor=redactor.redact,
            stop=stop,
            progress=_progress(),
        )
    if stop.is_set():
        return EXIT_INTERRUPTED
    if not report.subdirs:
        raise UsageError("nothing to sync: no configured subdir matches --channel/--subdir")
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_index(args: argparse.Namespace, redactor: _RedactingFormatter) -> int:
    from pathlib import Path

    from mirror.adapters.catalog import Catalog
    from mirror.adapters.lock import WriterLock
    from mirror.adapters.store import QUARANTINE_DIR, ChannelTree, Quarantine
    from mirror.channel_outputs import recompress
    from mirror.config.model import IndexSettings
    from mirror.indexer import IndexContext, index_channel

    channel_dir = Path(args.path).expanduser().absolute()
    if not channel_dir.is_dir():
        raise UsageError(f"{channel_dir}: not a directory; give the channel folder")
    state_dir = (
        Path(args.state_dir).expanduser().absolute() if args.state_dir
        else channel_dir.parent / ".mirror-state" / channel_dir.name
    )  # fmt: skip
    patch = Path(args.patch_instructions).absolute() if args.patch_instructions else None
    if patch is not None and not patch.exists():
        raise UsageError(f"{patch}: patch instructions not found")
    settings = IndexSettings(
        zst=args.zst, bz2=args.bz2, shards=args.shards, current_repodata=args.current_repodata,
        run_exports=args.run_exports, channeldata=args.channeldata,
        shard_grace_days=args.shard_grace_days, patch_instructions=patch, deep_scan=args.deep,
    )  # fmt: skip
    tree = ChannelTree(channel_dir.parent)
    try:
        tree.channel_dir(channel_dir.name)
    except MirrorError:
        raise UsageError(
            f"{channel_dir}: a channel folder name may hold only letters, digits, '.', '_', '-'"
        ) from None
    with WriterLock(state_dir), Catalog(state_dir / "catalog.sqlite") as catalog:
        ctx = IndexContext(
            tree=tree, catalog=catalog, quarantine=Quarantine(state_dir / QUARANTINE_DIR),
            settings=settings, workers=max(1, args.workers), progress=_progress(),
            on_subdir=lambda report: log.info("%s", report.summary()),
        )  # fmt: skip
        if args.file:
            report = _index_files(ctx, channel_dir.name, args.file)
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


def _index_files(ctx: IndexContext, channel: str, files: list[str]) -> IndexReport:
    from mirror.core.records import is_safe_filename
    from mirror.indexer import index_files

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


def _cmd_daemon(args: argparse.Namespace, redactor: _RedactingFormatter) -> int:
    import prometheus_client

    from mirror.config import resolve_config_path
    from mirror.daemon import Daemon

    # *_created series double every counter's cardinality and nobody alerts on them
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    daemon = Daemon(resolve_config_path(args.config), redactor=redactor.redact)
    return daemon.run()


def _cmd_verify(args: argparse.Namespace, redactor: _RedactingFormatter) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.repair import run_verify

    config = load_config(resolve_config_path(args.config))
    config.check_channels(args.channel)
    outcome = run_verify(config, tuple(args.channel), full=args.full, repair=args.repair,
                         redactor=redactor.redact)  # fmt: skip
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


def _cmd_status(args: argparse.Namespace, redactor: _RedactingFormatter) -> int:
    from mirror.config import load_config, resolve_config_path
    from mirror.status import collect_status, format_status, status_json

    config = load_config(resolve_config_path(args.config))
    rows = collect_status(config)
    if args.json:
        print(status_json(rows))
    else:
        print(redactor(format_status(rows)))
    return EXIT_OK


def _progress() -> Progress:
    from mirror.progress import NoProgress, TerminalProgress

    return TerminalProgress(sys.stderr) if sys.stderr.isatty() else NoProgress()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set the stop event; the previous handlers come back afterwards."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning(
            "received %s: finishing files in flight, then stopping", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _RedactingFormatter(logging.Formatter):
    """Masks known secrets in every log line, tracebacks included."""

    def __init__(self, fmt: str) -> None:
        from mirror.core.secrets import Redactor

        super().__init__(fmt)
        self.redact = Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def __call__(self, text: str) -> str:
        return self.redact(text)


def _setup_logging(level: str) -> _RedactingFormatter:
    # journald stamps each line itself; elsewhere a timestamp helps (cron mail, files)
    fmt = (
        "%(levelname)s %(message)s"
        if os.environ.get("JOURNAL_STREAM")
        else ("%(asctime)s %(levelname)s %(message)s")
    )
    formatter = _RedactingFormatter(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [
        h for h in root.handlers if not isinstance(h.formatter, _RedactingFormatter)
    ]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request URL at INFO
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job otherwise
    return formatter
