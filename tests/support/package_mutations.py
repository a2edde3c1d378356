"""Hostile conda package files with what `mirror index` and a drop folder must make of them.

A `HostilePackage` is a real package (info/index.json, paths.json, about.json, payload, in
either format) with some of: its index.json mutated as upstream records are
(tests/support/mutations.py: type swaps, huge numbers, NaN, bytes that are not UTF-8, deep
nesting, repeated keys, odd names, the file name following or not), foreign `fn`/`url`/
`channel` claims, odd about.json and run_exports.json, payload members with path and link
tricks, devices, odd but harmless names, a paths.json that lies, and container tricks (a
zip-slip entry, a deflated tar, a decompression bomb, a cut or a flipped byte).

Each trick says what it does to the verdict, for the shallow read of `mirror index` and the
deep one of drops and `--deep`: BAD (must be quarantined), OK (must be published) or EITHER
(whatever the reader does, the tree must stay sound). Where a trick's verdict is the record
gate's (index.json), the oracle asks the gate itself through local_record: the end-to-end
test then checks the wiring, and rattler reading the result checks the gate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import strategies as st

from mirror.core.package_records import InvalidPackage, local_record
from mirror.core.records import is_safe_filename
from tests.support.hostile import file
from tests.support.mutations import Base, json_values, mutants
from tests.support.package_parts import (
    BAD_MEMBERS,
    ODD_BUT_FINE,
    PAYLOAD_DATA,
    Parts,
    Trick,
    Verdict,
    assemble,
    paths_json_of,
    read_real,
    real_packages,
)

__all__ = ["HostilePackage", "Verdict", "Verdicts", "package_sets", "real_packages"]

Draw = Callable[[st.SearchStrategy[Any]], Any]
SUBDIRS = ("noarch", "linux-64")
MAX_NAME_BYTES = 255  # what the test's own filesystem can hold


@dataclass(frozen=True)
class HostilePackage:
    filename: str
    data: bytes
    folder: str  # the subdir folder `mirror index` finds it in
    shallow: Verdict  # of the tricks, for a shallow read (`mirror index`)
    deep: Verdict  # of the tricks, for a deep read (drops, `mirror index --deep`)
    index_why: str | None  # why the gate refuses its record in `folder` (None: it does not)
    drop_subdir: str | None  # where a drop is published, when it is
    drop_why: str | None  # why the gate refuses its record as a drop
    applied: tuple[str, ...]

    def verdict(self, mode: str) -> Verdict:
        """What `index`, `index --deep` or `drop` must do with it."""
        if mode == "drop":
            return Verdict.BAD if self.drop_why else self.deep
        why = self.index_why
        return Verdict.BAD if why else (self.deep if mode == "index --deep" else self.shallow)

    @property
    def shown(self) -> str:
        verdicts = "/".join(self.verdict(m).value for m in ("index", "index --deep", "drop"))
        return f"{self.filename!r} ({verdicts}: {', '.join(self.applied)})"


def _payload_tricks(draw: Draw, parts: Parts) -> None:
    # each at most once: the same symlink twice is itself refused ("defined twice")
    kinds = (*sorted(BAD_MEMBERS), *sorted(ODD_BUT_FINE) * 2)  # fine ones twice as likely
    for what in draw(st.lists(st.sampled_from(kinds), max_size=2, unique=True)):
        if what in BAD_MEMBERS:
            parts.payload += BAD_MEMBERS[what]()
            parts.tricks.append(Trick(what, Verdict.BAD, Verdict.BAD))
        else:
            parts.payload += ODD_BUT_FINE[what]()
            parts.tricks.append(Trick(what))
    if draw(st.sampled_from((False,) * 15 + (True,))):
        parts.payload.append(file("share/fine.txt", b"the first\n"))
        parts.payload.append(file("share/fine.txt", PAYLOAD_DATA))
        parts.tricks.append(Trick("a file twice", Verdict.EITHER, Verdict.EITHER))


def _paths_tricks(draw: Draw, parts: Parts, real: bool) -> None:
    if not real:
        parts.paths_json = paths_json_of(parts.payload)
    if parts.paths_json is None:
        return
    choice = draw(
        st.sampled_from(("none",) * 12 + ("wrong sha", "missing file", "not json", "absent"))
    )
    if choice == "wrong sha":
        entries = json.loads(parts.paths_json)
        entries.setdefault("paths", []).append({"_path": "share/zz", "path_type": "hardlink",
                                 "sha256": "0" * 64, "size_in_bytes": 1})  # fmt: skip
        parts.payload.append(file("share/zz", b"z"))
        parts.paths_json = json.dumps(entries).encode()
    elif choice == "missing file":
        entries = json.loads(parts.paths_json)
        entries.setdefault("paths", []).append({"_path": "share/nowhere", "path_type": "hardlink",
                                 "sha256": "1" * 64, "size_in_bytes": 3})  # fmt: skip
        parts.paths_json = json.dumps(entries).encode()
    elif choice == "not json":
        parts.paths_json = b"{paths: nope"
    elif choice == "absent":
        parts.paths_json = None
    if choice in ("wrong sha", "missing file", "not json"):
        parts.tricks.append(Trick(f"paths.json {choice}", Verdict.OK, Verdict.BAD))
    elif choice == "absent":
        parts.tricks.append(Trick("no paths.json"))


def _side_files(draw: Draw, parts: Parts) -> None:
    """about.json is decoration (anything goes); run_exports.json must be an object the gate
    takes (the oracle asks it)."""
    about = draw(st.sampled_from(("plain", "odd", "not utf-8", "nan", "absent")))
    if about == "odd":
        parts.about = json.dumps({"summary": draw(json_values()), "home": draw(json_values()),
                                  "license": draw(json_values())}).encode()  # fmt: skip
    elif about == "not utf-8":
        parts.about = b'{"summary": "caf\xe9"}'
    elif about == "nan":
        parts.about = b'{"summary": NaN, "description": 1e400}'
    elif about == "absent":
        parts.about = None
    if about != "plain":
        parts.tricks.append(Trick(f"about.json {about}"))
    exports = draw(
        st.sampled_from(("keep",) * 5 + ("plain", "odd", "a list", "not json", "absent"))
    )
    if exports != "keep":
        parts.run_exports = {
            "absent": None,
            "plain": b'{"weak": ["fz-dep >=1"]}',
            "odd": json.dumps({"weak": draw(json_values(3)), "zz": 1}).encode(),
            "a list": b'["x"]',
            "not json": b"{weak",
        }[exports]
        parts.tricks.append(Trick(f"run_exports.json {exports}"))  # judged by the oracle


# -- the container ------------------------------------------------------------------------------


def _container_tricks(draw: Draw, parts: Parts) -> Callable[[bytes], bytes]:
    choice = draw(st.sampled_from(("none",) * 16 + ("zip-slip entry", "harmless zip entry",
                                                    "deflated tars", "bomb", "renamed pkg tar",
                                                    "cut", "flip")))  # fmt: skip
    if parts.fmt == ".tar.bz2" and choice not in ("none", "cut", "flip"):
        choice = "none"
    if choice == "renamed pkg tar":
        parts.pkg_entry = f"pkg-{parts.stem}" + draw(
            st.sampled_from((".tar.zst.orig", ".Tar.zst", ""))
        )
        parts.tricks.append(Trick(f"pkg tar as {parts.pkg_entry}", Verdict.BAD, Verdict.BAD))
    if choice == "zip-slip entry":
        parts.zip_extra["../../evil.sh"] = b"#!/bin/sh\n"
        parts.tricks.append(Trick(choice, Verdict.BAD, Verdict.BAD))
    elif choice == "harmless zip entry":
        parts.zip_extra["extra.txt"] = b"hello\n"
        parts.tricks.append(Trick(choice))
    elif choice == "deflated tars":
        parts.zip_deflated = True
        parts.tricks.append(Trick(choice, Verdict.BAD, Verdict.BAD))
    elif choice == "bomb":
        parts.pkg_bomb = True
        parts.tricks.append(Trick("zstd bomb in the pkg tar", Verdict.BAD, Verdict.BAD))
    elif choice in ("cut", "flip"):
        fraction = draw(st.floats(0.0, 0.999))
        parts.tricks.append(
            Trick(choice, *((Verdict.BAD,) * 2 if choice == "cut" else (Verdict.EITHER,) * 2))
        )

        def damage(data: bytes) -> bytes:
            at = int(len(data) * fraction)
            if choice == "cut":
                return data[:at]
            return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]

        return damage
    return lambda data: data


# -- the oracle -------------------------------------------------------------------------------

_INDEX_DECODER = msgspec.json.Decoder(dict[str, Any])  # as the archive reader decodes it


def _decoded(raw: bytes | None) -> dict[str, Any] | str | None:
    """The JSON object (or None when absent), or why it is not one."""
    if raw is None:
        return None
    try:
        return _INDEX_DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        return f"not a JSON object ({exc})"


def record_verdict(filename: str, subdir: str, parts: Parts, data: bytes) -> str | None:
    """Why the record of this package file is refused, or None: the gate's verdict."""
    if not is_safe_filename(filename):
        return "unsafe file name"
    index = _decoded(parts.index_raw)
    if not isinstance(index, dict):
        return f"index.json {index}"
    exports = _decoded(parts.run_exports)
    if isinstance(exports, str):
        return f"run_exports.json {exports}"
    try:
        local_record(
            filename, subdir, index, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(), run_exports=exports,
        )  # fmt: skip
    except InvalidPackage as exc:
        return str(exc)
    return None


def drop_subdir(parts: Parts) -> str | None:
    """The subdir a drop goes to: index.json's, else noarch for a noarch package (drops.py)."""
    index = _decoded(parts.index_raw)
    if not isinstance(index, dict):
        return None
    subdir = index.get("subdir")
    if not isinstance(subdir, str):
        subdir = "noarch" if index.get("noarch") else ""
    return subdir if subdir in SUBDIRS else None


# -- the strategy -------------------------------------------------------------------------------


def base_index(name: str, subdir: str, build: str) -> dict[str, Any]:
    index: dict[str, Any] = {"name": name, "version": "1.0", "build": build, "build_number": 0,
                             "depends": ["python >=3.8"], "license": "MIT", "subdir": subdir,
                             "timestamp": 1_700_000_000_000}  # fmt: skip
    if subdir == "noarch":
        index["noarch"] = "generic"
    return index


@st.composite
def hostile_packages(draw: Draw, name: str, reals: tuple[Path, ...] = ()) -> HostilePackage:
    """A package of `name` (unique in its example), or a real one, with some hostile parts."""
    real = read_real(draw(st.sampled_from(reals))) if reals and draw(st.booleans()) else None
    if real is None:
        subdir = draw(st.sampled_from(SUBDIRS))
        fmt = draw(st.sampled_from((".conda", ".tar.bz2")))
        build = draw(st.sampled_from(("0", "py_0", "h1234_5")))
        filename = f"{name}-1.0-{build}{fmt}"
        raw_index = json.dumps(base_index(name, subdir, build)).encode()
    else:
        fmt, filename, raw_index = real.fmt, real.filename, real.info["info/index.json"]
        subdir = json.loads(raw_index).get("subdir")
        subdir = subdir if subdir in SUBDIRS else "noarch"
    tricks: list[Trick] = [Trick(f"real {filename}")] if real else []
    if draw(st.sampled_from((False, True))):  # index.json mutated as upstream records are
        mutant = draw(mutants((Base(filename, "packages.conda", subdir, raw_index),)))
        raw_index = mutant.raw
        if mutant.filename.endswith(fmt) and _creatable(mutant.filename):
            filename = mutant.filename
        tricks.append(Trick("index.json: " + ", ".join(mutant.applied[1:] or ("re-serialised",))))
    if draw(st.sampled_from((False,) * 5 + (True,))):  # claims of another name, URL, channel
        claims = {"fn": "other-9-0.conda", "url": "https://evil.invalid/x.conda", "channel": "../x"}
        key = draw(st.sampled_from(sorted(claims)))
        raw_index = (
            raw_index.rstrip()[:-1]
            + b', "'
            + key.encode()
            + b'": '
            + json.dumps(claims[key]).encode()
            + b"}"
        )
        tricks.append(Trick(f"index.json claims {key}"))
    folder = subdir
    if draw(st.sampled_from((False,) * 9 + (True,))):
        folder = next(s for s in SUBDIRS if s != subdir)
        tricks.append(Trick(f"put in {folder}/"))  # judged by the oracle (the subdir differs)
    stem = filename.removesuffix(fmt)
    parts = Parts(stem, fmt, raw_index, json.dumps({"summary": f"{name} for tests"}).encode(),
                  None, [file(f"share/{name}/data.txt", PAYLOAD_DATA)], tricks=tricks)  # fmt: skip
    if real is not None:
        parts.about = real.info.get("info/about.json")
        parts.run_exports = real.info.get("info/run_exports.json")
        parts.paths_json = real.info.get("info/paths.json")
        parts.info_other, parts.payload = list(real.info_other), list(real.payload)
    _side_files(draw, parts)
    _payload_tricks(draw, parts)
    _paths_tricks(draw, parts, real is not None)
    damage = _container_tricks(draw, parts)
    data = damage(assemble(parts))
    shallow = deep = Verdict.OK
    for trick in parts.tricks:
        shallow, deep = shallow & trick.shallow, deep & trick.deep
    index_why = record_verdict(filename, folder, parts, data)
    drop_to = drop_subdir(parts)
    drop_why = record_verdict(filename, drop_to, parts, data) if drop_to else "no subdir served"
    applied = tuple(t.what for t in parts.tricks)
    return HostilePackage(
        filename, data, folder, shallow, deep, index_why, drop_to, drop_why, applied
    )


def _creatable(filename: str) -> bool:
    return (
        bool(filename)
        and "/" not in filename
        and "\x00" not in filename
        and filename not in (".", "..")
        and len(filename.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
    )


@dataclass(frozen=True)
class Verdicts:
    """Several hostile packages of one example (distinct names; a mutated identity may still
    give two the same file name: the test keeps the first)."""

    packages: tuple[HostilePackage, ...]

    def __repr__(self) -> str:
        return "Verdicts(" + "; ".join(p.shown for p in self.packages) + ")"


def package_sets(reals: tuple[Path, ...] = (), max_size: int = 4) -> st.SearchStrategy[Verdicts]:
    names = ("fz-alpha", "fz-beta", "fz-gamma", "fz-delta", "fz-eps", "fz-zeta")
    return (
        st.integers(1, max_size)
        .flatmap(lambda n: st.tuples(*(hostile_packages(names[i], reals) for i in range(n))))
        .map(Verdicts)
    )
