"""Report values the use cases return; callers (cli, daemon, metrics) read them, nothing else.

Every report type lives here, beside the words for outcomes (`outcomes.py`), so that reading a
report never imports the use case (or the http client) that produced it.
"""

from mirror.reports.bundles import ExportReport, ImportReport
from mirror.reports.health import (
    DropFolderStatus,
    Problem,
    QuarantineEntry,
    SubdirCheck,
    SubdirStatus,
    VerifyOutcome,
    VerifyReport,
)
from mirror.reports.local import (
    DropOutcome,
    DropReport,
    IndexReport,
    PublishResult,
    QuarantinedFile,
    SubdirIndexReport,
)
from mirror.reports.outcomes import DropResult, Outcome, ProblemKind, UpstreamStatus
from mirror.reports.sync import (
    CheckResult,
    DanglingReport,
    FileFailure,
    SubdirReport,
    SyncReport,
)

__all__ = [
    "CheckResult",
    "DanglingReport",
    "DropFolderStatus",
    "DropOutcome",
    "DropReport",
    "DropResult",
    "ExportReport",
    "FileFailure",
    "ImportReport",
    "IndexReport",
    "Outcome",
    "Problem",
    "ProblemKind",
    "PublishResult",
    "QuarantineEntry",
    "QuarantinedFile",
    "SubdirCheck",
    "SubdirIndexReport",
    "SubdirReport",
    "SubdirStatus",
    "SyncReport",
    "UpstreamStatus",
    "VerifyOutcome",
    "VerifyReport",
]
