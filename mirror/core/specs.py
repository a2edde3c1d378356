"""conda MatchSpec and version semantics, delegated to py-rattler (never re-implemented).

Two conda behaviours py-rattler 0.28 does not have are added here: `license` and
`license_family` bracket keys match as case-insensitive globs (conda's `[license=GPL*]`), and
a spec that constrains only the name is answered from the name alone, so most records never
need a rattler PackageRecord built for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cmp_to_key
from typing import Any

from mirror.core.records import RecordFields
from mirror.errors import SpecError

_NAME = re.compile(r"\s*([A-Za-z0-9_.*\-]+)")
_LICENSE_KEYS = ("license", "license_family")


@dataclass(frozen=True)
class Spec:
    """A parsed filter spec. `text` is what the user wrote."""

    text: str
    name_pattern: str
    license_globs: tuple[str, ...] = ()
    license_family_globs: tuple[str, ...] = ()
    # None when the spec constrains nothing but the name (and licences).
    rattler_spec: Any = field(default=None, compare=False, repr=False)

    def matches_name(self, name: str) -> bool:
        return fnmatchcase(name.lower(), self.name_pattern)

    def matches(self, fields: RecordFields, rattler_record: RattlerRecordCache) -> bool:
        if not self.matches_name(fields.name):
            return False
        if self.license_globs and not _any_glob(fields.license, self.license_globs):
            return False
        if self.license_family_globs and not _any_glob(
            fields.license_family, self.license_family_globs
        ):
            return False
        if self.rattler_spec is None:
            return True
        record = rattler_record.get(fields)
        return record is not None and bool(self.rattler_spec.matches(record))


class SpecsByName:
    """Specs looked up by the package name they may match: a subdir holds thousands of
    records and a filter hundreds of specs, and most specs name one package exactly, so only
    those of the record's name and the glob ones are tried (not every spec for every record)."""

    def __init__(self, specs: tuple[Spec, ...]) -> None:
        self._exact: dict[str, list[Spec]] = {}
        self._globs: list[Spec] = []
        for spec in specs:
            if any(c in spec.name_pattern for c in "*?["):
                self._globs.append(spec)
            else:
                self._exact.setdefault(spec.name_pattern, []).append(spec)
        self._found: dict[str, tuple[Spec, ...]] = {}

    def for_name(self, name: str) -> tuple[Spec, ...]:
        found = self._found.get(name)
        if found is None:
            key = name.lower()
            found = (*self._exact.get(key, ()), *(s for s in self._globs if s.matches_name(name)))
            self._found[name] = found
        return found


def parse_spec(text: str) -> Spec:
    """Parse a conda MatchSpec string for filtering; raises SpecError with a reason."""
    from rattler import MatchSpec  # heavy import, only when a config has specs

    if not isinstance(text, str) or not text.strip():
        raise SpecError("a spec must be a non-empty string such as 'numpy >=1.26'")
    if "::" in text:
        raise SpecError(
            f"'{text}': channel-qualified specs are not filters; the channel is the one mirrored"
        )
    remainder, license_globs, family_globs = _split_license_keys(text)
    match = _NAME.match(remainder)
    if not match:
        raise SpecError(f"'{text}': a spec starts with a package name or a name glob such as 'py*'")
    name_pattern = match.group(1).lower()
    try:
        parsed = MatchSpec(remainder, exact_names_only=False)
    except Exception as exc:  # rattler raises its own exception types
        raise SpecError(f"'{text}': {exc}") from exc
    name_only = str(parsed) == name_pattern
    return Spec(
        text=text,
        name_pattern=name_pattern,
        license_globs=license_globs,
        license_family_globs=family_globs,
        rattler_spec=None if name_only else parsed,
    )


def _any_glob(value: str | None, globs: Iterable[str]) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    return any(fnmatchcase(lowered, glob) for glob in globs)


def license_matches(fields: RecordFields, globs: Iterable[str]) -> bool:
    """True when the record's license or license_family matches one of the (lowercase) globs."""
    globs = tuple(globs)
    return _any_glob(fields.license, globs) or _any_glob(fields.license_family, globs)


def _split_license_keys(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Take `license=` / `license_family=` out of a trailing `[...]` and return the rest."""
    stripped = text.strip()
    open_at = stripped.find("[")
    if open_at < 0 or not stripped.endswith("]"):
        return stripped, (), ()
    head, body = stripped[:open_at], stripped[open_at + 1 : -1]
    kept: list[str] = []
    found: dict[str, list[str]] = {key: [] for key in _LICENSE_KEYS}
    for item in _split_bracket_items(body):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key in found:
            found[key].append(value.strip().strip("'\"").lower())
        elif item.strip():
            kept.append(item.strip())
    rest = f"{head}[{','.join(kept)}]" if kept else head
    return rest.strip() or "*", tuple(found["license"]), tuple(found["license_family"])


def _split_bracket_items(body: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    quote = ""
    for char in body:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items


class RattlerRecordCache:
    """Builds the py-rattler PackageRecord of one record at most once, and only when needed."""

    def __init__(self) -> None:
        self._key: RecordFields | None = None
        self._value: Any = None

    def get(self, fields: RecordFields) -> Any:
        if self._key is not fields:
            self._key, self._value = fields, to_rattler_record(fields)
        return self._value


def to_rattler_record(fields: RecordFields) -> Any:
    """A py-rattler PackageRecord for MatchSpec matching, or None if rattler rejects the record."""
    from rattler import BuildString, PackageRecord

    try:
        return PackageRecord(
            name=fields.name,
            version=fields.version,
            build=BuildString(fields.build),
            build_number=fields.build_number,
            subdir=fields.subdir or "noarch",
            license=fields.license,
            license_family=fields.license_family,
            size=fields.size,
            sha256=bytes.fromhex(fields.sha256) if fields.sha256 else None,
            md5=bytes.fromhex(fields.md5) if fields.md5 else None,
        )
    except Exception:  # an unparseable version or name cannot match any spec
        return None


def newest_versions(versions: Iterable[str], count: int) -> set[str]:
    """The version strings that belong to the `count` highest distinct conda versions.

    Equal versions written differently (`1.0` and `1.0.0`) count once, as conda orders them.
    Strings rattler cannot parse sort below every valid version.
    """
    from rattler import Version

    parsed: dict[str, Any] = {}
    for text in set(versions):
        try:
            parsed[text] = Version(text)
        except Exception:
            parsed[text] = None

    def compare(a: str, b: str) -> int:
        va, vb = parsed[a], parsed[b]
        if va is None or vb is None:
            return (va is not None) - (vb is not None) or (a > b) - (a < b)
        return int(va > vb) - int(va < vb)

    ordered = sorted(parsed, key=cmp_to_key(compare), reverse=True)
    kept: set[str] = set()
    distinct = 0
    previous: Any = None
    for text in ordered:
        current = parsed[text]
        if distinct == 0 or current is None or previous is None or current != previous:
            distinct += 1
            previous = current
        if distinct > count:
            break
        kept.add(text)
    return kept
