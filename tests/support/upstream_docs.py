"""Hostile upstream repodata documents over real package files, for the end-to-end sync fuzzer.

A `World` is a set of real package files with their real records (conda's own test channel and
Anaconda's zlib from the shared test data when present, always the builder's world); an
`UpstreamDoc` lists some of them with several records of one subdir mutated at once
(tests/support/mutations.py) and tricks played on the whole document that keep its JSON
structure: odd top-level keys (unknown, deeply nested, `packages.whl`), odd `info`, `removed`
and `repodata_version`, a file name listed twice, records in the wrong group, groups twice,
members in any order. A few documents break the structure on purpose (the subdir must then
fail and keep what it published).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from mirror.core.gate import admit
from mirror.core.records import Record, parse_repodata
from tests.conftest import world_specs
from tests.support.builder import build_channel
from tests.support.mutations import (
    RAW,
    STRUCTURAL,
    Base,
    deep_nesting,
    json_values,
    lone_surrogate,
    mutants,
    non_utf8,
    odd_strings,
    repeat_key,
)

Draw = Callable[[st.SearchStrategy[Any]], Any]
SUBDIRS = ("linux-64", "noarch")
GROUPS = ("packages", "packages.conda")

# a record's own bytes mutated in ways that keep it one delimited JSON value (the document's
# structure holds); `mangle` (truncating, trailing bytes, a BOM) breaks it and is left out
STRUCTURE_KEEPING_RAW = (non_utf8, lone_surrogate, deep_nesting, repeat_key)
assert set(STRUCTURE_KEEPING_RAW) < set(RAW)


@dataclass(frozen=True)
class WorldPackage:
    """A real package file upstream and its real record (admitted by the gate as it is)."""

    filename: str
    group: str
    subdir: str
    raw: bytes
    path: Path


class World(dict[str, tuple[WorldPackage, ...]]):
    """The world's packages by subdir (shown short in hypothesis's reports)."""

    def __repr__(self) -> str:
        return f"World({ {subdir: len(packages) for subdir, packages in self.items()} })"


def build_world(shared_real: Path, folder: Path) -> World:
    """The builder's world, plus the real files of the shared test data when present."""
    build_channel(folder / "built", world_specs())
    sources = [folder / "built" / subdir for subdir in SUBDIRS]
    real = {
        "noarch": shared_real / "channels" / "conda-test-recipes" / "noarch",
        "linux-64": shared_real / "conda_format_repo" / "linux-64",
    }
    sources += [path for path in real.values() if (path / "repodata.json").is_file()]
    world: dict[str, list[WorldPackage]] = {subdir: [] for subdir in SUBDIRS}
    for source in sources:
        parsed = parse_repodata((source / "repodata.json").read_bytes(), source=str(source))
        subdir = json.loads(bytes(parsed.top_level["info"]))["subdir"]
        for filename, (group, raw) in sorted(parsed.entries.items()):
            if not (source / filename).is_file():
                continue  # real repodata naming a file the test data lacks
            verdict = admit(filename, bytes(raw), group=group, subdir=subdir)
            assert isinstance(verdict, Record), verdict
            world[subdir].append(
                WorldPackage(filename, group, subdir, bytes(raw), source / filename)
            )
    return World({subdir: tuple(packages) for subdir, packages in world.items()})


def stage_upstream(world: World, upstream: Path) -> None:
    """Every world file in its subdir of `upstream` (hard links, so it costs nothing), and a
    copy of each beside the subdir too: what a `../` in a file name would reach."""
    for subdir, packages in world.items():
        folder = upstream / subdir
        folder.mkdir(parents=True, exist_ok=True)
        for package in packages:
            (folder / package.filename).hardlink_to(package.path)
            if not (upstream / package.filename).exists():
                shutil.copyfile(package.path, upstream / package.filename)


# -- the document -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One member of a record group as written: its group, file name and raw record."""

    group: str
    filename: str
    raw: bytes
    applied: tuple[str, ...] = ()  # what was done to it; () for a real record untouched


@dataclass(frozen=True)
class UpstreamDoc:
    subdir: str
    entries: tuple[Entry, ...]
    body: bytes
    tricks: tuple[str, ...]
    breaks_structure: bool  # a trick meant to make the document unreadable as a whole
    ambiguous: frozenset[str]  # file names listed twice (or in a group given twice)
    originals: tuple[Entry, ...]  # the chosen real records as they were

    def original_body(self) -> bytes:
        """The document as upstream had it before the mutations: the chosen real records."""
        groups = {g: [e for e in self.originals if e.group == g] for g in GROUPS}
        members = b", ".join(
            _key(group)
            + b": {"
            + b", ".join(_key(e.filename) + b": " + e.raw for e in entries)
            + b"}"
            for group, entries in groups.items()
        )
        info = json.dumps({"subdir": self.subdir}).encode()
        return b'{"info": ' + info + b", " + members + b', "repodata_version": 1}'

    def describe(self) -> str:
        mutated = [f"{e.filename}: {', '.join(e.applied)}" for e in self.entries if e.applied]
        return f"{self.subdir}; tricks {list(self.tricks)}; mutated {mutated}"


def _key(text: str, ascii_only: bool = True) -> bytes:
    return json.dumps(text, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _group_body(entries: Sequence[Entry], draw: Draw) -> bytes:
    ascii_only = draw(st.booleans())
    members = [_key(e.filename, ascii_only) + b": " + e.raw for e in entries]
    joiner = draw(st.sampled_from((b", ", b",\n", b",", b" ,\r\n\t")))
    return b"{" + joiner.join(members) + b"}"


def _odd_value(draw: Draw) -> bytes:
    kind = draw(st.sampled_from(("json", "deep-list", "deep-object", "string", "token")))
    if kind == "json":
        return json.dumps(draw(json_values())).encode("utf-8", "surrogatepass")
    depth = draw(st.sampled_from((10, 64, 100, 126, 127, 128, 129, 200, 250)))
    if kind == "deep-list":
        return b"[" * depth + b"]" * depth
    if kind == "deep-object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "string":
        return json.dumps("x" * draw(st.sampled_from((0, 1, 1000, 100_000)))).encode()
    return draw(st.sampled_from((b"NaN", b"1e400", b"-0", b"18446744073709551616", b"1.5")))


_ODD_KEYS = (
    "zz", "signatures", "packages.whl", "packages.tar.bz2", "Packages", "packages.conda ",
    " packages", "info2", "\u0000", "", "removed_extra", "repodata_version2", "\ud800",
)  # fmt: skip


def _top_level_tricks(draw: Draw, subdir: str) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """Top-level members besides the groups, and what they are; structure kept."""
    members: list[tuple[bytes, bytes]] = []
    tricks: list[str] = []
    info: object = {"subdir": subdir}
    info_kind = draw(st.sampled_from(("plain",) * 6 + ("other", "base_url", "odd", "deep")))
    if info_kind == "other":
        info = {"subdir": "osx-arm64" if subdir != "osx-arm64" else "noarch"}
    elif info_kind == "base_url":
        info = {"subdir": subdir, "base_url": draw(st.sampled_from(("../../", "file:///etc/", "")))}
    elif info_kind == "odd":
        info = draw(st.sampled_from(("../../etc", [1], None, 5, {"subdir": 5}, {})))
    if info_kind == "deep":
        members.append(
            (b'"info"', b'{"subdir": "' + subdir.encode() + b'", "x": ' + _deep() + b"}")
        )
    elif draw(st.sampled_from((True,) * 9 + (False,))):
        members.append((b'"info"', json.dumps(info).encode()))
    if info_kind != "plain":
        tricks.append(f"info {info_kind}")
    version = draw(st.sampled_from((b"1",) * 6 + (b"2", b"3", b"0", b"null", b"")))
    if version:
        members.append((b'"repodata_version"', version))
        if version != b"1":
            tricks.append(f"repodata_version {version.decode()}")
    removed = draw(st.sampled_from(("[]", "[]", '["zlib-1.2.13-h0_0.conda"]',
                                    '["../x", "a\\u0000b", "\\u00e9"]', "")))  # fmt: skip
    if removed:
        members.append((b'"removed"', removed.encode()))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(_ODD_KEYS) | odd_strings())
        members.append((_key(key), _odd_value(draw)))
        tricks.append(f"top-level key {key!r}")
    return members, tricks


def _deep() -> bytes:
    return b"[" * 150 + b"]" * 150


_BREAKERS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda body: body[: len(body) // 2],
    "trailing garbage": lambda body: body + b" x",
    "bom": lambda body: b"\xef\xbb\xbf" + body,
    "a list": lambda body: b"[" + body + b"]",
    "removed not strings": lambda body: body[:-1] + b', "removed": [1]}',
    "repodata_version a string": lambda body: body[:-1] + b', "repodata_version": "1"}',
    "packages.conda null": lambda body: body[:-1] + b', "packages.conda": null}',
}


def _maybe_stale(
    draw: Draw, package: WorldPackage, packages: Sequence[WorldPackage]
) -> tuple[bytes, tuple[str, ...]]:
    """Sometimes the record with another file's size and checksums (well formed, so the gate
    admits it): what an upstream that replaced a file, or a stale index, serves. The download
    must then fail verification, be named, and leave any published record as it was."""
    if draw(st.sampled_from((False,) * 5 + (True,))):
        other = json.loads(draw(st.sampled_from(packages)).raw)
        record = json.loads(package.raw)
        for key in ("size", "sha256", "md5"):
            record.pop(key, None)
            if key in other:
                record[key] = other[key]
        return json.dumps(record).encode(), ("checksums of another file",)
    return package.raw, ()


@st.composite
def upstream_docs(draw: Draw, world: World) -> UpstreamDoc:
    """A document for one subdir: real records, several of them mutated, plus tricks."""
    subdir = draw(st.sampled_from(SUBDIRS))
    packages = world[subdir]
    chosen = draw(
        st.lists(st.sampled_from(packages), min_size=1, max_size=8, unique_by=lambda p: p.filename)
    )
    mutated = draw(st.integers(0, len(chosen)))
    entries: list[Entry] = []
    for index, package in enumerate(chosen):
        if index < mutated:
            raw, stale = _maybe_stale(draw, package, packages)
            base = Base(package.filename, package.group, subdir, raw)
            mutant = draw(mutants((base,), structural=STRUCTURAL, raw_ops=STRUCTURE_KEEPING_RAW))
            applied = stale + (mutant.applied[1:] or ("re-serialised",))
            entries.append(Entry(mutant.group, mutant.filename, mutant.raw, applied))
        else:
            entries.append(Entry(package.group, package.filename, package.raw))
    tricks: list[str] = []
    ambiguous: set[str] = set()
    if entries and draw(st.sampled_from((False,) * 4 + (True,))):  # a file name listed twice
        first = draw(st.sampled_from(entries))
        other = draw(st.sampled_from(packages))
        group = draw(st.sampled_from(GROUPS))
        raw = draw(st.sampled_from((first.raw, other.raw, b"{}")))
        entries.append(Entry(group, first.filename, raw, ("listed twice",)))
        ambiguous.add(first.filename)
        tricks.append(f"{first.filename} twice")
    counts = Counter(e.filename for e in entries)  # a mutated identity may meet another's
    ambiguous |= {filename for filename, count in counts.items() if count > 1}
    entries = draw(st.permutations(entries))
    members, top_tricks = _top_level_tricks(draw, subdir)
    tricks += top_tricks
    for group in GROUPS:
        in_group = [e for e in entries if e.group == group]
        if in_group or draw(st.booleans()):
            members.append((_key(group), _group_body(in_group, draw)))
    if entries and draw(st.sampled_from((False,) * 9 + (True,))):  # a group given twice
        group = draw(st.sampled_from(GROUPS))
        some = [e for e in entries if e.group == group][:2]
        members.append((_key(group), _group_body(some, draw)))
        ambiguous |= {e.filename for e in entries if e.group == group}
        tricks.append(f"{group} twice")
    members = draw(st.permutations(members))
    spacing = draw(st.sampled_from((b", ", b",\n", b",")))
    body = b"{" + spacing.join(key + b": " + value for key, value in members) + b"}"
    breaks = False
    if draw(st.sampled_from((False,) * 19 + (True,))):
        name = draw(st.sampled_from(sorted(_BREAKERS)))
        body = _BREAKERS[name](body)
        tricks.append(f"structure broken: {name}")
        breaks = True
    originals = tuple(Entry(p.group, p.filename, p.raw) for p in chosen)
    return UpstreamDoc(
        subdir, tuple(entries), body, tuple(tricks), breaks, frozenset(ambiguous), originals
    )
