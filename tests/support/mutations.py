"""Hypothesis strategies that mutate real repodata records into hostile ones.

A `Base` is a real record (from the shared real repodata, or a built-in fallback set shaped
like conda-forge's and anaconda's); `mutants(bases)` draws one and applies a few mutations:
type swaps, hostile numbers (floats, 1e300, 2**64, -1, -0, NaN/Infinity tokens), bytes that are
not UTF-8 and lone surrogate escapes inside strings and keys, deep nesting, repeated and
removed keys, bad hex, odd specs, odd and long names (with the file name following or not),
and path tricks in file names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from mirror.core.gate import GateCache, decode_record
from mirror.core.records import Record, parse_repodata, split_extension

Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class Base:
    filename: str
    group: str
    subdir: str
    raw: bytes


@dataclass(frozen=True)
class Mutant:
    filename: str
    group: str
    subdir: str
    raw: bytes
    applied: tuple[str, ...]  # what was done, for failure messages


# -- bases -------------------------------------------------------------------------------------

_H64 = "5" * 64
FALLBACK: tuple[Base, ...] = tuple(
    Base(filename, group, subdir, json.dumps(record, indent=indent).encode())
    for filename, group, subdir, record, indent in (
        ("numpy-2.0.0-py312h22e1c76_0.conda", "packages.conda", "linux-64", {
            "build": "py312h22e1c76_0", "build_number": 0,
            "constrains": ["numpy-base <0a0"],
            "depends": ["libblas >=3.9.0,<4.0a0", "libgcc-ng >=12", "python >=3.12,<3.13.0a0",
                        "python_abi 3.12.* *_cp312"],
            "license": "BSD-3-Clause", "license_family": "BSD", "md5": "1" * 32,
            "name": "numpy", "sha256": _H64, "size": 8_500_000, "subdir": "linux-64",
            "timestamp": 1718000000000, "version": "2.0.0"}, 1),
        ("python-3.12.4-h194c7f8_0_cpython.conda", "packages.conda", "linux-64", {
            "build": "h194c7f8_0_cpython", "build_number": 0,
            "constrains": ["python_abi 3.12.* *_cp312"],
            "depends": ["bzip2 >=1.0.8,<2.0a0", "libzlib >=1.2.13,<2.0a0", "tzdata"],
            "license": "Python-2.0", "md5": "2" * 32, "name": "python", "sha256": _H64,
            "size": 31_000_000, "subdir": "linux-64", "timestamp": 1717900000000,
            "version": "3.12.4", "purls": [], "python_site_packages_path": None}, None),
        ("requests-2.32.3-pyhd8ed1ab_0.conda", "packages.conda", "noarch", {
            "build": "pyhd8ed1ab_0", "build_number": 0,
            "depends": ["certifi >=2017.4.17", "python >=3.8"], "license": "Apache-2.0",
            "md5": "3" * 32, "name": "requests", "noarch": "python", "sha256": _H64,
            "size": 58_000, "subdir": "noarch", "timestamp": 1717000000000,
            "version": "2.32.3"}, 2),
        ("mkl-2017.0.1-0.tar.bz2", "packages", "linux-64", {
            "build": "0", "build_number": 0, "depends": [], "license": "proprietary - Intel",
            "md5": "4" * 32, "name": "mkl", "size": 135_000_000, "version": "2017.0.1",
            "track_features": "mkl", "features": "mkl", "arch": "x86_64",
            "platform": "linux"}, None),
        ("openssl-3.3.1-h4ab18f5_1.conda", "packages.conda", "linux-64", {
            "build": "h4ab18f5_1", "build_number": 1, "constrains": ["ca-certificates"],
            "depends": ["libgcc-ng >=12"], "license": "Apache-2.0", "md5": "6" * 32,
            "name": "openssl", "sha256": _H64, "size": 2_900_000, "subdir": "linux-64",
            "timestamp": 1719000000, "version": "3.3.1",
            "run_exports": {"weak": ["openssl >=3.3.1,<4.0a0"]}}, None),
    )
)  # fmt: skip


def real_bases(root: Path, limit: int = 400) -> tuple[Base, ...]:
    """Up to `limit` real records the gate admits as they are, spread over every real
    repodata file under `root` (nothing when it is absent)."""
    found: list[Base] = []
    paths = sorted(root.glob("repodata/*.json")) + sorted(root.glob("channels/**/repodata.json"))
    for path in paths:
        parsed = parse_repodata(path.read_bytes(), source=str(path))
        info = json.loads(bytes(parsed.top_level["info"])) if "info" in parsed.top_level else {}
        cache = GateCache()
        for filename, (group, raw) in parsed.entries.items():
            record = decode_record(filename, group, raw, cache)
            if isinstance(record, Record):
                subdir = record.fields.subdir or info.get("subdir") or "linux-64"
                found.append(Base(filename, group, subdir, bytes(raw)))
    step = max(1, len(found) // limit)
    return tuple(found[::step][:limit])


# -- values ----------------------------------------------------------------------------------

KNOWN_KEYS = (
    "name", "version", "build", "build_number", "depends", "constrains", "subdir", "size",
    "sha256", "md5", "timestamp", "indexed_timestamp", "license", "license_family",
    "track_features", "features", "noarch", "arch", "platform", "legacy_bz2_md5",
    "legacy_bz2_size", "purls", "python_site_packages_path", "run_exports", "extra_depends",
    "flags", "preferred_env", "date", "package_type", "record_version", "fn", "url", "channel",
    "summary", "zz_unknown",
)  # fmt: skip
NUMBER_KEYS = (
    "timestamp", "size", "build_number", "legacy_bz2_size", "indexed_timestamp",
    "record_version", "zz_unknown",
)  # fmt: skip
NUMBER_TOKENS = (
    "1e300", "1E300", "-1e300", "1e400", "18446744073709551616", "18446744073709551615",
    "9223372036854775808", "9223372036854775807", "4611686018427387904", "-1", "1.5", "1.0",
    "0", "-0", "-0.0", "1700000000.5", "1700000000", "1700000000000", "253402207201",
    "253402300799", "253402300800", "253402207199999", "99999999999999999999999999999999",
    "NaN", "Infinity", "-Infinity", "true", "null", "01", "+1", "1e", ".5", "0x10",
)  # fmt: skip
SPECS = (
    "!!!==", "", " ", "py* >=1", "*", "numpy >=1.2,,<2", "numpy[when=\"python >=3.9\"]",
    "x ==1.0=py_0", "conda-forge::numpy", "numpy >=1.0 # comment", "a[version='>=1']",
    "https://x.org/a-1-0.conda", "numpy ~=1.2", "numpy !=1.0", "numpy 1.0.*.*",
    "numpy >=1.0|<0.5", "a b c d", "python_abi 3.12.* *_cp312", "🐍 >=1",
    "a " + "(" * 5000 + ">=1" + ")" * 5000, "a (((>=1)))", "a " + ">=1," * 300,
    'a[when="b[when=\\"c\\"]"]', "a[version='>=1'][build=0]",
)  # fmt: skip
ODD_CHARS = "aZ09_.-+!=~ \t/\\\x00\x01\u2024\u2215\uff0f\u00e9\u0130\ud7ff\U0001f40d"


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False), st.text(ODD_CHARS, max_size=12),
        st.sampled_from(SPECS),
    )  # fmt: skip
    return st.recursive(
        leaves,
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def odd_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(ODD_CHARS, min_size=0, max_size=20),
        st.text(st.characters(codec="utf-8"), max_size=10),
        st.integers(1, 300).map(lambda n: "x" * n),
        st.sampled_from(("", "!!!==", "1.0-1", "1..0", "1!2.0", "2024a", "..", "A", "a b")),
    )


# -- mutations of the record (a dict); placeholders become raw tokens after serialising ------------


def _token(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    mark = f"@@token{len(marks)}@@"
    marks[mark] = draw(st.sampled_from(NUMBER_TOKENS))
    return mark


def swap_type(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    key = draw(st.sampled_from(sorted({*KNOWN_KEYS, *record})))
    record[key] = draw(json_values())
    return f"swap {key}"


def hostile_number(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    key = draw(st.sampled_from(NUMBER_KEYS))
    record[key] = _token(draw, record, marks)
    return f"number {key}={marks[record[key]]}"


def drop_key(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    if not record:
        return "drop nothing"
    key = draw(st.sampled_from(sorted(record)))
    del record[key]
    return f"drop {key}"


def bad_hex(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    key = draw(st.sampled_from(("sha256", "md5", "legacy_bz2_md5")))
    good = "0123456789abcdef" * 4
    record[key] = draw(
        st.sampled_from((good.upper(), good[:63], good + "0", "g" * 64, "", "../" * 10, good[:32]))
        | st.text("0123456789abcdefABCDEFxyz", max_size=70)
    )
    return f"hex {key}"


def odd_specs(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    key = draw(st.sampled_from(("depends", "constrains")))
    spec = draw(st.sampled_from(SPECS) | st.text(ODD_CHARS, max_size=15))
    specs = record.get(key)
    record[key] = [*specs, spec] if isinstance(specs, list) else [spec]
    return f"spec {key} {spec!r}"


def odd_identity(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    key = draw(st.sampled_from(("name", "version", "build", "subdir")))
    # characters a file name may hold, so that the name, version and build checks are reached
    record[key] = draw(odd_strings() | st.text("aZ09_.+!=-", min_size=1, max_size=12))
    return f"identity {key}={record[key]!r}"


def odd_enums(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> str:
    key, values = draw(
        st.sampled_from(
            (
                ("noarch", ("python", "generic", "", "Python", "weird", True, False, 1, None)),
                ("package_type", ("noarch_python", "NOARCH_PYTHON", "wheel", 5, None)),
                ("track_features", ("", "a b", ["a", 1], None, ["mkl"])),
                ("purls", (["pkg:pypi/x"], ["pypi/x"], ["pkg:"], [], None, "pkg:pypi/x")),
                ("run_exports", ({"weak": ["a"]}, {"weak": None}, [], ["a"], {"zz": 1}, None)),
                ("extra_depends", ({"x": ["a >=1"]}, {"x": "a"}, {"x": ["!!!"]}, [], None)),
                ("record_version", (0, 1, 2, -1, "1", None)),
            )
        )
    )
    record[key] = draw(st.sampled_from(values))
    return f"enum {key}={record[key]!r}"


STRUCTURAL = (
    swap_type, hostile_number, drop_key, bad_hex, odd_specs, odd_identity, odd_enums,
)  # fmt: skip


# -- mutations of the bytes ----------------------------------------------------------------------

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
BAD_BYTES = (
    b"\xff",
    b"\xc3",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xc0\xaf",
)
SURROGATES = (b"\\ud800", b"\\udfff", b"\\udc00", b"\\ud83d", b"\\ud800\\ud800", b"\\ud800\\u0041")


def _into_a_string(draw: Draw, raw: bytes, insert: bytes) -> bytes:
    spans = [m.span() for m in _STRING.finditer(raw)]
    if not spans:
        return raw
    start, end = draw(st.sampled_from(spans))
    at = draw(st.integers(start + 1, end - 1))
    return raw[:at] + insert + raw[at:]


def non_utf8(draw: Draw, raw: bytes) -> tuple[bytes, str]:
    insert = draw(st.sampled_from(BAD_BYTES))
    return _into_a_string(draw, raw, insert), f"bytes {insert!r}"


def lone_surrogate(draw: Draw, raw: bytes) -> tuple[bytes, str]:
    insert = draw(st.sampled_from(SURROGATES))
    return _into_a_string(draw, raw, insert), f"surrogate {insert!r}"


def _add_member(raw: bytes, member: bytes) -> bytes:
    end = raw.rstrip().rfind(b"}")
    if end < 0:
        return raw
    body = raw[:end].rstrip()
    comma = b"" if body.endswith(b"{") else b", "
    return body + comma + member + raw[end:]


def deep_nesting(draw: Draw, raw: bytes) -> tuple[bytes, str]:
    depth = draw(st.sampled_from((30, 31, 32, 33, 64, 126, 127, 128, 129, 200, 1200)))
    key = draw(st.sampled_from((b"zz_unknown", b"run_exports", b"depends", b"extra_depends")))
    if draw(st.booleans()):
        value = b"[" * depth + b"]" * depth
    else:
        value = b'{"a": ' * depth + b"1" + b"}" * depth
    return _add_member(raw, b'"' + key + b'": ' + value), f"nest {key!r} {depth}"


def repeat_key(draw: Draw, raw: bytes) -> tuple[bytes, str]:
    key = draw(st.sampled_from(KNOWN_KEYS))
    value = json.dumps(draw(json_values(3))).encode()
    if draw(st.booleans()):
        member = b'"run_exports": {"weak": [], "weak": ' + value + b"}"
    else:
        member = json.dumps(key).encode() + b": " + value
    return _add_member(raw, member), f"repeat {key}"


def mangle(draw: Draw, raw: bytes) -> tuple[bytes, str]:
    choice = draw(st.sampled_from(("truncate", "trail", "bom", "list", "nul")))
    if choice == "truncate" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))], "truncate"
    return {
        "trail": raw + b" x",
        "bom": b"\xef\xbb\xbf" + raw,
        "list": b"[" + raw + b"]",
        "nul": raw.replace(b'"', b'"\x00', 1),
    }.get(choice, raw), choice


RAW = (non_utf8, lone_surrogate, deep_nesting, repeat_key, mangle)


# -- file names -------------------------------------------------------------------------------

LOOKALIKES = ("\u2024", "\u2215", "\uff0f", "\u2025", "\uff0e", "\u0441", "\u200b", "\u00a0")


def path_trick(draw: Draw, filename: str) -> str:
    stem, ext = split_extension(filename)
    ext = ext or ".conda"
    tricks = (
        "../" + filename, "/" + filename, "a/" + filename, "..\\" + filename, "C:\\" + filename,
        stem + "\x00" + ext, filename + "\x00.txt", "." + filename, filename + " ",
        filename + "/", stem + ext.upper(), stem + ".conda.conda", stem + ".zip", ext, "", "..",
        stem.replace("-", LOOKALIKES[0], 1) + ext, "%2e%2e%2f" + filename,
        stem + draw(st.sampled_from(LOOKALIKES)) + ext,
    )  # fmt: skip
    return draw(st.sampled_from(tricks))


def long_name(draw: Draw, filename: str) -> str:
    stem, ext = split_extension(filename)
    ext = ext or ".conda"
    total = draw(st.sampled_from((200, 210, 211, 212, 240, 252, 253, 255, 256, 259, 260, 300)))
    pad = max(0, total - len(stem) - len(ext))
    return "x" * pad + stem + ext


# -- the strategy -----------------------------------------------------------------------------


def _serialise(draw: Draw, record: dict[str, Any], marks: dict[str, str]) -> bytes:
    style = draw(st.sampled_from(("compact", "spaced", "indent", "colon-space", "ascii-off")))
    options: dict[str, Any] = {
        "compact": {"separators": (",", ":")},
        "spaced": {},
        "indent": {"indent": 2},
        "colon-space": {"separators": (", ", " : ")},
        "ascii-off": {"ensure_ascii": False},
    }[style]
    text = json.dumps(record, **options)
    for mark, token in marks.items():
        text = text.replace(f'"{mark}"', token)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutants(
    draw: Draw,
    bases: Iterable[Base],
    structural: tuple[Callable[..., str], ...] = STRUCTURAL,
    raw_ops: tuple[Callable[..., tuple[bytes, str]], ...] = RAW,
    odd_file_names: bool = True,
) -> Mutant:
    """A real record with 0-3 mutations; the file name follows a changed identity or not."""
    base = draw(st.sampled_from(tuple(bases)))
    record = json.loads(base.raw)
    filename, group, subdir = base.filename, base.group, base.subdir
    marks: dict[str, str] = {}
    applied = [f"{base.filename}"]
    for op in draw(st.lists(st.sampled_from(structural), max_size=3)):
        applied.append(op(draw, record, marks))
    if draw(st.sampled_from((True, True, True, False))):  # the file name follows the record
        ext = split_extension(filename)[1] or ".conda"
        parts = (record.get("name"), record.get("version"), record.get("build"))
        if all(isinstance(p, str) for p in parts):
            filename = "-".join(parts) + ext
    raw = _serialise(draw, record, marks)
    for raw_op in draw(st.lists(st.sampled_from(raw_ops), max_size=2)) if raw_ops else ():
        raw, what = raw_op(draw, raw)
        applied.append(what)
    if not odd_file_names:
        return Mutant(filename, group, subdir, raw, tuple(applied))
    # most examples keep a plain file name and group, so that the record itself is judged
    filename_ops = draw(st.sampled_from(((),) * 6 + ((path_trick,), (long_name,))))
    for name_op in filename_ops:
        filename = name_op(draw, filename)
        applied.append(f"file name {filename!r}")
    if draw(st.sampled_from((False,) * 19 + (True,))):
        group = "packages" if group == "packages.conda" else "packages.conda"
        applied.append("other group")
    return Mutant(filename, group, subdir, raw, tuple(applied))
