"""Use case: what each channel publishes, its last sync and next run, from the state database."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.catalog import CATALOG_NAME, Catalog
from mirror.adapters.snapshots import ORIGIN_IMPORT, SNAPSHOTS_NAME, SnapshotStore
from mirror.adapters.store import QUARANTINE_DIR
from mirror.config.model import MirrorConfig
from mirror.core.bundle_manifest import is_package
from mirror.local.drops import DROPS_SUBDIR
from mirror.reports import SubdirStatus
from mirror.sync.check import RESULTS_FILE, load_results


def collect_status(config: MirrorConfig) -> list[SubdirStatus]:
    """Read-only: the daemon may be running (SQLite WAL lets readers in). Channels fed by
    `mirror import` are described by their last imported snapshot."""
    path = config.state_dir / CATALOG_NAME
    imported = _imported(config)
    if not path.exists() and not imported:
        return []
    solvable: dict[tuple[str, str], bool] = {}
    for result in load_results(config.state_dir / RESULTS_FILE):
        key = (result.channel, result.platform)
        solvable[key] = solvable.get(key, True) and result.ok
    rows: list[SubdirStatus] = []
    with Catalog(path) if path.exists() else contextlib.nullcontext() as catalog:
        next_runs = catalog.next_runs() if catalog else {}
        for channel in config.channels:
            known = catalog.subdirs(channel.name) if catalog else []
            for subdir in sorted(set(channel.subdirs) | set(known)):
                packages, size = (
                    catalog.published_stats(channel.name, subdir) if catalog else (0, 0)
                )
                last = catalog.last_run(channel.name, subdir) if catalog else None
                snap = imported.get(channel.name)
                if snap is not None and not packages:
                    packages, size = snap.subdirs.get(subdir, (0, 0))
                    last = (snap.at, "imported", None)
                rows.append(
                    SubdirStatus(
                        channel.name,
                        subdir,
                        packages,
                        size,
                        last[0] if last else None,
                        last[1] if last else None,
                        next_runs.get(channel.name),
                        _quarantined(config.state_dir / QUARANTINE_DIR / channel.name, subdir),
                        solvable.get((channel.name, subdir)),
                    )
                )
            drops = _quarantined(config.state_dir / QUARANTINE_DIR / channel.name, DROPS_SUBDIR)
            if drops:  # rejected drops never reached a subdir
                rows.append(SubdirStatus(channel.name, "(drops)", 0, 0, None, None, None, drops))
    return rows


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


def _quarantined(folder: Path, subdir: str) -> int:
    target = folder / subdir
    return sum(1 for p in target.glob("*.reason")) if target.is_dir() else 0


def format_status(rows: list[SubdirStatus]) -> str:
    header = (
        "channel/subdir",
        "packages",
        "size",
        "last sync",
        "outcome",
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
                _size(row.size_bytes),
                _when(row.last_sync_at),
                row.last_outcome or "-",
                _when(row.next_run_at),
                str(row.quarantined),
                {True: "yes", False: "NO", None: "-"}[row.solvable],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
