"""The deep check's expensive part: every payload file's bytes against info/paths.json."""

from __future__ import annotations

import hashlib

import msgspec

from mirror.adapters.archive.refusal import Refused, show
from mirror.adapters.archive.streams import Stream
from mirror.adapters.archive.tar import PATHS_JSON

_CHUNK = 1 << 20


class _PathEntry(msgspec.Struct):
    path: str = msgspec.field(name="_path")
    path_type: str = "hardlink"
    sha256: str | None = None
    size_in_bytes: int | None = None


class _Paths(msgspec.Struct):
    paths: list[_PathEntry] = msgspec.field(default_factory=list)


class PayloadHashes:
    """sha256 and size of each payload file, checked at the end against what the package says
    it holds: a file whose bytes were changed after the build (or a forged paths.json) fails."""

    wanted = frozenset({PATHS_JSON})

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, str]] = {}

    def member(self, key: str, stream: Stream, size: int) -> None:
        digest = hashlib.sha256()
        left = size
        while left:
            chunk = stream.read(min(left, _CHUNK))
            if not chunk:
                raise Refused("corrupt", f"member {show(key)} is cut short (truncated archive)")
            digest.update(chunk)
            left -= len(chunk)
        self._seen[key] = (size, digest.hexdigest())

    def check(self, paths_json: bytes | None) -> None:
        if paths_json is None:
            return  # old packages have none: the member checks still ran
        try:
            listed = msgspec.json.decode(paths_json, type=_Paths).paths
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Refused("invalid_json", f"{PATHS_JSON} is malformed ({exc})") from exc
        for entry in listed:
            _check_entry(entry, self._seen.get(entry.path))


def _check_entry(entry: _PathEntry, seen: tuple[int, str] | None) -> None:
    if entry.path_type != "hardlink" or entry.sha256 is None:
        return  # links and directories carry no hash
    shown = show(entry.path)
    if seen is None:
        raise Refused("corrupt", f"{PATHS_JSON} lists {shown}, which the package does not hold")
    size, sha256 = seen
    if entry.size_in_bytes is not None and size != entry.size_in_bytes:
        raise Refused(
            "corrupt", f"{shown} is {size} bytes; {PATHS_JSON} says {entry.size_in_bytes}"
        )
    if sha256 != entry.sha256.lower():
        raise Refused("corrupt", f"{shown} does not hash to the sha256 {PATHS_JSON} gives it")
