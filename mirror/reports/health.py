"""Reports of the tree's health: verify and repair findings, and what `mirror status` shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mirror.reports.outcomes import ProblemKind


@dataclass(frozen=True)
class Problem:
    channel: str
    subdir: str
    kind: ProblemKind
    name: str  # the file concerned, relative to the subdir
    message: str

    def __str__(self) -> str:
        return f"{self.channel}/{self.subdir}/{self.name}: {self.message}"


@dataclass
class SubdirCheck:
    channel: str
    subdir: str
    records: int = 0
    hashed: int = 0
    problems: list[Problem] = field(default_factory=list)

    def problem(self, kind: ProblemKind, name: str, message: str) -> None:
        self.problems.append(Problem(self.channel, self.subdir, kind, name, message))


@dataclass(frozen=True)
class VerifyReport:
    subdirs: tuple[SubdirCheck, ...]
    seconds: float

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.subdirs for p in s.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def serving_safely(self) -> bool:
        """What a crash may leave: index copies out of step with each other, temp files and
        files not yet (or no longer) indexed; but no index naming a missing or wrong file."""
        return all(
            p.kind in (ProblemKind.STALE_INDEX, ProblemKind.TEMP_FILE, ProblemKind.UNINDEXED)
            for p in self.problems
        )


@dataclass(frozen=True)
class VerifyOutcome:
    before: VerifyReport
    after: VerifyReport | None  # after repairing, when asked to
    repaired: int = 0


@dataclass(frozen=True)
class QuarantineEntry:
    filename: str
    reason: str


@dataclass(frozen=True)
class DropFolderStatus:
    path: str
    watch_mode: str | None = None  # `events` or `poll` (mirror/core/watch_modes.py)
    filesystem: str | None = None  # the folder's filesystem type (nfs4, ext4, ...) if known
    poll_interval_s: float | None = None  # when polled


@dataclass(frozen=True)
class SubdirStatus:
    channel: str
    subdir: str
    packages: int
    size_bytes: int
    last_sync_at: float | None
    last_outcome: str | None
    next_run_at: float | None
    quarantined: int
    solvable: bool | None = None  # the last solvability check on this platform; None: none ran
    # Fields below were added for the status page; each defaults to "unknown" so readers of
    # `mirror status --json` that predate them keep working.
    last_message: str | None = None  # what the last run said: why it failed, was guarded, ...
    repodata_source: str | None = None  # the upstream file it came from, or how it was made
    solve_problem: str | None = None  # the solver's explanation when `solvable` is False
    quarantined_files: tuple[QuarantineEntry, ...] = ()  # newest first, QUARANTINE_LISTED at most
    # Channel-level facts, repeated on each row of the channel (the rows stay one flat list):
    drop_folders: tuple[DropFolderStatus, ...] = ()
    # what the channel's last dependency closure failed on (the catalog's closure_notes)
    closure_problems: tuple[str, ...] = ()
    # Per row again: include specs the last closure found no candidate for on this platform
    closure_warnings: tuple[str, ...] = ()
    # records whose dependencies name packages the channel lacks (None: not computed yet), and
    # the first of those names
    dangling_dependencies: int | None = None
    dangling_names: tuple[str, ...] = ()
    # how the last fetch read upstream records: "shards" (CEP-16) or "full" (repodata.json),
    # and the repodata bytes it transferred; None when never fetched (or not mirrored)
    repodata_via: str | None = None
    repodata_bytes: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
