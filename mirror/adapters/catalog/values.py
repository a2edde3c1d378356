"""The values the catalog hands out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CatalogFile:
    """A file in the tree as the catalog knows it. The record fields are None when only the
    file's stats were read (`files()`), or for a file whose record is not known yet."""

    filename: str
    size: int
    mtime_ns: int
    sha256: str | None
    md5: str | None
    origin: str
    name: str | None = None
    record: bytes | None = None
    indexed_ms: int | None = None
    run_exports: bytes | None = None
    about: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    filename: str
    record: bytes
    indexed_ms: int | None


@dataclass(frozen=True)
class UpstreamState:
    """What we last saw of one upstream subdir, to ask for it conditionally next time.

    `upstream_key` identifies the upstream URL (a hash, never the URL: it may hold a token);
    `variant` is the file the validators belong to (repodata.json.zst or repodata.json).
    `selection_key` fingerprints the filters that produced what is published.
    """

    upstream_key: str
    variant: str
    etag: str | None
    last_modified: str | None
    zst_missing_until: float | None
    selection_key: str | None
    selection_valid_until_ms: int | None


@dataclass(frozen=True)
class OutputStat:
    size: int
    mtime_ns: int
    render_key: str | None = None
    zst_level: int | None = None


@dataclass(frozen=True)
class RepodataSourceState:
    """How a subdir's upstream records were last fetched.

    `source`: "shards" (the CEP-16 shard index and the shards the rules reach) or "full"
    (repodata.json(.zst)). `repodata_bytes`: what that fetch transferred (0 when answered
    "not modified"). `index_missing_until`: the upstream answered 404 for its shard index;
    until then the index is not asked for again."""

    upstream_key: str
    source: str
    repodata_bytes: int
    index_missing_until: float | None
