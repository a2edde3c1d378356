"""Read lockfiles (pixi.lock, conda-lock.yml, explicit files) into the conda packages they pin."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

from mirror.core.lockfile_fields import (
    as_list,
    hex_digits,
    load_yaml,
    mapping,
    optional_hex,
    shown_scalar,
    shown_url,
    string_field,
    version_text,
)
from mirror.core.records import is_safe_filename
from mirror.errors import LockfileError

MAX_LOCKFILE_BYTES = 256 * 1024 * 1024
# pixi.lock versions read here; py-rattler 0.28 already writes version 7 (a top-level
# `platforms:` list; the package entries are shaped as in version 6)
PIXI_VERSIONS = range(4, 8)
CONDA_LOCK_VERSION = 1
_SCHEMES = ("https", "http", "file")
_SUBDIR = re.compile(r"[a-z0-9_-]+")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class LockedPackage:
    """One conda package a lockfile pins."""

    url: str  # the package URL as written (pixi's local paths become file:// URLs)
    channel_url: str  # url minus the trailing "/<subdir>/<filename>" (no trailing slash)
    subdir: str
    filename: str  # a .conda or .tar.bz2 basename
    sha256: str | None  # lowercase hex
    md5: str | None
    platform: str | None  # the first platform (environment platform) that lists it, if known


@dataclass(frozen=True)
class Lockfile:
    path: Path
    kind: str  # "pixi", "conda-lock" or "explicit"
    packages: tuple[LockedPackage, ...]  # conda packages, deduplicated by url, in file order
    skipped: int  # pypi / non-conda entries ignored


def parse_lockfile(data: bytes, source: str) -> Lockfile:
    """Parse lockfile bytes; the format is told by content. `source` names the file in errors."""
    if len(data) > MAX_LOCKFILE_BYTES:
        raise LockfileError(
            f"{source}: larger than {MAX_LOCKFILE_BYTES // 2**20} MiB, which no real lockfile "
            "is; refusing to read it"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LockfileError(
            f"{source}: not UTF-8 text (byte {exc.start}); expected a pixi.lock, "
            "conda-lock.yml or explicit environment file"
        ) from exc
    lines = text.splitlines()
    if any(line.strip() == "@EXPLICIT" for line in lines):
        return _parse_explicit(lines, source)
    document = load_yaml(text, source)
    if isinstance(document, dict) and "environments" in document:
        return _parse_pixi(document, source)
    if isinstance(document, dict) and "package" in document:
        return _parse_conda_lock(document, source)
    raise LockfileError(
        f"{source}: not a lockfile this program reads; expected a pixi.lock (version 4 to 7), "
        "a conda-lock.yml (version 1) or an explicit file (`conda list --explicit`, "
        "`conda-lock render`) with an @EXPLICIT line"
    )


# --- explicit files ---------------------------------------------------------------------------


def _parse_explicit(lines: list[str], source: str) -> Lockfile:
    platform: str | None = None
    seen_marker = False
    skipped = 0
    found: list[LockedPackage] = []
    for number, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        where = f"{source}: line {number}"
        if line == "@EXPLICIT":
            seen_marker = True
        elif not line:
            continue
        elif line.startswith("#"):
            # both `conda list --explicit` and `conda-lock render` write `# platform: <subdir>`;
            # conda-lock keeps pip packages as `# pip <name> @ <url>` comments
            comment = line[1:].strip()
            if comment.startswith("platform:") and not seen_marker:
                platform = comment.split(":", 1)[1].strip() or None
            elif comment.startswith("pip ") and seen_marker:
                skipped += 1
        elif not seen_marker:
            raise LockfileError(
                f"{where}: text before the @EXPLICIT line must be comments; this is not an "
                "explicit environment file as `conda list --explicit` writes it"
            )
        else:
            url, sha256, md5 = _split_explicit_line(line, where)
            found.append(_package(url, where, sha256=sha256, md5=md5, platform=platform))
    return Lockfile(Path(source), "explicit", _dedup(found, source), skipped)


def _split_explicit_line(line: str, where: str) -> tuple[str, str | None, str | None]:
    url, _, fragment = line.partition("#")
    if not fragment:
        return url, None, None
    if fragment.startswith("sha256:"):
        return url, hex_digits(fragment[7:], _SHA256, "sha256", where), None
    if len(fragment) == 64:
        return url, hex_digits(fragment, _SHA256, "sha256", where), None
    return url, None, hex_digits(fragment, _MD5, "md5", where)


# --- pixi.lock --------------------------------------------------------------------------------


def _parse_pixi(document: dict[Any, Any], source: str) -> Lockfile:
    version = document.get("version")
    if type(version) is not int or version not in PIXI_VERSIONS:
        raise LockfileError(
            f"{source}: {version_text(version, 'pixi.lock')} is not supported (this "
            f"program reads versions {PIXI_VERSIONS.start} to {PIXI_VERSIONS.stop - 1}); "
            "regenerate it with a pixi release that writes one of those, or upgrade mirror"
        )
    platforms = _pixi_platforms(document, source)
    entries = as_list(document.get("packages", []), f"{source}: 'packages'")
    found: list[LockedPackage] = []
    skipped = 0
    for number, entry in enumerate(entries, start=1):
        where = f"{source}: packages entry {number}"
        item = mapping(entry, where)
        location = _pixi_conda_location(item, version, where)
        if location is None:
            skipped += 1
            continue
        url = _pixi_url(location, where)
        if url is None:  # a source package (pixi build): there is no archive to mirror
            skipped += 1
            continue
        found.append(
            _package(
                url,
                where,
                sha256=optional_hex(item, "sha256", _SHA256, where),
                md5=optional_hex(item, "md5", _MD5, where),
                platform=platforms.get(location),
            )
        )
    return Lockfile(Path(source), "pixi", _dedup(found, source), skipped)


def _pixi_platforms(document: Mapping[Any, Any], source: str) -> dict[str, str]:
    """Package location -> the first environment platform that lists it."""
    first: dict[str, str] = {}
    environments = mapping(document["environments"], f"{source}: 'environments'")
    for env_name, env in environments.items():
        where = f"{source}: environment {shown_scalar(env_name)}"
        by_platform = mapping(mapping(env, where).get("packages", {}), f"{where}: 'packages'")
        for platform, refs in by_platform.items():
            at = f"{where}, platform {shown_scalar(platform)}"
            for ref in as_list(refs, at):
                location = mapping(ref, at).get("conda")
                if isinstance(location, str) and isinstance(platform, str):
                    first.setdefault(location, platform)
    return first


def _pixi_conda_location(item: Mapping[Any, Any], version: int, where: str) -> str | None:
    """The location of a conda entry, or None for a pypi entry."""
    if version == 4:
        kind = item.get("kind")
        if kind == "pypi":
            return None
        if kind != "conda":
            raise LockfileError(f"{where}: 'kind' must be conda or pypi; the file is damaged")
        return string_field(item, "url", where)
    if "conda" in item:
        return string_field(item, "conda", where)
    if "pypi" in item:
        return None
    raise LockfileError(f"{where}: neither a 'conda' nor a 'pypi' entry; the file is damaged")


def _pixi_url(location: str, where: str) -> str | None:
    """pixi writes packages of a file:// channel as absolute paths and source packages as
    relative paths; only archives behind a URL (or an absolute path) can be mirrored."""
    if "://" in location:
        return location
    if location.startswith("/"):
        path = PurePosixPath(location)
        if ".." in path.parts:
            raise LockfileError(f"{where}: the local path goes up with '..'; refused")
        return "file://" + quote(location)
    if location.endswith((".conda", ".tar.bz2")):
        raise LockfileError(
            f"{where}: the package is a relative local path, which mirror cannot fetch; "
            "lock the environment against a channel URL (https:// or file://)"
        )
    return None


# --- conda-lock.yml ---------------------------------------------------------------------------


def _parse_conda_lock(document: dict[Any, Any], source: str) -> Lockfile:
    version = document.get("version")
    if type(version) is not int or version != CONDA_LOCK_VERSION:
        raise LockfileError(
            f"{source}: {version_text(version, 'conda-lock')} is not supported (this "
            f"program reads version {CONDA_LOCK_VERSION}, the unified conda-lock.yml); "
            "regenerate it with a current conda-lock"
        )
    found: list[LockedPackage] = []
    skipped = 0
    for number, entry in enumerate(as_list(document["package"], f"{source}: 'package'"), start=1):
        where = f"{source}: package entry {number}"
        item = mapping(entry, where)
        manager = item.get("manager")
        if manager == "pip":
            skipped += 1
            continue
        if manager != "conda":
            raise LockfileError(f"{where}: 'manager' must be conda or pip; the file is damaged")
        hashes = mapping(item.get("hash", {}), f"{where}: 'hash'")
        platform = item.get("platform")
        if platform is not None and not isinstance(platform, str):
            raise LockfileError(f"{where}: 'platform' must be a string; the file is damaged")
        found.append(
            _package(
                string_field(item, "url", where),
                where,
                sha256=optional_hex(hashes, "sha256", _SHA256, where),
                md5=optional_hex(hashes, "md5", _MD5, where),
                platform=platform,
            )
        )
    return Lockfile(Path(source), "conda-lock", _dedup(found, source), skipped)


# --- shared pieces ----------------------------------------------------------------------------


def _package(
    url: str, where: str, *, sha256: str | None, md5: str | None, platform: str | None
) -> LockedPackage:
    """Split and check a package URL; anything that is not a plain channel URL is refused."""
    shown = shown_url(url)
    if _UNSAFE_CHARS.search(url):
        raise LockfileError(f"{where}: the URL {shown} holds spaces or control characters")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise LockfileError(
            f"{where}: {shown} is not an https://, http:// or file:// URL; only packages "
            "behind such URLs can be mirrored"
        )
    if "?" in rest or "#" in rest:
        raise LockfileError(f"{where}: the URL {shown} has a query or fragment; refused")
    host, _, path = rest.partition("/")
    if scheme.lower() != "file" and not host.rpartition("@")[2]:
        raise LockfileError(f"{where}: the URL {shown} has no host")
    parts = path.rsplit("/", 2)
    filename_raw = parts[-1]
    subdir_raw = parts[-2] if len(parts) > 1 else ""
    head = parts[0] if len(parts) > 2 else ""
    subdir, filename = unquote(subdir_raw), unquote(filename_raw)
    if not is_safe_filename(filename):
        raise LockfileError(
            f"{where}: {shown} does not end in a plain .conda or .tar.bz2 file name "
            "(a path, '..' or unexpected characters); refused"
        )
    if not _SUBDIR.fullmatch(subdir):
        raise LockfileError(
            f"{where}: {shown} has no plain subdir (like linux-64 or noarch) before its file "
            "name; refused"
        )
    channel_url = url[: len(url) - len(subdir_raw) - len(filename_raw) - 2]
    if ".." in unquote(head).split("/"):
        raise LockfileError(f"{where}: the URL {shown} goes up with '..'; refused")
    return LockedPackage(url, channel_url, subdir, filename, sha256, md5, platform)


def _dedup(found: list[LockedPackage], source: str) -> tuple[LockedPackage, ...]:
    """One package per URL, first position kept; hashes missing there are taken from repeats,
    hashes that disagree mean the lockfile cannot be trusted."""
    by_url: dict[str, LockedPackage] = {}
    for package in found:
        kept = by_url.get(package.url)
        if kept is None:
            by_url[package.url] = package
            continue
        for field in ("sha256", "md5"):
            old, new = getattr(kept, field), getattr(package, field)
            if old is not None and new is not None and old != new:
                raise LockfileError(
                    f"{source}: {shown_url(package.url)} is listed twice with different "
                    f"{field} values; the lockfile is damaged: regenerate it"
                )
        by_url[package.url] = replace(
            kept, sha256=kept.sha256 or package.sha256, md5=kept.md5 or package.md5
        )
    return tuple(by_url.values())
