"""The smaller index files: run_exports.json (CEP-12), channeldata.json (CEP-38) and
current_repodata.json (newest versions plus what their dependencies need)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from mirror.core.records import RecordFields, expected_group
from mirror.core.specs import newest_versions, to_rattler_record

# the about.json fields channeldata carries (CEP-38)
ABOUT_KEYS = (
    "description",
    "dev_url",
    "doc_source_url",
    "doc_url",
    "home",
    "icon_url",
    "license",
    "source_git_url",
    "source_url",
    "summary",
)


class RecordSummary(msgspec.Struct, frozen=True):
    """What the side indexes read from a record."""

    name: str
    version: str
    build: str = ""
    build_number: int = 0
    subdir: str | None = None
    timestamp: int | float | None = None
    license: str | None = None
    license_family: str | None = None
    depends: list[str] = []


def summarize(raw: bytes) -> RecordSummary | None:
    try:
        return msgspec.json.decode(raw, type=RecordSummary)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def run_exports_json(subdir: str, entries: Iterable[tuple[str, bytes]]) -> bytes:
    """CEP-12: every package of the subdir, `{}` for those without run_exports.

    Entries are (file name, run_exports as JSON with sorted keys); the document is assembled
    from those bytes, sorted by file name, without decoding them again."""
    groups: dict[str, list[bytes]] = {"packages": [], "packages.conda": []}
    for filename, raw in sorted(entries):
        line = msgspec.json.encode(filename) + b':{"run_exports":' + raw + b"}"
        groups[expected_group(filename)].append(line)
    info = msgspec.json.encode({"subdir": subdir, "version": 1}, order="sorted")
    parts = [b'"info":' + info]
    parts += [
        msgspec.json.encode(g) + b":{" + b",".join(lines) + b"}" for g, lines in groups.items()
    ]
    return b"{" + b",".join(parts) + b"}\n"


@dataclass(frozen=True)
class ChannelEntry:
    subdir: str
    summary: RecordSummary
    about: Mapping[str, Any] | None
    run_exports: Mapping[str, Any] | None


def channeldata_document(subdirs: Iterable[str], packages: Mapping[str, Any]) -> bytes:
    """CEP-38: per package name, the newest version, where it exists, and what it is about."""
    document = {"channeldata_version": 1, "packages": packages, "subdirs": sorted(set(subdirs))}
    return msgspec.json.encode(document, order="sorted") + b"\n"


def channeldata_packages(entries: Iterable[ChannelEntry]) -> dict[str, Any]:
    """The `packages` entries of the names these records belong to (all records of each)."""
    by_name: dict[str, list[ChannelEntry]] = defaultdict(list)
    for entry in entries:
        by_name[entry.summary.name].append(entry)
    packages: dict[str, Any] = {}
    for name, members in by_name.items():
        newest = newest_versions((m.summary.version for m in members), 1)
        latest = [m for m in members if m.summary.version in newest]
        head = max(latest, key=lambda m: (m.summary.build_number, m.summary.timestamp or 0))
        info: dict[str, Any] = {
            "version": head.summary.version,
            "subdirs": sorted({m.subdir for m in members}),
            "timestamp": max(int(m.summary.timestamp or 0) for m in members) or None,
            "license": head.summary.license,
            "license_family": head.summary.license_family,
        }
        about = next((m.about for m in latest if m.about), None) or {}
        info.update({key: about[key] for key in ABOUT_KEYS if about.get(key) is not None})
        run_exports = {m.summary.version: dict(m.run_exports) for m in members if m.run_exports}
        if run_exports:
            info["run_exports"] = run_exports
        packages[name] = {k: v for k, v in info.items() if v is not None}
    return packages


def current_selection(records: Mapping[str, RecordSummary]) -> set[str]:
    """File names for current_repodata.json: all builds of each name's newest version, plus
    the newest records that dependencies of those need when the newest cannot satisfy them."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for filename, summary in records.items():
        by_name[summary.name].append(filename)
    chosen: set[str] = set()
    for files in by_name.values():
        newest = newest_versions((records[f].version for f in files), 1)
        chosen.update(f for f in files if records[f].version in newest)
    pending = list(chosen)
    rattler_records: dict[str, Any] = {}

    def as_rattler(filename: str) -> Any:
        if filename not in rattler_records:
            summary = records[filename]
            rattler_records[filename] = to_rattler_record(
                RecordFields(
                    name=summary.name,
                    version=summary.version,
                    build=summary.build,
                    build_number=summary.build_number,
                    subdir=summary.subdir or "",
                )
            )
        return rattler_records[filename]

    from rattler import MatchSpec

    while pending:
        filename = pending.pop()
        for dependency in records[filename].depends:
            spec = _parse_dependency(dependency, MatchSpec)
            candidates = by_name.get(spec.name.normalized) if spec is not None else None
            if not candidates:
                continue  # in another subdir (noarch) or channel
            assert spec is not None
            if any(f in chosen and spec.matches(as_rattler(f)) for f in candidates):
                continue
            matching = [f for f in candidates if spec.matches(as_rattler(f))]
            if not matching:
                continue
            best = newest_versions((records[f].version for f in matching), 1)
            for extra in matching:
                if records[extra].version in best and extra not in chosen:
                    chosen.add(extra)
                    pending.append(extra)
    return chosen


def _parse_dependency(text: str, match_spec: Any) -> Any:
    """A dependency rattler cannot parse cannot pull anything in."""
    try:
        return match_spec(text)
    except Exception:
        return None
