"""The end-to-end fuzzer of `mirror sync`: hostile upstream repodata over real package files.

Each example writes an upstream document (tests/support/upstream_docs.py: several real records
of one subdir mutated at once, tricks on the whole document) into a `file://` upstream holding
the real files, runs `mirror sync` in process (mirror.cli.run, the real entry point), sometimes
over a tree that already published the document's original records, and then holds:

  1. no traceback, no "internal error" logged, no thread died;
  2. the exit code is the documented one: 0, or 1 when a file could not be mirrored, the
     document as a whole is unreadable or the mass-deletion guard stopped the subdir (records
     refused by the gate are warnings: exit 0);
  3. every index a client may read (repodata.json, .zst, current_repodata.json, the shards)
     parses with py-rattler, whole and name by name;
  4. every published record names a file that is there with its size and sha256, and
     `mirror verify --full` finds nothing;
  5. nothing outside the tree and the state directory changed (the upstream included);
  6. the records the gate admits and the rules keep are published, verbatim, when their file
     matches; the others are named (refused, or not mirrored); a document whose structure
     holds never fails its subdir; an unreadable one leaves the tree as it was;
  7. a second run over the same upstream exits the same and publishes the same bytes.

Fixed seed, bounded examples (tests/bench/fuzz_e2e.py runs it longer with random seeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rattler
import yaml
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from mirror.cli import run
from tests.conftest import SHARED_REAL
from tests.support.fuzz_run import fuzz_settings, keep_failure, tally
from tests.support.sync_oracle import Expectation, Rules, expect, rules
from tests.support.tree_checks import (
    LogTrap,
    Snapshot,
    changed,
    check_tree,
    records_of,
    snapshot,
    tree_snapshot,
)
from tests.support.upstream_docs import (
    UpstreamDoc,
    World,
    build_world,
    stage_upstream,
    upstream_docs,
)
from tests.support.upstream_server import UpstreamServer

CHANNEL = "up"
_INDEXED_TAIL = re.compile(rb',?"indexed_timestamp":[0-9]+}$')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(SHARED_REAL, tmp_path_factory.mktemp("world"))


@dataclass(frozen=True)
class Options:
    """How an example runs, besides its document and rules."""

    two_step: bool  # the tree first published the document's original records
    zst_only: bool  # upstream serves repodata.json.zst and no repodata.json
    max_delete_fraction: float
    max_replace_fraction: float
    index: dict[str, bool]


def options() -> st.SearchStrategy[Options]:
    return st.builds(
        Options,
        two_step=st.sampled_from((False, True, True)),
        zst_only=st.sampled_from((False, False, False, True)),
        max_delete_fraction=st.sampled_from((0.1, 1.0, 1.0)),
        max_replace_fraction=st.sampled_from((0.02, 1.0, 1.0)),
        index=st.fixed_dictionaries(
            {"current_repodata": st.booleans(), "bz2": st.sampled_from((False, False, True))}
        ),
    )


@dataclass
class Site:
    base: Path
    upstream: Path
    upstream_url: str

    @property
    def tree(self) -> Path:
        return self.base / "site" / "tree"

    @property
    def state(self) -> Path:
        return self.base / "site" / "state"

    @property
    def config(self) -> Path:
        return self.base / "site" / "mirror.yaml"

    def outside(self) -> Snapshot:
        return snapshot(self.base, skip=(self.tree, self.state))

    def sync(self) -> int:
        return run(["sync", "--config", str(self.config)])


def make_site(
    base: Path, upstream: Path, url: str, subdir: str, rules_: Rules, opts: Options
) -> Site:
    site = Site(base, upstream, url)
    (base / "outside" / "etc").mkdir(parents=True)
    (base / "outside" / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    site.config.parent.mkdir()
    channel = {"upstream": url, "subdirs": [subdir], "index": opts.index, **rules_.config()}
    document = {
        "root": "tree",
        "state_dir": "state",
        "retries": 1,
        "retry_backoff_s": 0.01,
        "max_delete_fraction": opts.max_delete_fraction,
        "max_replace_fraction": opts.max_replace_fraction,
        "channels": {CHANNEL: channel},
    }
    site.config.write_text(yaml.safe_dump(document))
    return site


def write_document(upstream: Path, subdir: str, body: bytes, *, zst_only: bool) -> None:
    """The upstream's repodata; the mtime always moves on (file:// validators are size+mtime)."""
    folder = upstream / subdir
    for name in ("repodata.json", "repodata.json.zst"):
        (folder / name).unlink(missing_ok=True)
    path = folder / ("repodata.json.zst" if zst_only else "repodata.json")
    path.write_bytes(zstandard.ZstdCompressor().compress(body) if zst_only else body)
    stamp = time.time_ns() + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def same_record(published: bytes, raw: bytes) -> bool:
    """Published verbatim: upstream's bytes (newlines made spaces), plus indexed_timestamp
    appended when upstream gave none (CEP-47)."""
    flat = raw.translate(bytes.maketrans(b"\r\n", b"  ")).rstrip()
    if published == flat:
        return True
    tail = _INDEXED_TAIL.search(published)
    return tail is not None and published[: tail.start()].rstrip() == flat[:-1].rstrip()


# -- the example --------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    published: dict[str, bytes]
    log: LogTrap
    checks: int


def run_example(
    site: Site, doc: UpstreamDoc, rules_: Rules, opts: Options, scratch: Path
) -> dict[str, int]:
    previous: dict[str, bytes] = {}
    tree_before: Snapshot = {}
    if opts.two_step:
        # the same variant as the document after it: a mirror remembers for a day that an
        # upstream has no repodata.json.zst (and an upstream that drops its .json is broken)
        write_document(site.upstream, doc.subdir, doc.original_body(), zst_only=opts.zst_only)
        assert site.sync() == 0, "the original records did not sync"
        previous = check_tree(site.tree / CHANNEL, scratch).records.get(doc.subdir, {})
        tree_before = tree_snapshot(site.tree)
    write_document(site.upstream, doc.subdir, doc.body, zst_only=opts.zst_only)
    outside = site.outside()
    now_ms = time.time_ns() // 1_000_000
    first = sync_and_check(site, doc.subdir, scratch)
    assert not changed(outside, site.outside()), (
        f"written outside: {changed(outside, site.outside())}"
    )
    oracle = expect(doc, rules_, site.upstream, now_ms)
    judge(doc, oracle, first, previous, tree_before, site, opts)
    again = sync_and_check(site, doc.subdir, scratch)
    assert again.code == first.code, f"the second run exited {again.code}, the first {first.code}"
    assert again.published == first.published, "the second run published other records"
    if (site.tree / CHANNEL / doc.subdir / "repodata.json").exists():  # else never published
        printed = io.StringIO()
        with LogTrap() as trap, contextlib.redirect_stdout(printed):
            verified = run(["verify", "--config", str(site.config), "--full"])
        assert verified == 0 and not trap.failures(), f"verify: {printed.getvalue()}{trap.text}"
    return {
        "checks": first.checks + again.checks + 8,
        "published": len(first.published),
        "refused": len(oracle.refuse),
        "failed": len(oracle.fail),
        "exit_1": first.code,
        "document_refused": int(oracle.document_refused),
    }


def sync_and_check(site: Site, subdir: str, scratch: Path) -> Outcome:
    with LogTrap() as trap:
        code = site.sync()
    assert not trap.failures(), "\n".join(trap.failures())
    facts = check_tree(site.tree / CHANNEL, scratch)
    return Outcome(code, facts.records.get(subdir, {}), trap, facts.checks)


def judge(
    doc: UpstreamDoc,
    oracle: Expectation,
    outcome: Outcome,
    previous: dict[str, bytes],
    tree_before: Snapshot,
    site: Site,
    opts: Options,
) -> None:
    log = outcome.log.text
    published = outcome.published
    if not doc.breaks_structure:
        assert not oracle.document_refused, "a document whose structure holds was refused"
    if oracle.document_refused:
        assert outcome.code == 1, f"an unreadable document exited {outcome.code}"
        assert "repodata" in log and "failed" in log, log
        if opts.two_step:
            assert not changed(tree_before, tree_snapshot(site.tree)), "the tree changed"
        assert published == previous
        return
    if replace_guarded(oracle, previous, opts.max_replace_fraction, outcome):
        return
    if guarded(oracle, previous, opts.max_delete_fraction, outcome):
        return
    for filename, raw in oracle.publish.items():
        assert filename in published, f"{filename}: admitted, its file matches, not published"
        assert same_record(published[filename], raw), f"{filename}: not published verbatim"
    for name in oracle.refuse:
        assert f"refused upstream record {name}: " in log, f"{name}: refused without a word; {log}"
    for filename in oracle.fail:
        assert "not mirrored: " in log and filename in log, f"{filename}: failed without a word"
        if filename in previous:
            assert published.get(filename) == previous[filename], f"{filename}: old record lost"
        else:
            assert filename not in published, f"{filename}: published though its file differs"
    for filename, raw in published.items():
        if filename in oracle.publish or filename in oracle.fail:
            continue
        candidates = oracle.allowed.get(filename, frozenset())
        assert any(same_record(raw, c) for c in candidates), f"{filename}: published, unexpected"
    if oracle.exit_code is not None:
        assert outcome.code == oracle.exit_code, f"exit {outcome.code}, expected {oracle.exit_code}"


def replace_guarded(
    oracle: Expectation, previous: dict[str, bytes], fraction: float, outcome: Outcome
) -> bool:
    """Did the mass-replacement guard rightly stop the run? (It must when more than the
    fraction of what was published would be fetched again under the same name with other
    checksums, and must not when even the files that may be replaced stay under it.)"""
    if not previous:
        return False
    surely = {f for f, raw in oracle.publish.items() if f in previous and
              other_file(raw, previous[f]) is True}  # fmt: skip
    maybe = {f for f, raw in oracle.publish.items() if f in previous and
             other_file(raw, previous[f]) is not False}  # fmt: skip
    maybe |= oracle.fail & set(previous)
    maybe |= {f for f, raws in oracle.allowed.items() if f in previous and
              any(other_file(raw, previous[f]) is not False for raw in raws)}  # fmt: skip
    stopped = "change the bytes of" in outcome.log.text
    if len(surely) / len(previous) > fraction:
        assert stopped, f"{len(surely)} of {len(previous)} replaced: the guard did not stop it"
    elif len(maybe) / len(previous) <= fraction:
        assert not stopped, "the replace guard stopped a run that replaces little"
    if stopped:
        assert outcome.code == 1 and outcome.published == previous, "guarded, yet changed"
    return stopped


def other_file(new: bytes, old: bytes) -> bool | None:
    """Does record `new` describe other bytes than the published record `old`? (As the sync's
    plan compares: size, then sha256, else md5; None when a record does not parse here.)"""
    try:
        a, b = json.loads(new), json.loads(old)
    except ValueError:
        return None
    if a.get("size") is not None and a.get("size") != b.get("size"):
        return True
    if a.get("sha256") and b.get("sha256"):
        return bool(a["sha256"] != b["sha256"])
    return bool(a.get("md5") and a.get("md5") != b.get("md5"))


def guarded(
    oracle: Expectation, previous: dict[str, bytes], fraction: float, outcome: Outcome
) -> bool:
    """Did the mass-deletion guard rightly stop the run? (It must when, and only when, more
    than the fraction of what was published would go.)"""
    if not previous:
        return False
    wanted = set(oracle.publish) | oracle.fail | set(oracle.allowed)
    surely_gone = set(previous) - wanted
    maybe_gone = surely_gone | (set(previous) & set(oracle.allowed))
    stopped = "would delete" in outcome.log.text
    if len(surely_gone) / len(previous) > fraction:
        assert stopped, f"{len(surely_gone)} of {len(previous)} deleted: the guard did not stop it"
    elif len(maybe_gone) / len(previous) <= fraction:
        assert not stopped, "the guard stopped a run that deletes little"
    if stopped:
        assert outcome.code == 1 and outcome.published == previous, "guarded, yet changed"
    return stopped


# -- the tests ----------------------------------------------------------------------------------

FUZZ = fuzz_settings(default_examples=100)


@FUZZ
@given(data=st.data())
def test_a_sync_of_hostile_upstream_repodata_keeps_every_invariant(
    world: World, data: st.DataObject
) -> None:
    doc = data.draw(upstream_docs(world), label="document")
    rules_ = data.draw(rules(), label="rules")
    opts = data.draw(options(), label="options")
    with tempfile.TemporaryDirectory(prefix="fuzz-sync-") as folder:
        base = Path(folder)
        upstream = base / "upstream"
        stage_upstream(world, upstream)
        site = make_site(base, upstream, upstream.as_uri(), doc.subdir, rules_, opts)
        try:
            figures = run_example(site, doc, rules_, opts, base)
        except AssertionError as failure:
            kept = keep_failure(base)
            raise AssertionError(f"{failure}\n  example: {doc.describe()}{kept}") from None
    tally("sync", figures.pop("checks"), figures)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, UpstreamServer]]:
    root = tmp_path_factory.mktemp("served")
    with UpstreamServer(root) as server:
        yield root, server


HTTP = fuzz_settings(default_examples=8)


@HTTP
@given(data=st.data())
def test_a_sync_of_hostile_repodata_over_http_keeps_every_invariant(
    world: World, served: tuple[Path, UpstreamServer], data: st.DataObject
) -> None:
    root, server = served
    data.draw(st.integers(0, 2**16), label="salt")  # other documents than the file:// test's
    doc = data.draw(upstream_docs(world), label="document")
    rules_ = data.draw(rules(), label="rules")
    opts = data.draw(options(), label="options")
    base = Path(tempfile.mkdtemp(prefix="fuzz-http-", dir=root))
    try:
        upstream = base / "upstream"
        stage_upstream(world, upstream)
        url = f"{server.url}/{base.name}/upstream"
        site = make_site(base, upstream, url, doc.subdir, rules_, opts)
        try:
            figures = run_example(site, doc, rules_, opts, base)
            channel_url = f"{server.url}/{base.name}/site/tree/{CHANNEL}"
            figures["checks"] += gateway_reads(channel_url, site.tree / CHANNEL, doc.subdir, base)
        except AssertionError as failure:
            kept = keep_failure(base)
            raise AssertionError(f"{failure}\n  example: {doc.describe()}{kept}") from None
    finally:
        shutil.rmtree(base)
    tally("sync-http", figures.pop("checks"), figures)


def gateway_reads(url: str, channel_dir: Path, subdir: str, scratch: Path) -> int:
    """rattler's gateway, as pixi reads a channel over http (the shard index and the shards
    when there are, else repodata.json), finds every published record of the subdir."""
    repodata = channel_dir / subdir / "repodata.json"
    if not repodata.exists():  # never published: its first document was unreadable
        return 0
    published = records_of(repodata.read_bytes(), repodata)
    names = sorted({json.loads(raw)["name"] for raw in published.values()})
    if not names:
        return 0

    async def query() -> list[list[Any]]:
        gateway = rattler.Gateway(cache_dir=scratch / "gateway-cache")
        found = await gateway.query([rattler.Channel(url)], [subdir], specs=names,
                                    recursive=False)  # fmt: skip
        return [list(records) for records in found]

    try:
        found = asyncio.run(query())
    except Exception as exc:  # rattler's own exception types
        raise AssertionError(f"rattler's gateway cannot read {url}: {exc}") from None
    read = {r.file_name for records in found for r in records}
    assert read == set(published), f"the gateway read {sorted(read ^ set(published))} otherwise"
    return 1
