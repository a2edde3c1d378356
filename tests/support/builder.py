"""Build real, byte-for-byte deterministic conda packages and channels for tests.

Tests need genuine package files (readable by conda_package_streaming, installable by
rattler) so that checksums, sizes and formats are exercised for real, and they need the
same spec to give the same bytes every run so that hashes can be asserted on.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import zstandard

__all__ = [
    "BZ2_LEVEL",
    "FIXED_MTIME",
    "ZSTD_LEVEL",
    "PackageSpec",
    "build_channel",
    "build_package",
    "package_bytes",
    "record_for",
    "repodata_bytes",
    "write_repodata",
]

# Every archive member gets this mtime (2023-11-14T22:13:20Z) so output never depends
# on the wall clock.
FIXED_MTIME = 1_700_000_000
# The zip local headers store DOS time; this is FIXED_MTIME in UTC.
_ZIP_DATE_TIME = (2023, 11, 14, 22, 13, 20)
# Fixed levels keep the output stable; 3 is plenty for tiny fixtures and keeps
# thousands of builds fast.
ZSTD_LEVEL = 3
BZ2_LEVEL = 9

_FORMATS = (".conda", ".tar.bz2")


@dataclass(frozen=True)
class PackageSpec:
    """What a test package looks like; every field ends up in the file or its record."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    subdir: str = "noarch"
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    license: str | None = "MIT"
    license_family: str | None = None
    timestamp_ms: int | None = 1_700_000_000_000
    noarch: str | None = None
    fmt: str = ".conda"
    files: Mapping[str, bytes] | None = None
    run_exports: Mapping[str, Any] | None = None
    extra_index: Mapping[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The file name conda requires: name-version-build plus the extension."""
        return f"{self.name}-{self.version}-{self.build}{self.fmt}"

    @property
    def stem(self) -> str:
        """The file name without extension, used for the .conda inner archives."""
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def noarch_kind(self) -> str | None:
        """noarch as written to index.json: packages in noarch/ must declare it."""
        if self.noarch is not None:
            return self.noarch
        return "generic" if self.subdir == "noarch" else None

    def payload(self) -> dict[str, bytes]:
        """The files installed into a prefix; a small text file unless given."""
        if self.files is not None:
            return dict(self.files)
        text = f"{self.name} {self.version} {self.build}\n"
        return {f"share/{self.name}/{self.version}.txt": text.encode()}

    def index_json(self) -> dict[str, Any]:
        """info/index.json contents; the record is this plus md5, sha256 and size."""
        index: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
        }
        if self.constrains:
            index["constrains"] = list(self.constrains)
        if self.license is not None:
            index["license"] = self.license
        if self.license_family is not None:
            index["license_family"] = self.license_family
        index["subdir"] = self.subdir
        if self.timestamp_ms is not None:
            index["timestamp"] = self.timestamp_ms
        noarch = self.noarch_kind
        if noarch is not None:
            index["noarch"] = noarch
        index.update(self.extra_index)
        return index


def _json_bytes(obj: Any) -> bytes:
    """Stable JSON: sorted keys, fixed indent, trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _check_payload_path(path: str) -> None:
    """Refuse payload paths that would escape the prefix or collide with info/."""
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or pure.parts[0] == "info"
    ):
        raise ValueError(f"bad payload path {path!r}")


def _tar(members: Iterable[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar with fixed ownership and times, members in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = FIXED_MTIME
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zstd(data: bytes) -> bytes:
    """One zstd frame with the content size in its header, at the fixed level."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(data)


def _info_members(spec: PackageSpec, payload: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    """The info/ files, sorted by name."""
    paths = sorted(payload)
    info: dict[str, bytes] = {
        "info/index.json": _json_bytes(spec.index_json()),
        "info/paths.json": _json_bytes(
            {
                "paths": [
                    {
                        "_path": p,
                        "path_type": "hardlink",
                        "sha256": hashlib.sha256(payload[p]).hexdigest(),
                        "size_in_bytes": len(payload[p]),
                    }
                    for p in paths
                ],
                "paths_version": 1,
            }
        ),
        "info/files": "".join(f"{p}\n" for p in paths).encode(),
        "info/about.json": _json_bytes(
            {
                "home": f"https://example.invalid/{spec.name}",
                "license": spec.license,
                "summary": f"Test package {spec.name}",
            }
        ),
    }
    if spec.run_exports is not None:
        info["info/run_exports.json"] = _json_bytes(dict(spec.run_exports))
    return sorted(info.items())


def _zip_entry(name: str) -> zipfile.ZipInfo:
    """A stored zip entry whose header fields do not depend on the host or the clock."""
    entry = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    entry.compress_type = zipfile.ZIP_STORED
    entry.create_system = 3
    entry.external_attr = 0o644 << 16
    return entry


def package_bytes(spec: PackageSpec) -> bytes:
    """The complete package file for spec, in memory."""
    if spec.fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, not {spec.fmt!r}")
    payload = spec.payload()
    for path in payload:
        _check_payload_path(path)
    info = _info_members(spec, payload)
    pkg = sorted(payload.items())
    if spec.fmt == ".tar.bz2":
        return bz2.compress(_tar([*info, *pkg]), BZ2_LEVEL)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        # Same member order as conda-package-streaming's writer.
        zf.writestr(_zip_entry("metadata.json"), json.dumps({"conda_pkg_format_version": 2}))
        zf.writestr(_zip_entry(f"pkg-{spec.stem}.tar.zst"), _zstd(_tar(pkg)))
        zf.writestr(_zip_entry(f"info-{spec.stem}.tar.zst"), _zstd(_tar(info)))
    return buf.getvalue()


def record_for(spec: PackageSpec, data: bytes) -> dict[str, Any]:
    """The repodata record of a built file: index.json plus its md5, sha256 and size."""
    record = spec.index_json()
    record["md5"] = hashlib.md5(data).hexdigest()
    record["sha256"] = hashlib.sha256(data).hexdigest()
    record["size"] = len(data)
    return record


def build_package(spec: PackageSpec, out_dir: Path) -> dict[str, Any]:
    """Write the package file into out_dir; return its repodata record
    (index.json contents + md5, sha256, size)."""
    data = package_bytes(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / spec.filename).write_bytes(data)
    return record_for(spec, data)


def repodata_bytes(
    subdir: str,
    records: Mapping[str, Mapping[str, Any]],
    *,
    top_level: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialise repodata.json deterministically; see write_repodata."""
    tar_bz2: dict[str, Any] = {}
    conda: dict[str, Any] = {}
    for fn, record in records.items():
        if fn.endswith(".conda"):
            conda[fn] = dict(record)
        elif fn.endswith(".tar.bz2"):
            tar_bz2[fn] = dict(record)
        else:
            raise ValueError(f"not a package file name: {fn!r}")
    repodata: dict[str, Any] = {
        "info": {"subdir": subdir},
        "packages": tar_bz2,
        "packages.conda": conda,
        "removed": [],
        "repodata_version": 1,
    }
    for key, value in (top_level or {}).items():
        if key == "info" and isinstance(value, Mapping):
            repodata["info"] = {**repodata["info"], **value}
        else:
            repodata[key] = value
    return _json_bytes(repodata)


def write_repodata(
    root: Path,
    subdir: str,
    records: Mapping[str, Mapping[str, Any]],
    *,
    write_zst: bool = True,
    top_level: Mapping[str, Any] | None = None,
) -> bytes:
    """Write root/<subdir>/repodata.json (and .zst); return the JSON bytes.

    The document has info.subdir, packages (.tar.bz2), packages.conda (.conda), removed [] and
    repodata_version 1, plus top_level keys merged in; sorted keys, so it is deterministic.

    top_level replaces keys wholesale, except "info", whose keys are merged into the default
    info (so {"info": {"base_url": ...}} keeps "subdir"). The .zst is written before the .json,
    as a real indexer would.
    """
    data = repodata_bytes(subdir, records, top_level=top_level)
    out = root / subdir
    out.mkdir(parents=True, exist_ok=True)
    if write_zst:
        (out / "repodata.json.zst").write_bytes(_zstd(data))
    (out / "repodata.json").write_bytes(data)
    return data


def build_channel(
    root: Path,
    specs: Iterable[PackageSpec],
    *,
    extra_subdirs: Iterable[str] = (),
    write_zst: bool = True,
    top_level: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Build every package into root/<subdir>/ and write each subdir's repodata.

    repodata.json (and repodata.json.zst when write_zst) is written for every subdir used,
    plus always noarch and extra_subdirs. Returns {subdir: {filename: record}}.
    """
    channel: dict[str, dict[str, dict[str, Any]]] = {"noarch": {}}
    for subdir in extra_subdirs:
        channel.setdefault(subdir, {})
    for spec in specs:
        records = channel.setdefault(spec.subdir, {})
        if spec.filename in records:
            raise ValueError(f"duplicate package {spec.subdir}/{spec.filename}")
        records[spec.filename] = build_package(spec, root / spec.subdir)
    for subdir, records in sorted(channel.items()):
        write_repodata(root, subdir, records, write_zst=write_zst, top_level=top_level)
    return channel
