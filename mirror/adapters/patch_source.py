"""Read repodata patch instructions from a .json file, a folder, or a patch package.

- `patch_instructions.json` (any .json file): applies to every subdir;
- a folder: `<folder>/<subdir>/patch_instructions.json`, where present;
- a package such as conda-forge-repodata-patches (.conda or .tar.bz2): its
  `<subdir>/patch_instructions.json` member, where present.
"""

from __future__ import annotations

from pathlib import Path

from mirror.core.patches import NO_PATCHES, PatchSet, parse_patch_instructions
from mirror.errors import RepodataError

INSTRUCTIONS_NAME = "patch_instructions.json"
MAX_INSTRUCTIONS_BYTES = 256 << 20


def load_patches(source: Path | None, subdir: str) -> PatchSet:
    if source is None:
        return NO_PATCHES
    data = _instructions_bytes(source, subdir)
    return NO_PATCHES if data is None else parse_patch_instructions(data, f"{source} ({subdir})")


def _instructions_bytes(source: Path, subdir: str) -> bytes | None:
    try:
        if source.is_dir():
            path = source / subdir / INSTRUCTIONS_NAME
            return path.read_bytes() if path.is_file() else None
        if source.name.endswith((".conda", ".tar.bz2")):
            return _from_package(source, f"{subdir}/{INSTRUCTIONS_NAME}")
        return source.read_bytes()
    except OSError as exc:
        raise RepodataError(f"{source}: cannot read patch instructions: {exc.strerror}") from exc


def _from_package(package: Path, member_name: str) -> bytes | None:
    from conda_package_streaming import package_streaming  # only sites using a patch package

    components = ["pkg"] if package.name.endswith(".conda") else ["info"]
    try:
        with package.open("rb") as handle:
            for component in components:
                stream = package_streaming.stream_conda_component(
                    package.name, handle, component=component
                )
                for tar, member in stream:
                    if member.name.lstrip("./") == member_name and member.isfile():
                        if member.size > MAX_INSTRUCTIONS_BYTES:
                            raise RepodataError(f"{package}: {member_name} is implausibly large")
                        extracted = tar.extractfile(member)
                        return extracted.read() if extracted else None
    except (OSError, ValueError, EOFError) as exc:
        raise RepodataError(f"{package}: cannot read patch package ({exc})") from exc
    return None
