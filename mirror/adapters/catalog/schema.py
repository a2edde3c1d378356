"""The catalog's SQLite schema. Everything in it can be rebuilt from the tree and upstream."""

SCHEMA_VERSION = 6
# 3 added channel_dirty; 4 closure_notes and dangling; 5 repodata_source; 6 guard_log: versions
# only add tables, so CREATE ... IF NOT EXISTS migrates them in place
FIRST_COMPATIBLE_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    channel     TEXT NOT NULL,
    subdir      TEXT NOT NULL,
    filename    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT,
    md5         TEXT,
    origin      TEXT NOT NULL,
    name        TEXT,
    record      BLOB,     -- JSON as published before patches (mirrored: upstream's bytes)
    indexed_ms  INTEGER,  -- CEP-47: when the file first entered the index
    run_exports BLOB,     -- JSON object, NULL when unknown (mirrored files)
    about       BLOB,     -- JSON object of info/about.json fields, NULL when unknown
    PRIMARY KEY (channel, subdir, filename)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_name ON files (channel, subdir, name);
CREATE TABLE IF NOT EXISTS dirty (
    channel  TEXT NOT NULL,
    subdir   TEXT NOT NULL,
    filename TEXT NOT NULL,
    PRIMARY KEY (channel, subdir, filename)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_dirty (
    channel TEXT NOT NULL,
    name    TEXT NOT NULL,  -- a package name whose records changed since channeldata.json
    PRIMARY KEY (channel, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subdir_meta (
    channel   TEXT NOT NULL,
    subdir    TEXT NOT NULL,
    top_level BLOB NOT NULL,  -- msgpack map of upstream top-level keys -> raw JSON bytes
    PRIMARY KEY (channel, subdir)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shards (
    channel TEXT NOT NULL,
    subdir  TEXT NOT NULL,
    name    TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (channel, subdir, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shard_orphans (
    channel TEXT NOT NULL,
    subdir  TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    since   REAL NOT NULL,  -- when the published index stopped naming it
    PRIMARY KEY (channel, subdir, sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS upstream_state (
    channel        TEXT NOT NULL,
    subdir         TEXT NOT NULL,
    upstream_key   TEXT NOT NULL,
    variant        TEXT NOT NULL,
    etag           TEXT,
    last_modified  TEXT,
    zst_missing_until REAL,
    selection_key  TEXT,
    selection_valid_until_ms INTEGER,
    PRIMARY KEY (channel, subdir)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outputs (
    channel   TEXT NOT NULL,
    subdir    TEXT NOT NULL,
    name      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    render_key TEXT,       -- what the file was rendered from (settings, top level, patches)
    zst_level INTEGER,     -- for .zst files: recompress later when this is a fast level
    PRIMARY KEY (channel, subdir, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule (
    channel  TEXT PRIMARY KEY,
    next_run REAL,             -- when the daemon will next sync it (NULL: not scheduled)
    updated  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_runs (
    id               INTEGER PRIMARY KEY,
    channel          TEXT NOT NULL,
    subdir           TEXT NOT NULL,
    started_at       REAL NOT NULL,
    finished_at      REAL NOT NULL,
    outcome          TEXT NOT NULL,
    downloaded_files INTEGER NOT NULL,
    downloaded_bytes INTEGER NOT NULL,
    deleted_files    INTEGER NOT NULL,
    failed_files     INTEGER NOT NULL,
    message          TEXT
);
CREATE TABLE IF NOT EXISTS closure_notes (
    channel  TEXT NOT NULL,
    platform TEXT,           -- NULL: about the channel's whole closure
    kind     TEXT NOT NULL,  -- see ClosureNoteKind
    spec     TEXT,           -- the include spec an `unavailable` note is about
    message  TEXT NOT NULL,
    noted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS closure_notes_by_channel ON closure_notes (channel);
CREATE TABLE IF NOT EXISTS dangling (
    channel    TEXT NOT NULL,
    subdir     TEXT NOT NULL,
    records    INTEGER NOT NULL,  -- records depending on a name no record of the channel has
    names      TEXT NOT NULL,     -- JSON list: those names, the most needed first
    examples   TEXT NOT NULL,     -- JSON list: "<file> needs '<dependency>'"
    missing    INTEGER NOT NULL,  -- how many names are missing (names keeps the first few)
    basis      TEXT NOT NULL,     -- what it was computed from: the same basis, the same answer
    checked_at REAL NOT NULL,
    PRIMARY KEY (channel, subdir)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS repodata_source (
    channel        TEXT NOT NULL,
    subdir         TEXT NOT NULL,
    upstream_key   TEXT NOT NULL,
    source         TEXT NOT NULL,     -- shards | full: what the last fetch of records used
    repodata_bytes INTEGER NOT NULL,  -- what that fetch transferred
    index_missing_until REAL,         -- no shard index upstream (404): not asked until then
    PRIMARY KEY (channel, subdir)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS guard_log (
    channel  TEXT NOT NULL,
    subdir   TEXT NOT NULL,
    at       REAL NOT NULL,     -- when the sync that made these changes ended
    deleted  INTEGER NOT NULL,  -- published files it deleted
    replaced INTEGER NOT NULL,  -- published files it gave new bytes under the same name
    accepted INTEGER NOT NULL   -- 1: run with --allow-mass-delete/-replace past a limit
);
CREATE INDEX IF NOT EXISTS guard_log_by_subdir ON guard_log (channel, subdir, at);
"""
