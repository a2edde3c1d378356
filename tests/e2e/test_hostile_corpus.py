"""A corpus of hostile inputs, one parametrized case each: upstream repodata records, package
files (through drop folders and `mirror index`), drop folder entries and config files.

For every case: the bad input is refused or quarantined with a message naming it and saying
why, nothing outside the tree (and the state directory) changes, what was published before is
still published, and the good input beside it is published. Published repodata must stay
readable by rattler: one badly typed record makes it refuse the whole file.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import logging
import os
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import Quarantine, local_tree
from mirror.config import load_config
from mirror.config.model import IndexSettings
from mirror.errors import ConfigError
from mirror.local.drops import DropContext, admit_drops
from mirror.local.indexer import IndexContext, index_channel
from mirror.reports import DropOutcome, DropResult, Outcome
from mirror.sync.run import SyncOptions, run_sync
from tests.conftest import SHARED_REAL, run_cli
from tests.support import hostile
from tests.support.builder import PackageSpec, package_bytes, record_for
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.hostile import conda_bytes, file, info_members, link, special, tar_bytes, zstd
from tests.support.upstream_server import UpstreamServer

# -- helpers ---------------------------------------------------------------------------------

Snapshot = dict[str, tuple[Any, ...]]


def snapshot(directory: Path, skip: Collection[Path] = ()) -> Snapshot:
    """Every entry under directory (never following symlinks): type, mode, mtime and content
    (sha256 of regular files), so any write, chmod, rename or new file shows up."""
    skipped = {p.resolve() for p in skip}
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skipped]
        for name in [*dirnames, *filenames]:
            path = here / name
            if path.resolve() in skipped:
                continue
            st = path.lstat()
            content: object = None
            if stat.S_ISREG(st.st_mode) and os.access(path, os.R_OK):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
            out[str(path.relative_to(directory))] = (kind, mode, st.st_mtime_ns, content)
    return out


def make_outside(base: Path) -> Path:
    """Files a hostile input would love to reach: a passwd, a package, a private key."""
    outside = base / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (outside / "private.key").write_bytes(b"secret\n")
    (outside / "private.key").chmod(0o600)
    (outside / "lib").mkdir()
    return outside


def rattler_reads(repodata: Path) -> int:
    """How many records rattler finds in a repodata.json (it fails on one mistyped record)."""
    import rattler

    document = rattler.RepoData.from_path(str(repodata))
    return len(document.into_repo_data(rattler.Channel(repodata.parent.parent.as_uri())))


def listed(repodata: Path) -> set[str]:
    document = json.loads(repodata.read_bytes())
    return set(document["packages"]) | set(document["packages.conda"])


def shown(name: str) -> str:
    """A file name as messages show it (control characters escaped)."""
    text = name.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 200 else text[:200] + "..."


# -- 1. upstream repodata records --------------------------------------------------------------

GOOD = PackageSpec("good", "1.0", subdir="linux-64")
SIB = PackageSpec("sib", "2.0", subdir="linux-64")
EVIL = PackageSpec("evil", "1.0", subdir="linux-64")
PACKAGES = {spec.filename: package_bytes(spec) for spec in (GOOD, SIB, EVIL)}
RECORDS = {spec.filename: record_for(spec, PACKAGES[spec.filename]) for spec in (GOOD, SIB, EVIL)}
EVIL_FN = EVIL.filename
DROP = object()


def rec(**changes: Any) -> bytes:
    """evil's real record (its file exists upstream, so an accepted record WOULD be published),
    with changes; DROP removes a key."""
    record = {**RECORDS[EVIL_FN], **changes}
    return json.dumps({k: v for k, v in record.items() if v is not DROP}).encode()


def rec_raw(tail: bytes) -> bytes:
    """evil's record with raw JSON appended inside the object (duplicate keys and the like)."""
    return json.dumps(RECORDS[EVIL_FN]).encode()[:-1] + b", " + tail + b"}"


@dataclass(frozen=True)
class RecordCase:
    key: str  # "{outside}" is replaced by the path of the outside folder
    raw: bytes
    says: str
    group: str = "packages.conda"


RECORD_CASES: dict[str, RecordCase] = {
    # bytes no strict decoder takes: the document is cut record by record, this one refused
    "nan-in-record": RecordCase("evil-1.0-0.conda", rec_raw(b'"x": NaN'), "not valid JSON"),
    "not-utf8-summary": RecordCase("evil-1.0-0.conda", rec_raw(b'"summary": "caf\xe9"'), "UTF-8"),
    "lone-surrogate": RecordCase("evil-1.0-0.conda", rec_raw(b'"summary": "\\ud800"'), "surrogate"),
    # file names that are paths or carry control characters
    "dotdot": RecordCase("../evil-1.0-0.conda", rec(), "not a plain"),
    "dotdot-deep": RecordCase("../../../../etc/evil-1.0-0.conda", rec(), "not a plain"),
    "absolute-etc": RecordCase("/etc/evil-1.0-0.conda", rec(), "not a plain"),
    "absolute-outside": RecordCase("{outside}/lib/evil-1.0-0.conda", rec(), "not a plain"),
    "subfolder": RecordCase("a/evil-1.0-0.conda", rec(), "not a plain"),
    "backslash-dotdot": RecordCase("..\\evil-1.0-0.conda", rec(), "not a plain"),
    "drive-letter": RecordCase("C:\\evil-1.0-0.conda", rec(), "not a plain"),
    "just-dotdot": RecordCase("..", rec(), "not a plain"),
    "just-dot": RecordCase(".", rec(), "not a plain"),
    "dotfile": RecordCase(".evil-1.0-0.conda", rec(), "not a plain"),
    "bare-extension": RecordCase(".conda", rec(), "not a plain"),
    "empty-name": RecordCase("", rec(), "not a plain"),
    "nul-in-name": RecordCase("evil\x00-1.0-0.conda", rec(), "not a plain"),
    "nul-before-ext": RecordCase("evil-1.0-0.conda\x00.txt", rec(), "not a plain"),
    "newline": RecordCase("evil-1.0-0\n.conda", rec(), "not a plain"),
    "escape-sequence": RecordCase("evil-1.0-0\x1b[31m.conda", rec(), "not a plain"),
    "non-ascii": RecordCase("évil-1.0-0.conda", rec(name="évil"), "not a plain"),
    "url-encoded-dotdot": RecordCase("%2e%2e%2fevil-1.0-0.conda", rec(), "not a plain"),
    "query-string": RecordCase("evil-1.0-0.conda?x=1", rec(), "not a plain"),
    "trailing-space": RecordCase("evil-1.0-0.conda ", rec(), "not a plain"),
    "trailing-slash": RecordCase("evil-1.0-0.conda/", rec(), "not a plain"),
    "300-chars": RecordCase("e" * 290 + "-1.0-0.conda", rec(name="e" * 290), "not a plain"),
    "wrong-extension-zip": RecordCase("evil-1.0-0.zip", rec(), "not a plain"),
    "wrong-extension-tar-gz": RecordCase("evil-1.0-0.tar.gz", rec(), "not a plain"),
    "conda-under-packages": RecordCase(EVIL_FN, rec(), "listed under 'packages'", "packages"),
    "tar-bz2-under-packages-conda": RecordCase("evil-1.0-0.tar.bz2", rec(), "listed under"),
    # records that disagree with their file name
    "name-disagrees": RecordCase(EVIL_FN, rec(name="other"), "does not match its file name"),
    "version-disagrees": RecordCase(EVIL_FN, rec(version="9.9"), "does not match"),
    "build-disagrees": RecordCase(EVIL_FN, rec(build="1"), "does not match"),
    "nul-in-name-field": RecordCase(EVIL_FN, rec(name="evil\x00"), "does not match"),
    "newline-in-version": RecordCase(EVIL_FN, rec(version="1.0\n"), "does not match"),
    "control-in-build": RecordCase(EVIL_FN, rec(build="0\x07"), "does not match"),
    # wrong types and values
    "size-string": RecordCase(EVIL_FN, rec(size="123"), "got `str` - at `$.size`"),
    "size-negative": RecordCase(EVIL_FN, rec(size=-1), "size is negative"),
    "size-float": RecordCase(EVIL_FN, rec(size=1.5), "got `float` - at `$.size`"),
    "size-bool": RecordCase(EVIL_FN, rec(size=True), "got `bool` - at `$.size`"),
    "size-2-to-the-70": RecordCase(EVIL_FN, rec(size=2**70), "at `$.size`"),
    # issue 11: each used to stall its subdir or be published where rattler cannot read it
    "size-2-to-the-62": RecordCase(EVIL_FN, rec(size=2**62), "size"),
    "timestamp-float": RecordCase(EVIL_FN, rec(timestamp=1700000000.5), "timestamp"),
    "timestamp-1e300": RecordCase(
        EVIL_FN, rec(timestamp=DROP)[:-1] + b', "timestamp": 1e300}', "$.timestamp"
    ),
    "version-bangs": RecordCase("evil-!!!==-0.conda", rec(version="!!!=="), "version"),
    "name-253-chars": RecordCase("e" * 241 + "-1.0-0.conda", rec(name="e" * 241), "not a plain"),
    "sha256-not-hex": RecordCase(EVIL_FN, rec(sha256="z" * 64), "sha256 is not 64"),
    "sha256-63-digits": RecordCase(EVIL_FN, rec(sha256="a" * 63), "sha256 is not 64"),
    "sha256-uppercase": RecordCase(EVIL_FN, rec(sha256="A" * 64), "sha256 is not 64"),
    "sha256-number": RecordCase(EVIL_FN, rec(sha256=12), "at `$.sha256`"),
    "md5-not-hex": RecordCase(EVIL_FN, rec(md5="../" * 10 + "xx"), "md5 is not 32"),
    "no-checksum": RecordCase(EVIL_FN, rec(sha256=DROP, md5=DROP), "neither sha256 nor md5"),
    "depends-a-string": RecordCase(EVIL_FN, rec(depends="zlib"), "at `$.depends`"),
    "depends-items-not-strings": RecordCase(EVIL_FN, rec(depends=[1, None]), "`$.depends[0]`"),
    "constrains-items-lists": RecordCase(
        EVIL_FN, rec(constrains=[["x", "<2"]]), "at `$.constrains[0]`"
    ),
    "depends-an-object": RecordCase(EVIL_FN, rec(depends={"zlib": 1}), "at `$.depends`"),
    "constrains-a-string": RecordCase(EVIL_FN, rec(constrains="x <2"), "at `$.constrains`"),
    "name-a-number": RecordCase(EVIL_FN, rec(name=5), "at `$.name`"),
    "version-a-number": RecordCase(EVIL_FN, rec(version=1.0), "at `$.version`"),
    "build-missing": RecordCase(EVIL_FN, rec(build=DROP), "missing required field `build`"),
    "build-number-string": RecordCase(EVIL_FN, rec(build_number="0"), "`$.build_number`"),
    "build-number-negative": RecordCase(EVIL_FN, rec(build_number=-1), "`$.build_number`"),
    "timestamp-a-string": RecordCase(EVIL_FN, rec(timestamp="yesterday"), "`$.timestamp`"),
    "track-features-a-number": RecordCase(EVIL_FN, rec(track_features=5), "`$.track_features`"),
    "track-features-null": RecordCase(EVIL_FN, rec(track_features=None), "`$.track_features`"),
    "features-a-list": RecordCase(EVIL_FN, rec(features=["mkl"]), "at `$.features`"),
    "noarch-a-number": RecordCase(EVIL_FN, rec(noarch=5), "at `$.noarch`"),
    "noarch-unknown-kind": RecordCase(EVIL_FN, rec(noarch="weird"), "at `$.noarch`"),
    "license-a-number": RecordCase(EVIL_FN, rec(license=5), "at `$.license`"),
    "subdir-a-number": RecordCase(EVIL_FN, rec(subdir=64), "at `$.subdir`"),
    "subdir-null": RecordCase(EVIL_FN, rec(subdir=None), "at `$.subdir`"),
    "record-a-list": RecordCase(EVIL_FN, b"[1, 2]", "malformed"),
    "record-a-string": RecordCase(EVIL_FN, b'"evil"', "malformed"),
    "record-null": RecordCase(EVIL_FN, b"null", "malformed"),
    # keys given twice: conda keeps the last, rattler refuses the whole document
    "duplicate-name-key": RecordCase(EVIL_FN, rec_raw(b'"name": "other"'), "key 'name' twice"),
    "duplicate-sha256-key": RecordCase(
        EVIL_FN, rec_raw(b'"sha256": "' + b"0" * 64 + b'"'), "key 'sha256' twice"
    ),
    # gigantic fields
    "10-MB-depends-string": RecordCase(EVIL_FN, rec(depends="z" * 10_000_000), "`$.depends`"),
    "100k-depends-of-numbers": RecordCase(EVIL_FN, rec(depends=list(range(100_000))), "depends"),
}


def record_case_says(case_id: str) -> str:
    return RECORD_CASES[case_id].says


@dataclass(frozen=True)
class DocCase:
    body: bytes
    says: str


def _doc(**top: Any) -> bytes:
    document: dict[str, Any] = {
        "info": {"subdir": "linux-64"},
        "packages": {},
        "packages.conda": {fn: RECORDS[fn] for fn in (GOOD.filename, SIB.filename)},
        "repodata_version": 1,
    }
    document.update(top)
    return json.dumps(document).encode()


NOT_JSON = "not valid repodata JSON"
DOC_CASES: dict[str, DocCase] = {
    "top-level-list": DocCase(b"[1, 2, 3]", NOT_JSON),
    "top-level-string": DocCase(b'"packages"', NOT_JSON),
    "top-level-number": DocCase(b"42", NOT_JSON),
    "top-level-null": DocCase(b"null", NOT_JSON),
    "empty-body": DocCase(b"", NOT_JSON),
    "truncated-json": DocCase(_doc()[:-40], NOT_JSON),
    "html-error-page": DocCase(b"<html><body>502 Bad Gateway</body></html>", NOT_JSON),
    "utf8-bom": DocCase(b"\xef\xbb\xbf" + _doc(), NOT_JSON),
    "nested-2000-deep": DocCase(
        _doc()[:-1] + b', "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", NOT_JSON
    ),
    "packages-a-list": DocCase(_doc(packages=[1]), "'packages' is not a JSON object"),
    "packages-conda-a-string": DocCase(_doc(**{"packages.conda": "x"}), "'packages.conda' is not"),
    "packages-conda-null": DocCase(_doc(**{"packages.conda": None}), "'packages.conda' is not"),
    "removed-a-string": DocCase(_doc(removed="evil-1.0-0.conda"), "'removed'"),
    "removed-numbers": DocCase(_doc(removed=[1, 2]), "'removed'"),
    "repodata-version-a-string": DocCase(_doc(repodata_version="1"), "'repodata_version'"),
}


def write_repodata_doc(upstream: Path, body: bytes) -> None:
    """Write repodata.json (no .zst) with an mtime that always differs from the last one."""
    path = upstream / "linux-64" / "repodata.json"
    previous = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(body)
    stamp = max(previous + 1_000_000_000, time.time_ns())
    os.utime(path, ns=(stamp, stamp))


def record_doc(entries: list[tuple[str, str, bytes]]) -> bytes:
    """good and sib plus raw entries, JSON built by hand so raw records stay byte-exact."""
    groups: dict[str, list[bytes]] = {"packages": [], "packages.conda": []}
    for fn in (GOOD.filename, SIB.filename):
        groups["packages.conda"].append(
            json.dumps(fn).encode() + b": " + json.dumps(RECORDS[fn]).encode()
        )
    for group, key, raw in entries:
        groups[group].append(json.dumps(key).encode() + b": " + raw)
    parts = [b'"' + g.encode() + b'": {' + b", ".join(items) + b"}" for g, items in groups.items()]
    return b'{"info": {"subdir": "linux-64"}, ' + b", ".join(parts) + b', "repodata_version": 1}'


@dataclass
class MirrorSite:
    base: Path
    upstream: Path
    config: Path
    outside: Path

    @property
    def root(self) -> Path:
        return self.base / "site" / "tree"

    @property
    def state(self) -> Path:
        return self.base / "site" / "state"

    @property
    def subdir(self) -> Path:
        return self.root / "up" / "linux-64"

    def sync(self) -> Any:
        (report,) = run_sync(load_config(self.config), SyncOptions()).subdirs
        return report

    def outside_tree(self) -> Snapshot:
        return snapshot(self.base, skip=(self.root, self.state))


def mirror_site(base: Path, upstream_url: str | None = None) -> MirrorSite:
    """An upstream (good, sib and evil really exist in it), a site that has already mirrored
    good, and an outside folder."""
    upstream = base / "upstream"
    (upstream / "linux-64").mkdir(parents=True)
    for fn, data in PACKAGES.items():
        (upstream / "linux-64" / fn).write_bytes(data)
    (upstream / "evil-1.0-0.conda").write_bytes(PACKAGES[EVIL_FN])  # what ../ would reach
    outside = make_outside(base)
    first = json.dumps(
        {"info": {"subdir": "linux-64"}, "packages.conda": {GOOD.filename: RECORDS[GOOD.filename]}}
    )
    write_repodata_doc(upstream, first.encode())
    site_dir = base / "site"
    site_dir.mkdir()
    document = {
        "root": "tree",
        "state_dir": "state",
        "retries": 1,
        "retry_backoff_s": 0.01,
        "channels": {
            "up": {"upstream": upstream_url or upstream.as_uri(), "subdirs": ["linux-64"]}
        },
    }
    config = site_dir / "mirror.yaml"
    config.write_text(yaml.safe_dump(document))
    site = MirrorSite(base, upstream, config, outside)
    assert site.sync().outcome == Outcome.OK
    assert listed(site.subdir / "repodata.json") == {GOOD.filename}
    return site


@pytest.mark.parametrize("case_id", list(RECORD_CASES))
def test_a_hostile_upstream_record_is_refused_by_name_and_its_siblings_are_published(
    tmp_path: Path, case_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    case = RECORD_CASES[case_id]
    site = mirror_site(tmp_path)
    key = case.key.replace("{outside}", str(site.outside))
    write_repodata_doc(site.upstream, record_doc([(case.group, key, case.raw)]))
    outside = site.outside_tree()

    with caplog.at_level(logging.WARNING):
        report = site.sync()

    assert report.outcome == Outcome.OK, report.message
    refusals = {r.filename: r.message for r in report.refused}
    assert list(refusals) == [shown(key)]
    assert case.says in refusals[shown(key)], refusals
    assert f"up/linux-64: refused upstream record {shown(key)}: " in caplog.text
    repodata = site.subdir / "repodata.json"
    assert listed(repodata) == {GOOD.filename, SIB.filename}
    assert rattler_reads(repodata) == 2
    on_disk = {p.name for p in site.subdir.iterdir() if p.name.endswith((".conda", ".tar.bz2"))}
    assert on_disk == {GOOD.filename, SIB.filename}
    assert site.outside_tree() == outside
    assert not Path("/etc/evil-1.0-0.conda").exists()


@pytest.fixture(scope="module")
def http_upstreams(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, UpstreamServer]]:
    root = tmp_path_factory.mktemp("served")
    with UpstreamServer(root) as server:
        yield root, server


@pytest.mark.parametrize("transport", ["file", "http"])
@pytest.mark.parametrize("case_id", list(DOC_CASES))
def test_invalid_upstream_repodata_fails_the_subdir_and_keeps_what_is_published(
    tmp_path: Path, case_id: str, transport: str, http_upstreams: tuple[Path, UpstreamServer]
) -> None:
    case = DOC_CASES[case_id]
    base = tmp_path
    url = None
    if transport == "http":
        served, server = http_upstreams
        base = served / f"{case_id}"
        base.mkdir()
        url = f"{server.url}/{case_id}/upstream"
    site = mirror_site(base, url)
    published = {p.name: p.read_bytes() for p in site.subdir.iterdir() if p.is_file()}
    write_repodata_doc(site.upstream, case.body)
    outside = site.outside_tree()

    report = site.sync()

    assert report.outcome == Outcome.FAILED
    message = report.message or ""
    assert case.says in message and "linux-64/repodata.json" in message, message
    assert {p.name: p.read_bytes() for p in site.subdir.iterdir() if p.is_file()} == published
    assert listed(site.subdir / "repodata.json") == {GOOD.filename}
    assert site.outside_tree() == outside


def test_an_info_that_is_not_an_object_is_replaced_and_the_records_are_published(
    tmp_path: Path,
) -> None:
    site = mirror_site(tmp_path)
    write_repodata_doc(site.upstream, _doc(info="../../etc"))
    assert site.sync().outcome == Outcome.OK
    repodata = site.subdir / "repodata.json"
    assert json.loads(repodata.read_bytes())["info"] == {"subdir": "linux-64"}
    assert rattler_reads(repodata) == 2


# -- 2. package files: through a drop folder, and `mirror index` of a local channel ------------

STEM = "evil-1.0-0"
PKG = [file("share/evil/ok.txt", b"ok\n")]


def conda_of(info: list[hostile.Member], pkg: list[hostile.Member] | None = None) -> bytes:
    return conda_bytes(STEM, zstd(tar_bytes(info)), zstd(tar_bytes(PKG if pkg is None else pkg)))


def tar_bz2_of(members: list[hostile.Member]) -> bytes:
    return bz2.compress(tar_bytes(members), 1)


def index_of(**changes: Any) -> list[hostile.Member]:
    index = {**hostile.INDEX, **changes}
    return info_members({k: v for k, v in index.items() if v is not DROP})


def good_evil(fmt: str = ".conda") -> bytes:
    return package_bytes(PackageSpec("evil", "1.0", fmt=fmt, files={"a.txt": b"a" * 3000}))


def with_wrong_crc(data: bytes, member: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        crc = zf.getinfo(member).CRC.to_bytes(4, "little")
    return data.replace(crc, bytes([crc[0] ^ 1]) + crc[1:])


INFO_ZST = zstd(tar_bytes(info_members()))


@dataclass(frozen=True)
class PackageCase:
    filename: str
    make: Callable[[], bytes]
    reason: str  # as the drop path and a deep index both give it...
    says: str
    index_reason: str | None = None  # ...unless the index differs (a subdir it is put in)


def _real(relative: str) -> Callable[[], bytes]:
    return lambda: (SHARED_REAL / relative).read_bytes()


PACKAGE_CASES: dict[str, PackageCase] = {
    "empty-conda": PackageCase(f"{STEM}.conda", lambda: b"", "corrupt", "is empty"),
    "empty-tar-bz2": PackageCase(f"{STEM}.tar.bz2", lambda: b"", "corrupt", "is empty"),
    "truncated-zip": PackageCase(f"{STEM}.conda", lambda: good_evil()[:-300], "corrupt", "zip"),
    "truncated-tar-bz2": PackageCase(
        f"{STEM}.tar.bz2", lambda: good_evil(".tar.bz2")[:-40], "corrupt", "evil"
    ),
    "zip-magic-then-garbage": PackageCase(
        f"{STEM}.conda", lambda: b"PK\x03\x04 not really", "corrupt", "not a valid zip"
    ),
    "random-bytes": PackageCase(f"{STEM}.conda", lambda: os.urandom(4096), "corrupt", "zip"),
    "corrupt-zstd-frame": PackageCase(
        f"{STEM}.conda",
        lambda: conda_bytes(STEM, INFO_ZST[:12] + bytes(range(256)) + INFO_ZST[12:]),
        "corrupt",
        "zstd",
    ),
    "truncated-zstd": PackageCase(
        f"{STEM}.conda", lambda: conda_bytes(STEM, INFO_ZST[:-20]), "corrupt", "evil"
    ),
    "not-zstd-at-all": PackageCase(
        f"{STEM}.conda", lambda: conda_bytes(STEM, b"plain text"), "corrupt", "zstd"
    ),
    "corrupt-bz2-stream": PackageCase(
        f"{STEM}.tar.bz2", lambda: b"BZh91AY&SY" + bytes(range(256)) * 4, "corrupt", "bzip2"
    ),
    "tar-header-checksum": PackageCase(
        f"{STEM}.tar.bz2",
        lambda: bz2.compress(tar_bytes(info_members()).replace(b"index.json", b"index.jsoN", 1)),
        "corrupt",
        "evil",
    ),
    "wrong-crc": PackageCase(
        f"{STEM}.conda",
        lambda: with_wrong_crc(good_evil(), f"info-{STEM}.tar.zst"),
        "corrupt",
        "CRC",
    ),
    "zip-without-info-tar": PackageCase(
        f"{STEM}.conda", lambda: conda_bytes(STEM, None), "missing_index", "info-evil-1.0-0"
    ),
    "info-tar-without-index": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of([file("info/about.json", b"{}")]),
        "missing_index",
        "info/index.json",
    ),
    "tar-bz2-without-index": PackageCase(
        f"{STEM}.tar.bz2",
        lambda: tar_bz2_of([file("bin/x", b"x")]),
        "missing_index",
        "info/index.json",
    ),
    "index-not-json": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(raw_index=b"{name: evil}")),
        "invalid_json",
        "index.json",
    ),
    "index-a-list": PackageCase(
        f"{STEM}.conda", lambda: conda_of(info_members([1, 2])), "invalid_json", "index.json"
    ),
    "index-a-string": PackageCase(
        f"{STEM}.conda", lambda: conda_of(info_members("evil")), "invalid_json", "index.json"
    ),
    "index-not-utf8": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(raw_index='{"name": "évil"}'.encode("latin-1"))),
        "invalid_json",
        "UTF-8",
    ),
    "index-nan": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(raw_index=b'{"x": NaN}')),
        "invalid_json",
        "index.json",
    ),
    "index-nested-100k": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(raw_index=b'{"a":' * 100_000 + b"1" + b"}" * 100_000)),
        "invalid_json",
        "index.json",
    ),
    "index-20-MB": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(raw_index=b'{"x": "' + b"a" * 20_000_000 + b'"}')),
        "too_large",
        "index.json",
    ),
    "index-twice": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of([*info_members(), *info_members()]),
        "corrupt",
        "index.json",
    ),
    "index-a-symlink": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of([link("info/index.json", "../etc/passwd")]),
        "corrupt",
        "index.json",
    ),
    "name-a-number": PackageCase(
        f"{STEM}.conda", lambda: conda_of(index_of(name=5)), "invalid_metadata", "'name'"
    ),
    "version-missing": PackageCase(
        f"{STEM}.conda", lambda: conda_of(index_of(version=DROP)), "invalid_metadata", "'version'"
    ),
    "depends-a-string": PackageCase(
        f"{STEM}.conda", lambda: conda_of(index_of(depends="zlib")), "invalid_metadata", "depends"
    ),
    "build-number-negative": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(index_of(build_number=-3)),
        "invalid_metadata",
        "build_number",
    ),
    "noarch-a-number": PackageCase(
        f"{STEM}.conda", lambda: conda_of(index_of(noarch=7)), "invalid_metadata", "noarch"
    ),
    "track-features-a-number": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(index_of(track_features=1)),
        "invalid_metadata",
        "track_features",
    ),
    "timestamp-a-string": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(index_of(timestamp="now")),
        "invalid_metadata",
        "timestamp",
    ),
    "license-a-list": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(index_of(license=["MIT"])),
        "invalid_metadata",
        "license",
    ),
    "wrong-subdir": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(index_of(subdir="osx-arm64")),
        "wrong_subdir",
        "osx-arm64",
        index_reason="invalid_metadata",
    ),
    "misnamed-tar-bz2": PackageCase(
        "other-1.0-0.tar.bz2",
        lambda: tar_bz2_of([*info_members(), *PKG]),
        "invalid_metadata",
        "which says evil-1.0-0",
    ),
    "misnamed-conda": PackageCase(
        "other-1.0-0.conda", lambda: conda_of(info_members()), "missing_index", "info-other"
    ),
    "member-dotdot": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [file("../x", b"x")]),
        "unsafe_member",
        "'../x'",
    ),
    "member-absolute": PackageCase(
        f"{STEM}.tar.bz2",
        lambda: tar_bz2_of([*info_members(), file("/etc/passwd", b"r")]),
        "unsafe_member",
        "/etc/passwd",
    ),
    "member-a-dotdot-b": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [file("a/../../b", b"b")]),
        "unsafe_member",
        "a/../../b",
    ),
    "member-backslashes": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [file("..\\..\\w.txt", b"w")]),
        "unsafe_member",
        "w.txt",
    ),
    "member-nul": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [file("bin/ok", b"x", pax={"path": "bin/ok\x00.txt"})]),
        "unsafe_member",
        "bin/ok",
    ),
    "symlink-to-etc-shadow": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [link("lib/s", "/etc/shadow")]),
        "unsafe_member",
        "/etc/shadow",
    ),
    "symlink-up-and-out": PackageCase(
        f"{STEM}.tar.bz2",
        lambda: tar_bz2_of([*info_members(), link("lib/up", "../../..")]),
        "unsafe_member",
        "lib/up",
    ),
    "hardlink-out": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [link("lib/h", "../outside", hard=True)]),
        "unsafe_member",
        "lib/h",
    ),
    "hardlink-to-missing": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [link("lib/h", "etc/passwd", hard=True)]),
        "unsafe_member",
        "lib/h",
    ),
    "fifo-member": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [special("bin/f", tarfile.FIFOTYPE)]),
        "unsafe_member",
        "bin/f",
    ),
    "char-device-member": PackageCase(
        f"{STEM}.tar.bz2",
        lambda: tar_bz2_of([*info_members(), special("dev/null", tarfile.CHRTYPE)]),
        "unsafe_member",
        "dev/null",
    ),
    "block-device-member": PackageCase(
        f"{STEM}.conda",
        lambda: conda_of(info_members(), [special("dev/sda", tarfile.BLKTYPE)]),
        "unsafe_member",
        "dev/sda",
    ),
    "global-pax-renaming": PackageCase(
        f"{STEM}.tar.bz2",
        lambda: bz2.compress(tar_bytes(info_members(), global_pax={"path": "../x"})),
        "corrupt",
        "evil",
    ),
    "zstd-zero-bomb": PackageCase(
        f"{STEM}.conda",
        lambda: conda_bytes(STEM, INFO_ZST, hostile.zstd_zero_bomb(10, 1 << 30)),
        "too_large",
        "decompression bomb",
    ),
    "zip-in-place-of-the-info-tar": PackageCase(
        f"{STEM}.conda", lambda: conda_bytes(STEM, good_evil()), "corrupt", "zstd"
    ),
    "zip-in-place-of-the-pkg-tar": PackageCase(
        f"{STEM}.conda", lambda: conda_bytes(STEM, INFO_ZST, good_evil()), "corrupt", "bad zstd"
    ),
    "info-tar-twice": PackageCase(
        f"{STEM}.conda",
        lambda: conda_bytes(STEM, INFO_ZST, extra={f"info-{STEM}.tar.zst": INFO_ZST}),
        "corrupt",
        "info-evil",
    ),
    "deflated-tars": PackageCase(
        f"{STEM}.conda",
        lambda: conda_bytes(STEM, INFO_ZST, compress_type=zipfile.ZIP_DEFLATED),
        "unsupported",
        "evil",
    ),
    "real-corrupt-conda": PackageCase(
        "another_bad_package.conda",
        _real("edge/corrupt/noarch/another_bad_package.conda"),
        "corrupt",
        "empty",
    ),
    "real-corrupt-tar-bz2": PackageCase(
        "bad_package.tar.bz2",
        _real("edge/corrupt/noarch/bad_package.tar.bz2"),
        "corrupt",
        "bzip2",
    ),
}


def _payload_header() -> bytes:
    payload = tarfile.TarInfo("share/payload.bin")
    payload.size = 304 << 20
    return payload.tobuf()


PREV = PackageSpec("prev", "1.0")
NEIGHBOUR = PackageSpec("neighbour", "3.0")


@dataclass
class LocalSite:
    """A local channel `local` fed by a drop folder, with prev already published."""

    base: Path
    channel: Any
    outside: Path

    @property
    def root(self) -> Path:
        return self.base / "tree"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def drops(self) -> Path:
        return self.base / "drops"

    def repodata(self, subdir: str = "noarch") -> Path:
        return self.root / "local" / subdir / "repodata.json"

    def admit(self, paths: list[Path], fresh_s: float = 0.0) -> tuple[DropOutcome, ...]:
        with Catalog(self.state / "catalog.sqlite") as catalog:
            ctx = DropContext(
                tree=local_tree(self.root),
                catalog=catalog,
                quarantine=Quarantine(self.state / "quarantine"),
                fresh_s=fresh_s,
            )
            return admit_drops(ctx, self.channel, paths).outcomes

    def outside_tree(self) -> Snapshot:
        return snapshot(self.base, skip=(self.root, self.state, self.drops))


def local_site(base: Path) -> LocalSite:
    (base / "drops").mkdir(parents=True)
    config = base / "mirror.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "root": "tree",
                "state_dir": "state",
                "channels": {
                    "local": {"subdirs": ["noarch", "linux-64"], "drop_folders": ["drops"]}
                },
            }
        )
    )
    site = LocalSite(base, load_config(config).channels[0], make_outside(base))
    prev = site.drops / PREV.filename
    prev.write_bytes(package_bytes(PREV))
    assert [o.result for o in site.admit([prev])] == [DropResult.PUBLISHED]
    return site


def assert_quarantined_drop(site: LocalSite, filename: str, data: bytes, reason: str, says: str,
                            outcome: DropOutcome) -> None:  # fmt: skip
    assert (outcome.result, outcome.reason) == (DropResult.QUARANTINED, reason), outcome
    assert says in (outcome.message or ""), outcome.message
    moved = site.state / "quarantine" / "local" / "_drops" / filename
    assert moved.read_bytes() == data
    reason_text = moved.with_name(filename + ".reason").read_text()
    assert reason_text.startswith(f"{reason}: ") and says in reason_text
    assert filename in reason_text
    assert not (site.drops / filename).exists()


@pytest.mark.parametrize("case_id", list(PACKAGE_CASES))
def test_a_hostile_package_dropped_is_quarantined_and_the_good_one_beside_it_published(
    tmp_path: Path, case_id: str
) -> None:
    case = PACKAGE_CASES[case_id]
    if case_id.startswith("real-") and not SHARED_REAL.is_dir():
        pytest.skip(f"real test data not present at {SHARED_REAL}")
    site = local_site(tmp_path)
    data = case.make()
    bad = site.drops / case.filename
    bad.write_bytes(data)
    good = site.drops / NEIGHBOUR.filename
    good.write_bytes(package_bytes(NEIGHBOUR))
    outside = site.outside_tree()

    outcomes = {o.source.name: o for o in site.admit([bad, good])}

    assert_quarantined_drop(site, case.filename, data, case.reason, case.says, outcomes[bad.name])
    assert outcomes[good.name].result == DropResult.PUBLISHED
    assert listed(site.repodata()) == {PREV.filename, NEIGHBOUR.filename}
    assert rattler_reads(site.repodata()) == 2
    assert list(site.drops.iterdir()) == []
    assert site.outside_tree() == outside


@pytest.mark.parametrize("case_id", list(PACKAGE_CASES))
def test_a_hostile_package_in_a_local_channel_is_quarantined_by_mirror_index(
    tmp_path: Path, case_id: str
) -> None:
    case = PACKAGE_CASES[case_id]
    if case_id.startswith("real-") and not SHARED_REAL.is_dir():
        pytest.skip(f"real test data not present at {SHARED_REAL}")
    root, state = tmp_path / "tree", tmp_path / "state"
    noarch = root / "chan" / "noarch"
    noarch.mkdir(parents=True)
    make_outside(tmp_path)
    (noarch / PREV.filename).write_bytes(package_bytes(PREV))

    def index() -> Any:
        with Catalog(state / "catalog.sqlite") as catalog:
            ctx = IndexContext(
                tree=local_tree(root),
                catalog=catalog,
                quarantine=Quarantine(state / "quarantine"),
                settings=IndexSettings(deep_scan=True),
            )
            return index_channel(ctx, "chan", ["noarch"])

    assert index().quarantined == 0
    data = case.make()
    (noarch / case.filename).write_bytes(data)
    (noarch / NEIGHBOUR.filename).write_bytes(package_bytes(NEIGHBOUR))
    outside = snapshot(tmp_path, skip=(root, state))

    (report,) = index().subdirs

    reason = case.index_reason or case.reason
    [(filename, got_reason, message)] = [
        (q.filename, q.reason, q.message) for q in report.quarantined
    ]
    assert (filename, got_reason) == (case.filename, reason), message
    moved = state / "quarantine" / "chan" / "noarch" / case.filename
    assert moved.read_bytes() == data
    reason_text = moved.with_name(case.filename + ".reason").read_text()
    assert reason_text.startswith(f"{reason}: ") and case.filename in reason_text
    if case.index_reason is None:
        assert case.says in reason_text, reason_text
    assert not (noarch / case.filename).exists()
    assert listed(noarch / "repodata.json") == {PREV.filename, NEIGHBOUR.filename}
    assert rattler_reads(noarch / "repodata.json") == 2
    assert snapshot(tmp_path, skip=(root, state)) == outside


def test_a_bz2_multistream_bomb_hiding_info_is_refused_by_a_shallow_index_fast(
    tmp_path: Path,
) -> None:
    # 300 MB of zeros before info/ cost milliseconds to make; a shallow read stops at 256 MiB
    # (a deep read, as for drops, reads it all within its 8 GiB limit: it is a valid package)
    noarch = tmp_path / "tree" / "chan" / "noarch"
    noarch.mkdir(parents=True)
    data = hostile.bz2_multistream(_payload_header(), 304 << 20, tar_bytes(info_members()))
    (noarch / f"{STEM}.tar.bz2").write_bytes(data)
    (noarch / NEIGHBOUR.filename).write_bytes(package_bytes(NEIGHBOUR))
    started = time.monotonic()
    with Catalog(tmp_path / "state" / "catalog.sqlite") as catalog:
        ctx = IndexContext(
            tree=local_tree(tmp_path / "tree"),
            catalog=catalog,
            quarantine=Quarantine(tmp_path / "state" / "quarantine"),
            settings=IndexSettings(),
        )
        (report,) = index_channel(ctx, "chan", ["noarch"]).subdirs
    assert time.monotonic() - started < 10
    [(reason, message)] = [(q.reason, q.message) for q in report.quarantined]
    assert reason == "too_large" and "256 MiB" in message and f"{STEM}.tar.bz2" in message
    assert listed(noarch / "repodata.json") == {NEIGHBOUR.filename}


def test_mirror_index_on_the_command_line_names_every_quarantined_file(tmp_path: Path) -> None:
    channel = tmp_path / "chan"
    (channel / "noarch").mkdir(parents=True)
    chosen = ["empty-conda", "member-dotdot", "misnamed-tar-bz2", "index-not-json"]
    for case_id in chosen:
        case = PACKAGE_CASES[case_id]
        (channel / "noarch" / f"{case_id}-{case.filename}").write_bytes(case.make())
    (channel / "noarch" / NEIGHBOUR.filename).write_bytes(package_bytes(NEIGHBOUR))

    result = run_cli(["index", str(channel)], timeout=60)

    assert result.code == 1, result.stderr
    for case_id in chosen:
        assert f"{case_id}-{PACKAGE_CASES[case_id].filename}" in result.stderr
    assert "Traceback" not in result.stderr
    assert listed(channel / "noarch" / "repodata.json") == {NEIGHBOUR.filename}


# -- 3. drop folder entries ---------------------------------------------------------------------


def run_bounded(action: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Run action in a thread; fail (instead of hanging the suite) if it does not finish."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"still running after {timeout_s} s: it hangs"
    if errors:
        raise errors[0]
    return result[0]


@dataclass(frozen=True)
class DropCase:
    name: str
    make: Callable[[LocalSite, Path], None]  # creates the entry at the given path
    result: str
    says: str
    reason: str | None = None
    fresh_s: float = 0.0


def _symlink_to(target: Callable[[LocalSite], Path]) -> Callable[[LocalSite, Path], None]:
    return lambda site, path: path.symlink_to(target(site))


def _outside_package(site: LocalSite) -> Path:
    path = site.outside / "lib" / NEIGHBOUR.filename.replace("neighbour", "elsewhere")
    path.write_bytes(package_bytes(PackageSpec("elsewhere", "3.0")))
    return path


def _half_written(site: LocalSite, path: Path) -> None:
    data = package_bytes(PackageSpec("half", "1.0", files={"big.bin": os.urandom(50_000)}))
    path.write_bytes(data[: len(data) // 2])


def _old(make: Callable[[LocalSite, Path], None]) -> Callable[[LocalSite, Path], None]:
    def made(site: LocalSite, path: Path) -> None:
        make(site, path)
        os.utime(path, (time.time() - 3600, time.time() - 3600), follow_symlinks=False)

    return made


def _directory_with_files(site: LocalSite, path: Path) -> None:
    path.mkdir()
    (path / "info").mkdir()
    (path / "info" / "index.json").write_text(json.dumps(hostile.INDEX))


def _unreadable(site: LocalSite, path: Path) -> None:
    path.write_bytes(package_bytes(PackageSpec("locked", "1.0")))
    path.chmod(0)


def _conflicting(site: LocalSite, path: Path) -> None:
    path.write_bytes(package_bytes(PackageSpec("prev", "1.0", files={"other": b"other"})))


DROP_CASES: dict[str, DropCase] = {
    "symlink-to-etc-passwd": DropCase(
        "passwd-1.0-0.conda",
        _symlink_to(lambda s: Path("/etc/passwd")),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "symlink-to-outside-passwd": DropCase(
        "passwd-1.0-0.conda",
        _symlink_to(lambda s: s.outside / "etc" / "passwd"),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "symlink-to-a-good-package-elsewhere": DropCase(
        "elsewhere-3.0-0.conda",
        _symlink_to(_outside_package),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "symlink-to-a-directory": DropCase(
        "dir-1.0-0.conda",
        _symlink_to(lambda s: s.outside / "etc"),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "symlink-into-the-tree": DropCase(
        "tree-1.0-0.conda",
        _symlink_to(lambda s: s.root / "local" / "noarch" / PREV.filename),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "dangling-symlink": DropCase(
        "gone-1.0-0.conda",
        _symlink_to(lambda s: s.outside / "nowhere"),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "symlink-loop": DropCase(
        "loop-1.0-0.conda",
        _symlink_to(lambda s: s.drops / "loop-1.0-0.conda"),
        DropResult.QUARANTINED,
        "is a symlink",
        "not_a_file",
    ),
    "fifo": DropCase(
        "fifo-1.0-0.conda",
        lambda s, p: os.mkfifo(p),
        DropResult.QUARANTINED,
        "not a regular file",
        "not_a_file",
    ),
    "directory-named-conda": DropCase(
        "dir-1.0-0.conda", lambda s, p: p.mkdir(), DropResult.IGNORED, "a directory", "not_a_file"
    ),
    "directory-named-tar-bz2-with-an-index": DropCase(
        "dir-1.0-0.tar.bz2", _directory_with_files, DropResult.IGNORED, "a directory", "not_a_file"
    ),
    "unreadable-chmod-000": DropCase(
        "locked-1.0-0.conda", _old(_unreadable), DropResult.IGNORED, "Permission denied", "io"
    ),
    "zero-bytes-old": DropCase(
        "zero-1.0-0.conda",
        _old(lambda s, p: p.write_bytes(b"")),
        DropResult.QUARANTINED,
        "is empty",
        "corrupt",
    ),
    "zero-bytes-fresh": DropCase(
        "zero-1.0-0.conda",
        lambda s, p: p.write_bytes(b""),
        DropResult.DEFERRED,
        "is empty",
        fresh_s=60.0,
    ),
    "half-written-fresh": DropCase(
        "half-1.0-0.conda", _half_written, DropResult.DEFERRED, "half-1.0-0.conda", fresh_s=60.0
    ),
    "half-written-long-ago": DropCase(
        "half-1.0-0.conda", _old(_half_written), DropResult.QUARANTINED, "zip", "corrupt"
    ),
    "gone-before-taken": DropCase(
        "ghost-1.0-0.conda", lambda s, p: None, DropResult.IGNORED, "gone before it could be taken"
    ),
    "newline-in-name": DropCase(
        "evil\n-1.0-0.conda",
        lambda s, p: p.write_bytes(good_evil()),
        DropResult.QUARANTINED,
        "is not a plain",
        "unsafe_name",
    ),
    "space-in-name": DropCase(
        "evil 1.0-0.conda",
        lambda s, p: p.write_bytes(good_evil()),
        DropResult.QUARANTINED,
        "is not a plain",
        "unsafe_name",
    ),
    "dotfile": DropCase(
        ".evil-1.0-0.conda",
        lambda s, p: p.write_bytes(good_evil()),
        DropResult.QUARANTINED,
        "is not a plain",
        "unsafe_name",
    ),
    "not-a-package-extension": DropCase(
        "evil-1.0-0.zip",
        lambda s, p: p.write_bytes(good_evil()),
        DropResult.QUARANTINED,
        "is not a plain",
        "unsafe_name",
    ),
    "conflicts-with-a-published-file": DropCase(
        PREV.filename, _conflicting, DropResult.QUARANTINED, "never overwritten", "name_conflict"
    ),
    "subdir-the-channel-does-not-serve": DropCase(
        "mac-1.0-0.conda",
        lambda s, p: p.write_bytes(package_bytes(PackageSpec("mac", "1.0", subdir="osx-arm64"))),
        DropResult.QUARANTINED,
        "osx-arm64",
        "wrong_subdir",
    ),
}


@pytest.mark.parametrize("case_id", list(DROP_CASES))
def test_a_hostile_drop_folder_entry_is_refused_without_hanging_or_touching_anything_outside(
    tmp_path: Path, case_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    case = DROP_CASES[case_id]
    if case_id == "unreadable-chmod-000" and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")
    site = local_site(tmp_path)
    entry = site.drops / case.name
    case.make(site, entry)
    good = site.drops / NEIGHBOUR.filename
    good.write_bytes(package_bytes(NEIGHBOUR))
    published_before = (site.root / "local" / "noarch" / PREV.filename).read_bytes()
    outside = site.outside_tree()
    passwd = Path("/etc/passwd").read_bytes()

    with caplog.at_level(logging.INFO):
        outcomes = run_bounded(lambda: site.admit([entry, good], fresh_s=case.fresh_s))

    bad, neighbour = outcomes
    assert (bad.result, bad.reason) == (case.result, case.reason), bad
    assert case.says in (bad.message or ""), bad.message
    assert neighbour.result == DropResult.PUBLISHED
    assert listed(site.repodata()) == {PREV.filename, NEIGHBOUR.filename}
    assert (site.root / "local" / "noarch" / PREV.filename).read_bytes() == published_before
    assert site.outside_tree() == outside
    assert Path("/etc/passwd").read_bytes() == passwd
    names = {p.name for p in (site.root / "local").rglob("*") if p.name.endswith(".conda")}
    assert names == {PREV.filename, NEIGHBOUR.filename}
    quarantined = site.state / "quarantine" / "local" / "_drops" / case.name
    if case.result == DropResult.QUARANTINED:
        assert quarantined.exists() or quarantined.is_symlink()
        assert not (entry.exists() or entry.is_symlink())
        reason_text = quarantined.with_name(case.name + ".reason").read_text()
        assert reason_text.startswith(f"{case.reason}: ")
        assert shown(case.name) in caplog.text or repr(case.name) in caplog.text
    else:
        assert not (quarantined.exists() or quarantined.is_symlink())
        if case_id != "gone-before-taken":
            assert entry.exists()  # left where it is: looked at again, or the owner's to fix


def test_a_half_written_drop_is_published_once_it_is_complete(tmp_path: Path) -> None:
    site = local_site(tmp_path)
    data = package_bytes(PackageSpec("half", "1.0", files={"big.bin": os.urandom(50_000)}))
    path = site.drops / "half-1.0-0.conda"
    path.write_bytes(data[: len(data) // 2])
    assert [o.result for o in site.admit([path], fresh_s=60.0)] == [DropResult.DEFERRED]
    path.write_bytes(data)
    assert [o.result for o in site.admit([path], fresh_s=0.0)] == [DropResult.PUBLISHED]
    assert (site.root / "local" / "noarch" / path.name).read_bytes() == data


def test_a_drop_hardlinked_to_a_private_file_is_published_without_touching_that_file(
    tmp_path: Path,
) -> None:
    site = local_site(tmp_path)
    private = site.outside / "lib" / NEIGHBOUR.filename
    private.write_bytes(package_bytes(NEIGHBOUR))
    private.chmod(0o600)
    os.link(private, site.drops / NEIGHBOUR.filename)
    outside = site.outside_tree()

    (outcome,) = site.admit([site.drops / NEIGHBOUR.filename])

    assert outcome.result == DropResult.PUBLISHED
    published = site.root / "local" / "noarch" / NEIGHBOUR.filename
    assert published.read_bytes() == private.read_bytes()
    assert not published.samefile(private)  # a later edit of the private file cannot leak in
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert site.outside_tree() == outside


def test_an_identical_drop_of_a_published_file_is_removed_as_a_duplicate(tmp_path: Path) -> None:
    site = local_site(tmp_path)
    again = site.drops / PREV.filename
    again.write_bytes(package_bytes(PREV))
    (outcome,) = site.admit([again])
    assert outcome.result == DropResult.DUPLICATE and not again.exists()
    assert listed(site.repodata()) == {PREV.filename}


# -- 4. config files ------------------------------------------------------------------------

BASE_CONFIG = """\
root: tree
state_dir: state
channels:
  c:
    upstream: up
    subdirs: [noarch]
"""
LOCAL = "  d:\n    subdirs: [noarch]\n    drop_folders: [drops]\n"


def laughs() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n" + BASE_CONFIG


def laughs_inline() -> str:
    """The same bomb as a flow list: each item is nine aliases of the one before it."""
    items = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    items += [f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return ", ".join(items)


@dataclass(frozen=True)
class ConfigCase:
    text: str | bytes
    says: str  # a substring of the message, which must also start with the file (and line)
    line: int | None = None


def base_with(*replacements: tuple[str, str], extra: str = "") -> str:
    text = BASE_CONFIG
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    return text + extra


CONFIG_CASES: dict[str, ConfigCase] = {
    "invalid-yaml": ConfigCase("root: [unclosed\n", "invalid YAML", 2),
    "tab-indentation": ConfigCase(
        BASE_CONFIG.replace("    subdirs", "\tsubdirs"), "invalid YAML", 6
    ),
    "nul-byte": ConfigCase(BASE_CONFIG + "x: \x00\n", "'\\x00' is not allowed", 7),
    "not-utf8": ConfigCase(BASE_CONFIG.encode() + b"# caf\xe9\n", "cannot read config file"),
    "empty-file": ConfigCase("", "config file is empty"),
    "only-comments": ConfigCase("# nothing here\n", "config file is empty"),
    "top-level-list": ConfigCase("- root\n- tree\n", "expected a mapping", 1),
    "top-level-scalar": ConfigCase("just a string\n", "expected a mapping", 1),
    "billion-laughs": ConfigCase(laughs(), "a0: unknown key", 1),
    "billion-laughs-in-a-known-key": ConfigCase(
        BASE_CONFIG + "    include: [" + laughs_inline() + "]\n",
        "include[0]: expected a single value",
        7,
    ),
    "root-missing": ConfigCase(
        BASE_CONFIG.replace("root: tree\n", ""), "missing required key 'root'"
    ),
    "root-a-list": ConfigCase(
        base_with(("root: tree", "root: [a, b]")), "root: expected a single", 1
    ),
    "root-null": ConfigCase(
        base_with(("root: tree", "root:")), "root: expected a non-empty string", 1
    ),
    "state-dir-a-number": ConfigCase(
        base_with(("state_dir: state", "state_dir: 5")), "state_dir:", 2
    ),
    "channels-a-list": ConfigCase(
        "root: tree\nstate_dir: state\nchannels: [c]\n", "channels: expected a mapping", 3
    ),
    "channels-empty": ConfigCase("root: tree\nstate_dir: state\nchannels: {}\n", "no channels", 3),
    "workers-a-string": ConfigCase(BASE_CONFIG + "workers: many\n", "workers: expected a whole", 7),
    "workers-negative": ConfigCase(BASE_CONFIG + "workers: -4\n", "workers: must be at least 1", 7),
    "workers-a-float": ConfigCase(BASE_CONFIG + "workers: 2.5\n", "workers: expected a whole", 7),
    "workers-a-bool": ConfigCase(BASE_CONFIG + "workers: true\n", "workers: expected a whole", 7),
    "retries-negative": ConfigCase(BASE_CONFIG + "retries: -1\n", "retries: must be at least 0", 7),
    "backoff-negative": ConfigCase(BASE_CONFIG + "retry_backoff_s: -1\n", "retry_backoff_s:", 7),
    "timeout-zero": ConfigCase(BASE_CONFIG + "read_timeout_s: 0\n", "read_timeout_s: must be", 7),
    "delete-fraction-negative": ConfigCase(
        BASE_CONFIG + "max_delete_fraction: -0.5\n", "max_delete_fraction: must be at least", 7
    ),
    "delete-fraction-above-1": ConfigCase(
        BASE_CONFIG + "max_delete_fraction: 2\n", "max_delete_fraction: must be at most", 7
    ),
    "free-space-margin-words": ConfigCase(
        BASE_CONFIG + "free_space_margin: lots\n", "free_space_margin: expected a size", 7
    ),
    "repodata-size-negative": ConfigCase(
        BASE_CONFIG + "max_repodata_size: -1GB\n", "max_repodata_size: expected a size", 7
    ),
    "unknown-top-key": ConfigCase(BASE_CONFIG + "workres: 2\n", "did you mean 'workers'", 7),
    "unknown-channel-key": ConfigCase(
        BASE_CONFIG + "    exlcude: [x]\n",
        "channels.c.exlcude: unknown key; did you mean 'exclude'",
        7,
    ),
    "unknown-index-key": ConfigCase(
        BASE_CONFIG + "index: {shard: true}\n", "index.shard: unknown", 7
    ),
    "key-not-a-string": ConfigCase(BASE_CONFIG + "1: x\n", "keys must be strings", 7),
    "duplicate-top-key": ConfigCase(BASE_CONFIG + "root: other\n", "root: duplicate key", 7),
    "same-channel-twice": ConfigCase(
        BASE_CONFIG + "  c:\n    upstream: up\n    subdirs: [linux-64]\n",
        "channels.c: duplicate key",
        7,
    ),
    "subdirs-a-string": ConfigCase(
        base_with(("[noarch]", "noarch")), "subdirs: expected a list", 6
    ),
    "subdir-invalid": ConfigCase(base_with(("[noarch]", "['../x']")), "is not a conda subdir", 6),
    "subdir-twice": ConfigCase(base_with(("[noarch]", "[noarch, noarch]")), "listed twice", 6),
    "include-bad-spec": ConfigCase(
        BASE_CONFIG + "    include: ['numpy >=>1']\n", "invalid spec", 7
    ),
    "exclude-not-a-list": ConfigCase(BASE_CONFIG + "    exclude: numpy\n", "expected a list", 7),
    "include-a-mapping-item": ConfigCase(
        BASE_CONFIG + "    include: [{numpy: 1}]\n", "include[0]: expected a single value", 7
    ),
    "licenses-unknown-key": ConfigCase(
        BASE_CONFIG + "    licenses: {alow: [MIT]}\n", "did you mean 'allow'", 7
    ),
    "keep-latest-zero": ConfigCase(BASE_CONFIG + "    keep_latest: 0\n", "keep_latest: must be", 7),
    "date-invalid": ConfigCase(
        BASE_CONFIG + "    not_older_than: 2024-13-45\n", "expected a date such as", 7
    ),
    "prefer-conda-a-string": ConfigCase(
        BASE_CONFIG + "    prefer_conda: 'no'\n", "expected true or false", 7
    ),
    "channel-name-with-slash": ConfigCase(
        base_with(("  c:", "  ../evil:")), "channels.../evil: a channel name becomes a folder", 5
    ),
    "upstream-ftp": ConfigCase(
        base_with(("upstream: up", "upstream: ftp://mirror/c")), "unsupported URL scheme 'ftp'", 5
    ),
    "upstream-javascript": ConfigCase(
        base_with(("upstream: up", "upstream: 'javascript:alert(1)'")), "unsupported URL scheme", 5
    ),
    "upstream-http-without-host": ConfigCase(
        base_with(("upstream: up", "upstream: 'https:///c'")), "has no host name", 5
    ),
    "upstream-path-missing": ConfigCase(
        base_with(("upstream: up", "upstream: no/such/dir")), "does not exist", 5
    ),
    "upstream-a-file": ConfigCase(
        base_with(("upstream: up", "upstream: mirror.yaml")), "not a directory", 5
    ),
    "drop-folder-missing": ConfigCase(
        BASE_CONFIG + LOCAL.replace("[drops]", "[nowhere]"), "drop folder", 9
    ),
    "drop-folder-inside-the-tree": ConfigCase(
        BASE_CONFIG + LOCAL.replace("[drops]", "[tree/in]"), "drop_folders: drop folder", 9
    ),
    "drop-folder-is-the-state-dir": ConfigCase(
        BASE_CONFIG + LOCAL.replace("[drops]", "[state]"), "overlaps state_dir", 9
    ),
    "tree-inside-a-drop-folder": ConfigCase(
        base_with(("root: tree", "root: drops/tree"), extra=LOCAL), "overlaps root", 9
    ),
    "drop-folder-listed-twice": ConfigCase(
        BASE_CONFIG + LOCAL.replace("[drops]", "[drops, drops]"), "listed twice", 9
    ),
    "drop-folder-shared-by-two-channels": ConfigCase(
        BASE_CONFIG + LOCAL + LOCAL.replace("  d:", "  e:"), "channels.e.drop_folders: drop", 12
    ),
    "state-dir-inside-the-tree": ConfigCase(
        base_with(("state_dir: state", "state_dir: tree/state")), "overlap", 2
    ),
    "tree-inside-the-state-dir": ConfigCase(
        base_with(("root: tree", "root: state/tree")), "overlap", 2
    ),
    "mirror-key-on-a-local-channel": ConfigCase(
        BASE_CONFIG + LOCAL + "    include: [x]\n", "only for mirrored channels", 10
    ),
    "schedule-cron-and-interval": ConfigCase(
        BASE_CONFIG + "    schedule: {cron: '* * * * *', interval_minutes: 5}\n", "exactly one", 7
    ),
    "schedule-bad-cron": ConfigCase(
        BASE_CONFIG + "    schedule: {cron: '99 * * * *'}\n", "invalid cron expression", 7
    ),
    "metrics-listen-no-port": ConfigCase(
        BASE_CONFIG + "metrics: {listen: localhost}\n", "expected HOST:PORT", 7
    ),
    "metrics-port-too-big": ConfigCase(
        BASE_CONFIG + "metrics: {listen: '127.0.0.1:70000'}\n", "expected HOST:PORT", 7
    ),
    "settle-negative": ConfigCase(BASE_CONFIG + "watch: {settle_s: -1}\n", "watch.settle_s", 7),
    "index-switch-a-string": ConfigCase(BASE_CONFIG + "index: {zst: maybe}\n", "index.zst", 7),
    "patch-instructions-missing": ConfigCase(
        BASE_CONFIG + "index: {patch_instructions: nope.json}\n", "does not exist", 7
    ),
    "token-env-not-a-name": ConfigCase(
        BASE_CONFIG + "    token_env: '$(rm -rf /)'\n", "NAME of an environment variable", 7
    ),
}


def write_config_case(base: Path, text: str | bytes) -> Path:
    for folder in ("up", "drops", "tree/in", "state"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    path = base / "mirror.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("case_id", list(CONFIG_CASES))
def test_a_bad_config_is_refused_naming_file_line_and_key(
    tmp_path: Path, case_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CONFIG_CASES[case_id]
    path = write_config_case(tmp_path, case.text)
    before = snapshot(tmp_path)

    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert time.monotonic() - started < 5

    where = f"{path}:{case.line}:" if case.line else str(path)
    assert message.startswith(where), message
    assert case.says in message, message
    assert "\n" not in message.strip()
    # the command gives the same message and exit code 2 (in-process: the real code path)
    from mirror.cli import run

    assert run(["check-config", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # a refused config creates nothing


@pytest.mark.parametrize("case_id", ["billion-laughs", "tab-indentation", "not-utf8"])
def test_check_config_exits_2_in_a_real_process(tmp_path: Path, case_id: str) -> None:
    path = write_config_case(tmp_path, CONFIG_CASES[case_id].text)
    result = run_cli(["check-config", "--config", str(path)], timeout=30)
    assert result.code == 2, result
    assert result.stderr.startswith(f"error: {path}")
    assert CONFIG_CASES[case_id].says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}: cannot read config file"):
        load_config(tmp_path)


# -- the real daemon, fed a batch of hostile drops ------------------------------------------

DAEMON_BATCH = [
    "empty-conda",
    "truncated-zip",
    "member-dotdot",
    "symlink-to-etc-shadow",
    "index-not-json",
    "misnamed-tar-bz2",
    "zstd-zero-bomb",
    "wrong-subdir",
]


def test_the_daemon_quarantines_a_hostile_batch_publishes_the_good_drop_and_keeps_serving(
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "drops").mkdir()
    outside = make_outside(tmp_path)
    config = tmp_path / "mirror.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "root": "tree",
                "state_dir": "state",
                "metrics": {"listen": f"127.0.0.1:{port}"},
                "watch": {"settle_s": 0.1, "debounce_s": 0.1},
                "channels": {"local": {"subdirs": ["noarch"], "drop_folders": ["drops"]}},
            }
        )
    )
    before = snapshot(tmp_path, skip=(tmp_path / "tree", tmp_path / "state", tmp_path / "drops"))
    with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
        daemon.start()
        assert "conda_mirror_build_info" in daemon.metrics()
        quarantine = tmp_path / "state" / "quarantine" / "local" / "_drops"
        reasons: list[str] = []
        for case_id in DAEMON_BATCH:  # one at a time: most of them share the name evil-1.0-0
            case = PACKAGE_CASES[case_id]
            staged = tmp_path / f".{case.filename}"
            staged.write_bytes(case.make())
            os.utime(staged, (time.time() - 60, time.time() - 60))  # copied with cp -p
            staged.rename(tmp_path / "drops" / case.filename)  # arrives complete, as a rename
            wait_for(lambda: len(list(quarantine.glob("*.reason"))) == len(reasons) + 1, 30)
            reason_files = sorted(quarantine.glob("*.reason"), key=lambda p: p.stat().st_mtime_ns)
            text = reason_files[-1].read_text()
            assert text.startswith(f"{case.reason}: ") and case.filename in text, (case_id, text)
            reasons.append(case.reason)
            assert "conda_mirror_build_info" in daemon.metrics()  # serving all along
        os.mkfifo(tmp_path / "drops" / "fifo-1.0-0.conda")
        (tmp_path / "drops" / "link-1.0-0.conda").symlink_to(outside / "etc" / "passwd")
        (tmp_path / "drops" / NEIGHBOUR.filename).write_bytes(package_bytes(NEIGHBOUR))
        reasons += ["not_a_file", "not_a_file"]

        repodata = tmp_path / "tree" / "local" / "noarch" / "repodata.json"
        wait_for(lambda: NEIGHBOUR.filename in listed(repodata), timeout=30)
        wait_for(lambda: len(list(quarantine.glob("*.reason"))) == len(reasons), timeout=30)
        assert daemon.proc is not None and daemon.proc.poll() is None  # still alive
        for reason in set(reasons):
            got = daemon.metric(
                "conda_mirror_quarantined_files_total", channel="local", reason=reason
            )
            assert got == reasons.count(reason), reason
        assert listed(repodata) == {NEIGHBOUR.filename}
        assert rattler_reads(repodata) == 1
        assert list((tmp_path / "drops").iterdir()) == []
        text = daemon.text()
        assert "Traceback" not in text
        for name in ("evil-1.0-0.conda", "fifo-1.0-0.conda", "link-1.0-0.conda"):
            assert f"quarantined {name}" in text
        code, _ = daemon.stop()
        assert code == 0
    after = snapshot(tmp_path, skip=(tmp_path / "tree", tmp_path / "state", tmp_path / "drops"))
    assert {k: v for k, v in after.items() if k != "daemon.log"} == before
