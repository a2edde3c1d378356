"""Use case: what each channel publishes, its last sync and next run, from the state database."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mirror.adapters.catalog import CATALOG_NAME, Catalog, ClosureNoteKind
from mirror.adapters.snapshots import ORIGIN_IMPORT, SNAPSHOTS_NAME, SnapshotStore
from mirror.adapters.store import QUARANTINE_DIR
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.bundle_manifest import is_package
from mirror.core.dangling import Dangling
from mirror.core.secrets import redact_url
from mirror.local.drops import DROPS_SUBDIR
from mirror.local.watch_plan import FolderWatch, plan_watch
from mirror.reports import CheckResult, DropFolderStatus, QuarantineEntry, SubdirStatus
from mirror.sync.check import RESULTS_FILE, load_results

DROPS_ROW = "(drops)"  # the row of a channel's rejected drops, which never reached a subdir
QUARANTINE_LISTED = 20  # per subdir, newest first; `quarantined` still counts them all
REASON_CHARS = 500  # a .reason is one line; a longer one is cut for display
SOURCE_LOCAL = "local packages"
SOURCE_IMPORT = "imported bundle"


def status_json(rows: Sequence[SubdirStatus]) -> str:
    """The document `mirror status --json` prints and the daemon serves as /status.json."""
    return json.dumps([row.as_dict() for row in rows], indent=2)


def collect_status(
    config: MirrorConfig, watch: Sequence[FolderWatch] | None = None
) -> list[SubdirStatus]:
    """Read-only: the daemon may be running (SQLite WAL lets readers in without blocking its
    writers), and nothing is created. Channels fed by `mirror import` are described by their
    last imported snapshot. `watch`: how the drop folders are watched (the daemon passes its
    own; otherwise the mode each would get now)."""
    path = config.state_dir / CATALOG_NAME
    imported = _imported(config)
    if not path.exists() and not imported:
        return []
    checks = load_results(config.state_dir / RESULTS_FILE)
    quarantine = config.state_dir / QUARANTINE_DIR
    rows: list[SubdirStatus] = []
    watched = {(w.channel, w.path): w.status() for w in (watch or plan_watch(config))}
    with Catalog(path) if path.exists() else contextlib.nullcontext() as catalog:
        next_runs = catalog.next_runs() if catalog else {}
        for channel in config.channels:
            folders = tuple(
                watched.get((channel.name, f.path), DropFolderStatus(str(f.path)))
                for f in channel.drop_folders
            )
            known = catalog.subdirs(channel.name) if catalog else []
            notes = catalog.closure_notes(channel.name) if catalog else []
            dangling = catalog.dangling(channel.name) if catalog else {}
            problems = tuple(n.message for n in notes if n.kind == ClosureNoteKind.PROBLEM)
            for subdir in sorted(set(channel.subdirs) | set(known)):
                row = _subdir_row(catalog, channel, subdir, imported.get(channel.name))
                count, listed = _quarantined(quarantine / channel.name / subdir)
                solvable, problem = _solvability(checks, channel.name, subdir)
                rows.append(
                    replace(
                        row,
                        next_run_at=next_runs.get(channel.name),
                        quarantined=count,
                        quarantined_files=listed,
                        solvable=solvable,
                        solve_problem=problem,
                        drop_folders=folders,
                        closure_problems=problems,
                        closure_warnings=tuple(
                            n.message
                            for n in notes
                            if n.kind == ClosureNoteKind.UNAVAILABLE and n.platform == subdir
                        ),
                        dangling_dependencies=dangling[subdir][0].records
                        if subdir in dangling
                        else None,
                        dangling_names=dangling[subdir][0].names if subdir in dangling else (),
                    )
                )
            count, listed = _quarantined(quarantine / channel.name / DROPS_SUBDIR)
            if count:  # rejected drops never reached a subdir
                drops = SubdirStatus(channel.name, DROPS_ROW, 0, 0, None, None, None, count)
                rows.append(replace(drops, quarantined_files=listed, drop_folders=folders))
    return rows


def _subdir_row(
    catalog: Catalog | None, channel: ChannelConfig, subdir: str, snap: _Imported | None
) -> SubdirStatus:
    """What the catalog (or the last imported snapshot) says about one subdir."""
    packages, size = catalog.published_stats(channel.name, subdir) if catalog else (0, 0)
    last = catalog.last_run(channel.name, subdir) if catalog else None
    source: str | None = SOURCE_LOCAL if not channel.mirrored else None
    via = None
    if channel.mirrored and catalog is not None:
        state = catalog.upstream_state(channel.name, subdir)
        if state is not None:  # the upstream file the published records were read from
            source = f"{redact_url(channel.upstream or '').rstrip('/')}/{subdir}/{state.variant}"
        via = catalog.repodata_source_state(channel.name, subdir)
    if snap is not None and not packages:
        packages, size = snap.subdirs.get(subdir, (0, 0))
        last, source = (snap.at, "imported", None), SOURCE_IMPORT
    return SubdirStatus(
        channel.name,
        subdir,
        packages,
        size,
        last_sync_at=last[0] if last else None,
        last_outcome=last[1] if last else None,
        last_message=last[2] if last else None,
        next_run_at=None,
        quarantined=0,
        repodata_source=source,
        repodata_via=via.source if via else None,
        repodata_bytes=via.repodata_bytes if via else None,
    )


def _solvability(
    checks: list[CheckResult], channel: str, platform: str
) -> tuple[bool | None, str | None]:
    """(solvable, the first failure's explanation) over the last checks of a platform."""
    mine = [c for c in checks if (c.channel, c.platform) == (channel, platform)]
    if not mine:
        return None, None
    failed = [c for c in mine if not c.ok]
    if not failed:
        return True, None
    first = failed[0]
    return False, f"{' '.join(first.specs)}: {first.message}"


@dataclass(frozen=True)
class _Imported:
    at: float
    subdirs: dict[str, tuple[int, int]]  # packages, bytes


def _imported(config: MirrorConfig) -> dict[str, _Imported]:
    """Per channel whose last snapshot came from a bundle: its packages per subdir."""
    path = config.state_dir / SNAPSHOTS_NAME
    if not path.exists():  # status never creates state
        return {}
    found: dict[str, _Imported] = {}
    with SnapshotStore(path) as store:
        for channel in config.channels:
            current = store.current(channel.name)
            if current is None or current.origin != ORIGIN_IMPORT:
                continue
            subdirs: dict[str, tuple[int, int]] = {}
            for relative, state in store.current_files(channel.name).items():
                if is_package(relative):
                    subdir = relative.split("/", 1)[0]
                    count, size = subdirs.get(subdir, (0, 0))
                    subdirs[subdir] = (count + 1, size + state.size)
            found[channel.name] = _Imported(current.created_at, subdirs)
    return found


def _quarantined(folder: Path) -> tuple[int, tuple[QuarantineEntry, ...]]:
    """How many files a quarantine folder holds, and the newest with their `.reason`."""
    if not folder.is_dir():
        return 0, ()
    dated: list[tuple[float, Path]] = []
    for reason_file in folder.glob("*.reason"):
        with contextlib.suppress(OSError):  # removed by an operator meanwhile
            dated.append((reason_file.stat().st_mtime, reason_file))
    dated.sort(key=lambda item: (-item[0], item[1].name))
    listed = []
    for _mtime, reason_file in dated[:QUARANTINE_LISTED]:
        try:
            with reason_file.open(errors="replace") as handle:
                reason = handle.read(REASON_CHARS + 1).strip()
        except OSError:
            continue
        if len(reason) > REASON_CHARS:
            reason = reason[:REASON_CHARS] + "…"
        listed.append(QuarantineEntry(reason_file.name.removesuffix(".reason"), reason))
    return len(dated), tuple(listed)


def format_status(rows: list[SubdirStatus]) -> str:
    header = (
        "channel/subdir",
        "packages",
        "size",
        "last sync",
        "outcome",
        "repodata",
        "next run",
        "quarantined",
        "solves",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                f"{row.channel}/{row.subdir}",
                str(row.packages),
                format_size(row.size_bytes),
                format_time(row.last_sync_at),
                row.last_outcome or "-",
                format_via(row),
                format_time(row.next_run_at),
                str(row.quarantined),
                {True: "yes", False: "NO", None: "-"}[row.solvable],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    return "\n".join(table + _notes(rows)) + _format_drop_folders(rows)


def _notes(rows: list[SubdirStatus]) -> list[str]:
    """Below the table: what the closures said, each channel's problems once."""
    lines: list[str] = []
    seen: set[str] = set()
    for row in rows:
        if row.closure_problems and row.channel not in seen:
            seen.add(row.channel)
            lines.extend(f"{row.channel}: closure problem: {p}" for p in row.closure_problems)
        lines.extend(f"{row.channel}/{row.subdir}: warning: {w}" for w in row.closure_warnings)
        if row.dangling_dependencies:
            found = Dangling(row.dangling_dependencies).records_text
            lines.append(
                f"{row.channel}/{row.subdir}: warning: {found} on packages this channel does not "
                f"hold ({', '.join(row.dangling_names)})"
            )
    return ["", *lines] if lines else []


def format_via(row: SubdirStatus) -> str:
    """How the last fetch read upstream records and what it transferred: `shards 1.2 kB`."""
    if row.repodata_via is None:
        return "-"
    return f"{row.repodata_via} {format_size(row.repodata_bytes or 0)}"


def _format_drop_folders(rows: list[SubdirStatus]) -> str:
    """`drop folders:` and one line per folder: channel, index, how it is watched, path."""
    lines = []
    seen: set[str] = set()
    for row in rows:
        if row.channel in seen:
            continue
        seen.add(row.channel)
        for index, folder in enumerate(row.drop_folders):
            if folder.watch_mode == "poll" and folder.poll_interval_s is not None:
                how = f"poll every {folder.poll_interval_s:g} s"
            else:
                how = folder.watch_mode or "-"
            on = f" ({folder.filesystem})" if folder.filesystem else ""
            lines.append(f"  {row.channel}[{index}]  {how}{on}  {folder.path}")
    return "\n\ndrop folders:\n" + "\n".join(lines) if lines else ""


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
