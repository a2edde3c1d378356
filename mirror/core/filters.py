"""Filtering rules -> the records of one upstream subdir that a channel mirrors.

Rule order (docs/configuration.md states the same):
  1. include   a record is a candidate if it matches any include spec (no include = all)
  2. exclude   a candidate matching any exclude spec is dropped
  3. licences  deny globs drop; when allow globs exist, only matching licences stay
  4. dates     not_older_than / not_newer_than / max_age_days / cooldown_days on `timestamp`
  5. size      records larger than max_package_size are dropped
  6. latest    per package name, keep all builds of the keep_latest highest versions left
  7. format    where a .conda and a .tar.bz2 of the same build both remain, keep the .conda
               (unless prefer_conda is false)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.core.gate import GateCache, admit
from mirror.core.records import (
    Record,
    Refusal,
    RefusalReason,
    UpstreamRepodata,
    name_from_filename,
    split_extension,
)
from mirror.core.specs import (
    RattlerRecordCache,
    Spec,
    SpecsByName,
    license_matches,
    newest_versions,
)

DAY_MS = 86_400_000


@dataclass(frozen=True)
class FilterRules:
    include: tuple[Spec, ...] = ()
    exclude: tuple[Spec, ...] = ()
    license_allow: tuple[str, ...] = ()  # lowercase globs over license and license_family
    license_deny: tuple[str, ...] = ()
    not_older_than_ms: int | None = None
    not_newer_than_ms: int | None = None
    max_age_days: float | None = None
    cooldown_days: float | None = None
    max_package_size_bytes: int | None = None
    keep_latest: int | None = None
    prefer_conda: bool = True


@dataclass(frozen=True)
class Selection:
    """What the rules selected from one upstream subdir.

    `valid_until_ms` is the first moment a time-based rule (cooldown, max age) could change its
    verdict on some record; before it, an unchanged upstream needs no re-filtering.
    """

    records: tuple[Record, ...]
    refused: tuple[Refusal, ...]
    skipped: int
    valid_until_ms: int | None


def select(
    repodata: UpstreamRepodata, rules: FilterRules, now_ms: int, *, subdir: str
) -> Selection:
    """The records of one upstream subdir the rules keep; every candidate passes the gate."""
    candidates, refused, skipped = _candidates(repodata, rules, subdir)
    after_rules: list[Record] = []
    changes: list[int] = []
    for record in candidates:
        try:
            verdict, change_at = _date_verdict(record, rules, now_ms)
            verdict = verdict and _passes_size(record, rules)
        except Exception as exc:  # one record must never stop its subdir (DESIGN rule 7)
            refused.append(_unexpected(record, "the date and size rules", exc))
            skipped -= 1  # counted below among the candidates not kept; it was refused instead
            continue
        if change_at is not None:
            changes.append(change_at)
        if verdict:
            after_rules.append(record)
    kept = _keep_latest(after_rules, rules.keep_latest)
    if rules.prefer_conda:
        kept = _prefer_conda(kept)
    return Selection(
        records=tuple(kept),
        refused=tuple(refused),
        skipped=skipped + len(candidates) - len(kept),
        valid_until_ms=min(changes) if changes else None,
    )


def _candidates(
    repodata: UpstreamRepodata, rules: FilterRules, subdir: str
) -> tuple[list[Record], list[Refusal], int]:
    """Rules 1-3. Records whose file name no include spec could match are not even decoded."""
    out: list[Record] = []
    refused: list[Refusal] = []
    skipped = 0
    cache = RattlerRecordCache()
    gate_cache = GateCache()
    include, exclude = SpecsByName(rules.include), SpecsByName(rules.exclude)
    for filename, (group, raw) in repodata.entries.items():
        if rules.include:
            implied = name_from_filename(filename) or ""
            if not implied or not include.for_name(implied):
                skipped += 1
                continue
        decoded = admit(filename, raw, group=group, subdir=subdir, cache=gate_cache)
        if isinstance(decoded, Refusal):
            refused.append(decoded)
            continue
        try:
            wanted = _passes_specs_and_licences(decoded, rules, (include, exclude), cache)
        except Exception as exc:  # one record must never stop its subdir (DESIGN rule 7)
            refused.append(_unexpected(decoded, "the include/exclude/licence rules", exc))
            continue
        if wanted:
            out.append(decoded)
        else:
            skipped += 1
    return out, refused, skipped


def _passes_specs_and_licences(
    record: Record,
    rules: FilterRules,
    specs: tuple[SpecsByName, SpecsByName],
    cache: RattlerRecordCache,
) -> bool:
    """Rules 1-3 for a record whose name an include spec may match."""
    fields = record.fields
    include, exclude = (s.for_name(fields.name) for s in specs)
    if rules.include and not any(spec.matches(fields, cache) for spec in include):
        return False
    if any(spec.matches(fields, cache) for spec in exclude):
        return False
    if rules.license_deny and license_matches(fields, rules.license_deny):
        return False
    return not rules.license_allow or license_matches(fields, rules.license_allow)


def _unexpected(record: Record, step: str, exc: Exception) -> Refusal:
    return Refusal(
        record.filename,
        f"could not be handled by {step} ({type(exc).__name__}: {exc}); refused, the rest "
        "of the subdir goes on (please report this)",
        RefusalReason.INTERNAL_ERROR,
    )


def removal_reason(record: Record, rules: FilterRules, now_ms: int) -> str:
    """Which of rules 2-7 keeps a record out, in words (for explaining an unmet dependency).

    Rules 6 and 7 compare a record with its siblings, so a record that passes rules 2-5 on its
    own was removed by one of them."""
    cache = RattlerRecordCache()
    fields = record.fields
    for spec in rules.exclude:
        if spec.matches(fields, cache):
            return f"exclude '{spec.text}'"
    if rules.license_deny and license_matches(fields, rules.license_deny):
        return f"license deny ({fields.license or fields.license_family})"
    if rules.license_allow and not license_matches(fields, rules.license_allow):
        return f"license allow (its licence is {fields.license or 'unknown'})"
    if not _date_verdict(record, rules, now_ms)[0]:
        return "the date rules (not_older_than, not_newer_than, max_age_days, cooldown_days)"
    if not _passes_size(record, rules):
        return f"max_package_size ({fields.size} bytes)"
    if rules.keep_latest is not None:
        return f"keep_latest {rules.keep_latest} (or prefer_conda)"
    return "prefer_conda (the .conda of the same build is kept)"


def _date_verdict(record: Record, rules: FilterRules, now_ms: int) -> tuple[bool, int | None]:
    """Rule 4. A record without a timestamp counts as very old: it passes the upper bounds and
    the cooldown, and fails the lower bounds."""
    ts = record.timestamp_ms
    change_at: list[int] = []
    ok = True
    if rules.not_older_than_ms is not None:
        ok = ok and ts is not None and ts >= rules.not_older_than_ms
    if rules.not_newer_than_ms is not None and ts is not None:
        ok = ok and ts <= rules.not_newer_than_ms
    if rules.max_age_days is not None:
        if ts is None:
            ok = False
        else:
            expires = ts + int(rules.max_age_days * DAY_MS)
            ok = ok and now_ms <= expires
            if now_ms <= expires:
                change_at.append(expires + 1)
    if rules.cooldown_days is not None and ts is not None:
        ripe = ts + int(rules.cooldown_days * DAY_MS)
        ok = ok and now_ms >= ripe
        if now_ms < ripe:
            change_at.append(ripe)
    return ok, (min(change_at) if change_at else None)


def _passes_size(record: Record, rules: FilterRules) -> bool:
    limit = rules.max_package_size_bytes
    return limit is None or (record.fields.size or 0) <= limit


def _keep_latest(records: list[Record], count: int | None) -> list[Record]:
    """Rule 6: all builds of the `count` highest versions of each name."""
    if count is None:
        return records
    by_name: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_name[record.fields.name].append(record)
    kept: list[Record] = []
    for members in by_name.values():
        newest = newest_versions((r.fields.version for r in members), count)
        kept.extend(r for r in members if r.fields.version in newest)
    return kept


def _prefer_conda(records: Iterable[Record]) -> list[Record]:
    """Rule 7: conda itself prefers the .conda when both formats of one build exist."""
    records = list(records)
    conda_stems = {split_extension(r.filename)[0] for r in records if r.filename.endswith(".conda")}
    return [
        r
        for r in records
        if r.filename.endswith(".conda") or split_extension(r.filename)[0] not in conda_stems
    ]
