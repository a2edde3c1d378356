"""The low-cardinality words reports use for what happened (metric labels, status columns)."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How one channel/subdir sync ended."""

    OK = "ok"  # everything selected is published
    UNCHANGED = "unchanged"  # upstream unchanged and the tree intact: nothing to do
    FAILED = "failed"  # some work failed; what was published is still consistent
    GUARDED = "guarded"  # refused to delete too much; the tree was left untouched
    INTERRUPTED = "interrupted"
    PLANNED = "planned"  # --dry-run


class UpstreamStatus(StrEnum):
    """What the upstream said about a subdir's repodata."""

    FETCHED = "fetched"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"
    ABSENT = "absent"  # upstream has no such subdir (404): an empty index is published


class DropResult(StrEnum):
    """What became of one file taken from a drop folder."""

    PUBLISHED = "published"
    DUPLICATE = "duplicate"  # the same bytes were already published under that name
    QUARANTINED = "quarantined"
    DEFERRED = "deferred"  # changed while being taken, or failed while still fresh: look again
    IGNORED = "ignored"


class ProblemKind(StrEnum):
    """What `mirror verify` found wrong; repair decides by it."""

    MISSING_FILE = "missing_file"
    BAD_FILE = "bad_file"  # size or hash differs from its record
    BAD_REPODATA = "bad_repodata"  # unreadable or damaged index files
    STALE_INDEX = "stale_index"  # zst or shards valid but not in step with repodata.json
    UNINDEXED = "unindexed"
    TEMP_FILE = "temp_file"
