"""The package builder makes real, deterministic packages that conda tooling accepts."""

from __future__ import annotations

import asyncio
import bz2
import hashlib
import io
import json
import tarfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import rattler
import zstandard
from conda_package_streaming.package_streaming import stream_conda_component, stream_conda_info

from tests.support.builder import (
    FIXED_MTIME,
    PackageSpec,
    build_channel,
    build_package,
    write_repodata,
)

FULL_FILES = {"lib/libfoo.txt": b"foo\n", "bin/foo": b"#!/bin/sh\necho foo\n"}
FULL_SPEC = PackageSpec(
    name="libfoo",
    version="1.2.3",
    build="h123_1",
    build_number=1,
    subdir="linux-64",
    depends=("libbar >=2", "libc"),
    constrains=("libfoo-dev 1.2.3",),
    license="BSD-3-Clause",
    license_family="BSD",
    files=FULL_FILES,
    run_exports={"weak": ["libfoo >=1.2,<2"]},
    extra_index={"track_features": "", "arch": "x86_64"},
)


def _info_files(path: Path) -> dict[str, bytes]:
    """Every info/ member as conda_package_streaming sees it."""
    out: dict[str, bytes] = {}
    for tar, member in stream_conda_info(str(path)):
        if member.name.startswith("info/") and member.isfile():
            fh = tar.extractfile(member)
            assert fh is not None
            out[member.name] = fh.read()
    return out


def _pkg_members(path: Path) -> dict[str, tarfile.TarInfo]:
    """Payload members, with their tar headers, for ownership and mtime checks.

    For a .tar.bz2 the "pkg" component is the whole tar, so info/ is filtered out.
    """
    members: dict[str, tarfile.TarInfo] = {}
    with path.open("rb") as fh:
        for _tar, member in stream_conda_component(str(path), fh, component="pkg"):
            if not member.name.startswith("info/"):
                members[member.name] = member
    return members


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_package_is_readable_and_index_round_trips(tmp_path: Path, fmt: str) -> None:
    spec = replace(FULL_SPEC, fmt=fmt)
    record = build_package(spec, tmp_path)
    path = tmp_path / spec.filename
    assert path.name == f"libfoo-1.2.3-h123_1{fmt}"

    data = path.read_bytes()
    assert record["md5"] == hashlib.md5(data).hexdigest()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["size"] == len(data)

    info = _info_files(path)
    assert set(info) == {
        "info/index.json",
        "info/paths.json",
        "info/files",
        "info/about.json",
        "info/run_exports.json",
    }
    index = json.loads(info["info/index.json"])
    assert index == {k: v for k, v in record.items() if k not in ("md5", "sha256", "size")}
    assert index == {
        "name": "libfoo",
        "version": "1.2.3",
        "build": "h123_1",
        "build_number": 1,
        "depends": ["libbar >=2", "libc"],
        "constrains": ["libfoo-dev 1.2.3"],
        "license": "BSD-3-Clause",
        "license_family": "BSD",
        "subdir": "linux-64",
        "timestamp": 1_700_000_000_000,
        "track_features": "",
        "arch": "x86_64",
    }
    paths = json.loads(info["info/paths.json"])
    assert paths["paths_version"] == 1
    assert paths["paths"] == [
        {
            "_path": p,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(b).hexdigest(),
            "size_in_bytes": len(b),
        }
        for p, b in sorted(FULL_FILES.items())
    ]
    assert info["info/files"] == b"bin/foo\nlib/libfoo.txt\n"
    assert json.loads(info["info/run_exports.json"]) == {"weak": ["libfoo >=1.2,<2"]}
    about = json.loads(info["info/about.json"])
    assert about["license"] == "BSD-3-Clause"
    assert {"summary", "home"} <= set(about)

    pkg = _pkg_members(path)
    assert set(pkg) == {"bin/foo", "lib/libfoo.txt"}
    for member in pkg.values():
        assert (member.mtime, member.uid, member.gid, member.uname) == (FIXED_MTIME, 0, 0, "")
    assert pkg["bin/foo"].mode == 0o755
    assert pkg["lib/libfoo.txt"].mode == 0o644

    # rattler parses the same archive.
    rattler_index = rattler.IndexJson.from_package_archive(path)
    assert (rattler_index.name.normalized, str(rattler_index.version)) == ("libfoo", "1.2.3")
    assert [str(e.relative_path) for e in rattler.PathsJson.from_package_archive(path).paths] == [
        "bin/foo",
        "lib/libfoo.txt",
    ]


def test_conda_container_layout(tmp_path: Path) -> None:
    spec = PackageSpec("pkg", "1.0")
    build_package(spec, tmp_path)
    with zipfile.ZipFile(tmp_path / "pkg-1.0-0.conda") as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == [
            "metadata.json",
            "pkg-pkg-1.0-0.tar.zst",
            "info-pkg-1.0-0.tar.zst",
        ]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert json.loads(zf.read("metadata.json")) == {"conda_pkg_format_version": 2}
        info_tar = zstandard.ZstdDecompressor().decompress(zf.read("info-pkg-1.0-0.tar.zst"))
    with tarfile.open(fileobj=io.BytesIO(info_tar)) as tar:
        names = tar.getnames()
    assert names == sorted(names)
    assert all(n.startswith("info/") for n in names)


def test_tar_bz2_puts_info_first(tmp_path: Path) -> None:
    spec = PackageSpec("pkg", "1.0", fmt=".tar.bz2", files={"a.txt": b"a", "z/b.txt": b"b"})
    build_package(spec, tmp_path)
    raw = bz2.decompress((tmp_path / "pkg-1.0-0.tar.bz2").read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
    assert names == [
        "info/about.json",
        "info/files",
        "info/index.json",
        "info/paths.json",
        "a.txt",
        "z/b.txt",
    ]


def test_defaults() -> None:
    noarch = PackageSpec("a", "1").index_json()
    assert noarch["noarch"] == "generic"
    assert noarch["subdir"] == "noarch"
    assert "constrains" not in noarch
    assert "license_family" not in noarch

    native = PackageSpec("a", "1", subdir="linux-64", license=None, timestamp_ms=None).index_json()
    assert "noarch" not in native
    assert "license" not in native
    assert "timestamp" not in native

    assert PackageSpec("a", "1", noarch="python").index_json()["noarch"] == "python"
    assert PackageSpec("a", "1").payload() == {"share/a/1.txt": b"a 1 0\n"}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _mixed_specs() -> list[PackageSpec]:
    return [
        FULL_SPEC,
        replace(FULL_SPEC, fmt=".tar.bz2"),
        PackageSpec("a", "1.0", depends=("b",)),
        PackageSpec("b", "2.0", fmt=".tar.bz2", run_exports={"strong": ["b"]}),
    ]


def test_deterministic(tmp_path: Path) -> None:
    one = build_channel(tmp_path / "one", _mixed_specs(), extra_subdirs=["osx-arm64"])
    time.sleep(1.1)  # a leaked wall-clock time would now differ
    two = build_channel(tmp_path / "two", _mixed_specs(), extra_subdirs=["osx-arm64"])
    assert one == two
    tree_one, tree_two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert tree_one == tree_two
    assert len(tree_one) == 4 + 3 * 2  # packages + repodata.json/.zst for three subdirs


def test_build_channel_layout(tmp_path: Path) -> None:
    channel = build_channel(
        tmp_path,
        _mixed_specs(),
        extra_subdirs=["osx-arm64"],
        top_level={"info": {"base_url": "https://example.invalid/"}, "x-extra": 1},
    )
    assert set(channel) == {"noarch", "linux-64", "osx-arm64"}
    assert set(channel["linux-64"]) == {"libfoo-1.2.3-h123_1.conda", "libfoo-1.2.3-h123_1.tar.bz2"}
    assert channel["osx-arm64"] == {}

    raw = (tmp_path / "noarch" / "repodata.json").read_bytes()
    repodata = json.loads(raw)
    assert repodata["info"] == {"subdir": "noarch", "base_url": "https://example.invalid/"}
    assert repodata["repodata_version"] == 1
    assert repodata["removed"] == []
    assert repodata["x-extra"] == 1
    assert set(repodata["packages"]) == {"b-2.0-0.tar.bz2"}
    assert set(repodata["packages.conda"]) == {"a-1.0-0.conda"}
    assert repodata["packages.conda"]["a-1.0-0.conda"] == channel["noarch"]["a-1.0-0.conda"]
    for subdir, records in channel.items():
        for fn, record in records.items():
            assert (tmp_path / subdir / fn).stat().st_size == record["size"]

    zst = (tmp_path / "noarch" / "repodata.json.zst").read_bytes()
    assert zstandard.get_frame_parameters(zst).content_size == len(raw)
    assert zstandard.ZstdDecompressor().decompress(zst) == raw


def test_write_repodata_without_zst(tmp_path: Path) -> None:
    data = write_repodata(tmp_path, "linux-64", {}, write_zst=False)
    assert (tmp_path / "linux-64" / "repodata.json").read_bytes() == data
    assert not (tmp_path / "linux-64" / "repodata.json.zst").exists()
    with pytest.raises(ValueError, match="not a package file name"):
        write_repodata(tmp_path, "linux-64", {"x.zip": {}})


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../b", "info/x", "a//b", "a\\b", ""])
def test_rejects_bad_payload_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="bad payload path"):
        build_package(PackageSpec("a", "1", files={bad: b"x"}), tmp_path)


def test_rejects_bad_format_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        build_package(PackageSpec("a", "1", fmt=".zip"), tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        build_channel(tmp_path, [PackageSpec("a", "1"), PackageSpec("a", "1")])


def test_two_thousand_packages_build_fast(tmp_path: Path) -> None:
    specs = [
        PackageSpec(
            f"p{i}",
            "1.0",
            subdir="noarch" if i % 3 else "linux-64",
            fmt=".conda" if i % 2 else ".tar.bz2",
            depends=(f"p{i - 1}",) if i else (),
        )
        for i in range(2000)
    ]
    start = time.perf_counter()
    channel = build_channel(tmp_path, specs)
    elapsed = time.perf_counter() - start
    assert sum(len(r) for r in channel.values()) == 2000
    assert elapsed < 15, f"building 2,000 packages took {elapsed:.1f} s"


async def _solve_and_install(channel_root: Path, work: Path) -> list[Any]:
    records = await rattler.solve(
        sources=[rattler.Channel(channel_root.as_uri())],
        specs=["app"],
        gateway=rattler.Gateway(cache_dir=work / "repodata-cache"),
        platforms=["linux-64", "noarch"],
    )
    await rattler.install(
        records,
        target_prefix=work / "env",
        cache_dir=work / "pkgs-cache",
        show_progress=False,
    )
    return records


def test_channel_solvable_and_installable_by_rattler(tmp_path: Path) -> None:
    specs = [
        PackageSpec("liba", "1.0", fmt=".tar.bz2"),
        PackageSpec("liba", "2.0", fmt=".tar.bz2"),
        PackageSpec("libb", "1.0", depends=("liba >=2",)),
        PackageSpec(
            "app",
            "3.1",
            depends=("libb", "liba"),
            files={"share/app/README": b"hello\n"},
        ),
    ]
    build_channel(tmp_path / "channel", specs, extra_subdirs=["linux-64"])
    records = asyncio.run(_solve_and_install(tmp_path / "channel", tmp_path))
    assert sorted(f"{r.name.normalized}-{r.version}" for r in records) == [
        "app-3.1",
        "liba-2.0",
        "libb-1.0",
    ]
    formats = {r.name.normalized: r.url.rsplit("-", 1)[1] for r in records}
    assert formats == {"app": "0.conda", "liba": "0.tar.bz2", "libb": "0.conda"}
    env = tmp_path / "env"
    assert (env / "share" / "app" / "README").read_bytes() == b"hello\n"
    assert (env / "share" / "liba" / "2.0.txt").read_bytes() == b"liba 2.0 0\n"
    assert (env / "share" / "libb" / "1.0.txt").exists()
    assert (env / "conda-meta" / "app-3.1-0.json").exists()
