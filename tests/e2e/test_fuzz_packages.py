"""The end-to-end fuzzer of package files: hostile packages fed to `mirror index` of a local
channel and to a drop folder (tests/support/package_mutations.py makes them).

Each example puts a few good packages and a few hostile ones (index.json mutated as upstream
records are, odd about/run_exports/paths.json, path and link tricks, devices, odd but harmless
member names, zip-slip, a deflated tar, a bomb, a cut or a flipped byte) into a channel folder
and runs `mirror index` in process (mirror.cli.run, sometimes --deep, sometimes over a channel
already indexed, sometimes replacing a published file in place), or into a drop folder and
runs admit_drops in process (what the daemon runs). After every example:

  1. no traceback, no "internal error" logged, no thread died;
  2. `mirror index` exits 1 when it quarantined a file, else 0; run again, it exits 0 and
     changes nothing;
  3. every index parses with py-rattler, whole and name by name; every record names a file
     that is there with its size and sha256; no unindexed or temp file; `verify --full` clean;
  4. nothing outside the tree and the state directory changed;
  5. each package the verdict says is bad is quarantined (its bytes kept, with a .reason
     naming it) and not published; each good one is published (a drop: in the subdir its
     index.json names); every file ends up published or quarantined, and the drop folder
     ends empty; a published record names only its own file (no fn, url, channel).

Fixed seed, bounded examples (tests/bench/fuzz_e2e.py runs it longer with random seeds).
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import Quarantine, local_tree
from mirror.cli import run
from mirror.config import load_config
from mirror.config.model import ChannelConfig
from mirror.health.verify import verify
from mirror.local.drops import DropContext, admit_drops
from mirror.reports import DropOutcome, DropResult
from tests.conftest import SHARED_REAL
from tests.support.builder import PackageSpec, package_bytes
from tests.support.fuzz_run import fuzz_settings, keep_failure, tally
from tests.support.package_mutations import (
    SUBDIRS,
    HostilePackage,
    Verdict,
    Verdicts,
    package_sets,
    real_packages,
)
from tests.support.tree_checks import LogTrap, Snapshot, changed, check_tree, snapshot

CHANNEL = "chan"
REALS = real_packages(SHARED_REAL)
GOOD = (
    PackageSpec("fz-good", "1.0", subdir="noarch"),
    PackageSpec("fz-good", "2.0", subdir="linux-64", fmt=".tar.bz2"),
    PackageSpec("fz-other", "0.1", build="py_0", subdir="noarch", fmt=".tar.bz2"),
)


@dataclass(frozen=True)
class Plan:
    """How an index example runs."""

    deep: bool
    before: bool  # the good packages were indexed by an earlier run
    replace: bool  # a hostile package takes the name of a published good one (in place)
    flags: tuple[str, ...]


def plans() -> st.SearchStrategy[Plan]:
    return st.builds(
        Plan,
        deep=st.sampled_from((False, False, True)),
        before=st.booleans(),
        replace=st.sampled_from((False, False, True)),
        flags=st.sampled_from(((), (), ("--current-repodata",), ("--bz2", "--no-shards"))),
    )


def _first_of_each_name(packages: tuple[HostilePackage, ...]) -> list[HostilePackage]:
    seen: set[str] = set()
    kept = []
    for package in packages:
        if package.filename not in seen:
            seen.add(package.filename)
            kept.append(package)
    return kept


_RENAMED = re.compile(r"its name was (.+)\)$", re.MULTILINE)


def quarantined(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The files in a quarantine folder by their original name: (bytes, .reason text). A file
    whose name is too long for a .reason beside it is kept shortened; its .reason says so."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        if path.name.endswith(".reason"):
            continue
        reason = path.with_name(path.name + ".reason").read_text()
        renamed = _RENAMED.search(reason)
        original = ast.literal_eval(renamed.group(1)) if renamed else path.name
        found[original] = (path.read_bytes(), reason)
    return found


def _outside(base: Path, *inside: Path) -> Snapshot:
    return snapshot(base, skip=inside)


def _make_outside(base: Path) -> None:
    (base / "outside" / "etc").mkdir(parents=True)
    (base / "outside" / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (base / "outside" / "private.key").write_bytes(b"secret\n")


# -- mirror index ---------------------------------------------------------------------------


def index_example(base: Path, hostile: list[HostilePackage], plan: Plan) -> dict[str, int]:
    tree, state = base / "tree", base / "state"
    channel = tree / CHANNEL
    mode = "index --deep" if plan.deep else "index"
    argv = ["index", str(channel), "--state-dir", str(state), "--workers", "1", *plan.flags]
    argv += ["--deep"] if plan.deep else []
    good = {spec.filename: (spec.subdir, package_bytes(spec)) for spec in GOOD}
    for filename, (subdir, data) in good.items():
        (channel / subdir).mkdir(parents=True, exist_ok=True)
        (channel / subdir / filename).write_bytes(data)
    if plan.before:
        with LogTrap() as trap:
            assert run(argv) == 0, trap.text
    if plan.replace and plan.before and hostile:
        # a published file replaced in place by another package: its record says another
        # name, so it must be quarantined and its old record withdrawn
        victim = next(iter(good))
        hostile[0] = replace(hostile[0], filename=victim, folder=good.pop(victim)[0],
                             index_why="put in place of a published file")  # fmt: skip
    placed: dict[tuple[str, str], HostilePackage] = {}
    for package in hostile:
        if (package.folder, package.filename) in placed or package.filename in good:
            continue
        (channel / package.folder).mkdir(parents=True, exist_ok=True)
        (channel / package.folder / package.filename).write_bytes(package.data)
        placed[(package.folder, package.filename)] = package
    outside = _outside(base, tree, state)
    with LogTrap() as trap:
        code = run(argv)
    assert not trap.failures(), "\n".join(trap.failures())
    assert not changed(outside, _outside(base, tree, state)), "written outside the tree"
    facts = check_tree(channel, base)
    quarantine = state / "quarantine" / CHANNEL
    moved = {(s, n): found for s in SUBDIRS for n, found in quarantined(quarantine / s).items()}
    for (folder, filename), package in placed.items():
        verdict = package.verdict(mode)
        published = filename in facts.records.get(folder, {})
        kept = moved.get((folder, filename))
        assert published != (kept is not None), f"{filename}: published {published}, moved {kept}"
        if kept is not None:
            assert kept[0] == package.data, f"{filename}: quarantined with other bytes"
            assert filename in kept[1] or repr(filename) in kept[1], kept[1]
        if verdict is Verdict.BAD:
            assert not published, f"{filename}: bad ({', '.join(package.applied)}), published"
        elif verdict is Verdict.OK:
            assert published, f"{filename}: good, quarantined: {kept and kept[1]}"
    for filename, (subdir, _) in good.items():
        assert filename in facts.records.get(subdir, {}), f"{filename}: the good one is gone"
    assert code == (1 if moved else 0), f"exit {code} with {len(moved)} quarantined"
    _foreign_claims(facts.records)
    _verify(tree, state, facts.records)
    with LogTrap() as trap:
        again = run(argv)
    assert again == 0 and not trap.failures(), f"the second run exited {again}: {trap.text}"
    assert check_tree(channel, base).records == facts.records, "the second run changed records"
    published = sum(len(r) for r in facts.records.values())
    return {"checks": facts.checks + 3 * len(placed) + 6, "published": published,
            "quarantined": len(moved), "exit_1": code}  # fmt: skip


def _foreign_claims(records: dict[str, dict[str, bytes]]) -> None:
    for subdir, by_name in records.items():
        for filename, raw in by_name.items():
            record = json.loads(raw)
            assert not {"fn", "url", "channel"} & set(record), f"{subdir}/{filename}: claims"


def _verify(tree: Path, state: Path, records: dict[str, dict[str, bytes]]) -> None:
    with Catalog(state / "catalog.sqlite") as catalog:
        report = verify(local_tree(tree), catalog, [(CHANNEL, s) for s in records], full=True)
    assert report.ok, [str(p) for p in report.problems]


FUZZ = fuzz_settings(default_examples=60)


@FUZZ
@given(packages=package_sets(REALS), plan=plans())
def test_mirror_index_of_hostile_package_files_keeps_every_invariant(
    packages: Verdicts, plan: Plan
) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-index-") as folder:
        base = Path(folder)
        _make_outside(base)
        try:
            figures = index_example(base, _first_of_each_name(packages.packages), plan)
        except AssertionError as failure:
            kept = keep_failure(base)
            raise AssertionError(f"{failure}\n  example: {packages!r}, {plan}{kept}") from None
    tally("index", figures.pop("checks"), figures)


# -- drop folders -------------------------------------------------------------------------------


def drop_example(base: Path, hostile: list[HostilePackage], before: bool) -> dict[str, int]:
    tree, state, drops = base / "tree", base / "state", base / "drops"
    drops.mkdir()
    config = base / "mirror.yaml"
    config.write_text(yaml.safe_dump({
        "root": "tree", "state_dir": "state",
        "channels": {CHANNEL: {"subdirs": list(SUBDIRS), "drop_folders": ["drops"]}},
    }))  # fmt: skip
    channel = load_config(config).channels[0]
    published_before: dict[str, str] = {}  # file name -> subdir
    if before:
        spec = GOOD[0]
        (drops / spec.filename).write_bytes(package_bytes(spec))
        _admit(tree, state, channel, [drops / spec.filename])
        published_before[spec.filename] = spec.subdir
    good = {spec.filename: spec for spec in GOOD[1:]}
    for spec in good.values():
        (drops / spec.filename).write_bytes(package_bytes(spec))
    dropped: dict[str, HostilePackage] = {}
    for package in hostile:
        if package.filename in dropped or package.filename in good:
            continue
        (drops / package.filename).write_bytes(package.data)
        dropped[package.filename] = package
    outside = _outside(base, tree, state, drops)
    with LogTrap() as trap:
        outcomes = _admit(tree, state, channel, sorted(drops.iterdir()))
    assert not trap.failures(), "\n".join(trap.failures())
    assert not changed(outside, _outside(base, tree, state, drops)), "written outside the tree"
    assert not list(drops.iterdir()), f"left in the drop folder: {list(drops.iterdir())}"
    facts = check_tree(tree / CHANNEL, base)
    by_name = {o.source.name: o for o in outcomes}
    moved = quarantined(state / "quarantine" / CHANNEL / "_drops")
    for filename, package in dropped.items():
        outcome = by_name[filename]
        verdict = package.verdict("drop")
        if filename in published_before:
            verdict = Verdict.BAD  # a different file under a published name: never replaced
        if outcome.result is DropResult.PUBLISHED:
            assert verdict is not Verdict.BAD, (
                f"{filename}: bad ({', '.join(package.applied)}), published"
            )
            assert outcome.subdir == package.drop_subdir
            assert filename in facts.records.get(outcome.subdir, {}), f"{filename}: not indexed"
        else:
            assert outcome.result is DropResult.QUARANTINED, f"{filename}: {outcome}"
            assert verdict is not Verdict.OK, f"{filename}: good, quarantined: {outcome.message}"
            assert moved[filename][0] == package.data, f"{filename}: quarantined with other bytes"
            assert moved[filename][1].startswith(f"{outcome.reason}: "), moved[filename][1]
    for filename in good:
        assert by_name[filename].result is DropResult.PUBLISHED, by_name[filename]
    for filename, subdir in {**published_before, **{f: s.subdir for f, s in good.items()}}.items():
        assert filename in facts.records.get(subdir, {}), f"{filename}: the good one is gone"
    _foreign_claims(facts.records)
    _verify(tree, state, facts.records)
    published = sum(1 for o in outcomes if o.result is DropResult.PUBLISHED)
    return {"checks": facts.checks + 3 * len(dropped) + 5, "published": published,
            "quarantined": len(outcomes) - published}  # fmt: skip


def _admit(
    tree: Path, state: Path, channel: ChannelConfig, paths: list[Path]
) -> tuple[DropOutcome, ...]:
    with Catalog(state / "catalog.sqlite") as catalog:
        ctx = DropContext(tree=local_tree(tree), catalog=catalog,
                          quarantine=Quarantine(state / "quarantine"), fresh_s=0.0)  # fmt: skip
        return admit_drops(ctx, channel, paths).outcomes


DROPS = fuzz_settings(default_examples=60)


@DROPS
@given(packages=package_sets(REALS), before=st.booleans())
def test_a_drop_folder_fed_hostile_package_files_keeps_every_invariant(
    packages: Verdicts, before: bool
) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-drops-") as folder:
        base = Path(folder)
        _make_outside(base)
        try:
            figures = drop_example(base, _first_of_each_name(packages.packages), before)
        except AssertionError as failure:
            kept = keep_failure(base)
            raise AssertionError(f"{failure}\n  example: {packages!r}{kept}") from None
    tally("drops", figures.pop("checks"), figures)
