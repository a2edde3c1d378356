"""The tar header walker: members read as tarfile reads them, and the info/*.json kept."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple, Protocol

from mirror.adapters.archive.refusal import MiB, Refused, bytes_text, show
from mirror.adapters.archive.streams import Stream

INDEX_JSON = "info/index.json"
ABOUT_JSON = "info/about.json"
RUN_EXPORTS_JSON = "info/run_exports.json"
PATHS_JSON = "info/paths.json"  # kept only by a deep read; a package of many files has a big one
_KEPT_LIMITS = {PATHS_JSON: 256 << 20}
_WANTED = frozenset({INDEX_JSON, ABOUT_JSON, RUN_EXPORTS_JSON})

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_MAX_EXTENSION_HEADERS = 8  # pax/GNU headers before one member; real tars use at most two
_MAX_EXTENSION_BYTES = MiB  # one pax/GNU header's data; real ones are a few hundred bytes

# Tar type flags, as CPython's tarfile reads them.
_REGULAR = frozenset({b"0", b"\0", b"7"})
HARDLINK, SYMLINK, DIRECTORY, FIFO = b"1", b"2", b"5", b"6"
DEVICES = frozenset({b"3", b"4", FIFO})
_GNU_LONGNAME, _GNU_LONGLINK, _GNU_SPARSE, _PAX_GLOBAL = b"L", b"K", b"S", b"g"
_EXTENSIONS = frozenset({b"x", b"X", _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK})  # X: Solaris
# tarfile reads no data after these, whatever their size field says.
_NO_DATA = frozenset({HARDLINK, SYMLINK, DIRECTORY, *DEVICES})


# -- tar headers ----------------------------------------------------------------------------


class Member(NamedTuple):  # made for every member: a NamedTuple is 4x cheaper than a dataclass
    name: str  # as tarfile would extract it: pax/GNU long names applied, dirs without "/"
    kind: bytes  # the type flag
    size: int
    linkname: str


def _members(stream: Stream) -> Iterator[Member]:
    """Members of one tar; the consumer may read the current member's data before resuming."""
    pending: dict[str, str] = {}  # from pax / GNU long headers, for the next member
    extensions = 0
    while True:
        block = stream.read(_BLOCK)
        if block == _ZERO_BLOCK:
            return
        if len(block) < _BLOCK:
            # tarfile takes a missing end marker as the end; we do not, because that is also
            # what a truncated zstd frame looks like from here.
            raise Refused("corrupt", "the tar ends without its end marker (truncated)")
        _check_checksum(block)
        kind = block[156:157]
        size = _number(block[124:136])
        if kind in _EXTENSIONS:
            extensions += 1
            if extensions > _MAX_EXTENSION_HEADERS or size > _MAX_EXTENSION_BYTES:
                raise Refused("corrupt", "a tar member has too many or too large extra headers")
            data = stream.read(size)
            if len(data) != size:
                raise Refused("corrupt", "a tar extension header is cut short (truncated)")
            stream.skip(-size % _BLOCK)
            _extend(pending, kind, data)
            continue
        name = _text(block[0:100])
        if kind == b"\0" and name.endswith("/"):
            kind = DIRECTORY  # the old V7 spelling, as tarfile reads it
        if block[345]:
            # tarfile glues the ustar prefix on whatever the magic says; other readers only for
            # POSIX ustar. Where they would disagree, refuse.
            if block[257:263] != b"ustar\0":
                raise Refused("corrupt", "a tar header has a name prefix but no ustar magic")
            name = f"{_text(block[345:500])}/{name}"
        linkname = _text(block[157:257]) if block[157] else ""
        if kind == _GNU_SPARSE:
            raise Refused("unsupported", "the tar holds GNU sparse files")
        if pending:
            if any(key.startswith("GNU.sparse") for key in pending):
                raise Refused("unsupported", "the tar holds GNU sparse files")
            name = pending.get("path", name)
            linkname = pending.get("linkpath", linkname)
            if "size" in pending:
                size = _pax_size(pending["size"])
            pending, extensions = {}, 0
        if kind == DIRECTORY:
            name = name.rstrip("/")
        elif kind in _NO_DATA and size:
            # tarfile reads no data after a link whatever the size says; others skip the data.
            raise Refused("corrupt", f"tar member {show(name)} is a link with data")
        data_start = stream.pos
        yield Member(name, kind, size, linkname)
        stream.skip(data_start + size + (-size % _BLOCK) - stream.pos)


def _extend(pending: dict[str, str], kind: bytes, data: bytes) -> None:
    """Adds what an extension header says about the next member to pending."""
    if kind == _GNU_LONGNAME:
        records = {"path": _text(data)}
    elif kind == _GNU_LONGLINK:
        records = {"linkpath": _text(data)}
    else:
        records = _pax_records(data)
        if "path" in records:
            records["path"] = records["path"].rstrip("/")  # as tarfile does
    if kind == _PAX_GLOBAL:
        # tarfile applies a global path or size to every later member; nothing real writes one.
        if records.keys() & {"path", "linkpath", "size"}:
            raise Refused("corrupt", "a global tar header renames or resizes every member")
        return
    # Chained headers saying the same thing twice: tarfile lets the first win, others the last.
    if pending.keys() & records.keys():
        raise Refused("corrupt", "a tar member has conflicting extended headers")
    pending.update(records)


def _pax_records(data: bytes) -> dict[str, str]:
    """'<length> <key>=<value>\\n' records, strictly: what tarfile might read otherwise fails."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        digits = data[pos:space] if space > pos else b""
        end = pos + int(digits) if digits.isdigit() else 0
        if end <= space + 1 or end > len(data) or data[end - 1] != ord("\n"):
            raise Refused("corrupt", "a pax header is malformed")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key or not key.isascii():
            raise Refused("corrupt", "a pax header is malformed")
        text_key = key.decode("ascii")
        if text_key in records:
            raise Refused("corrupt", f"a pax header sets {show(text_key)} twice")
        records[text_key] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def _pax_size(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise Refused("corrupt", "a pax size is not a number")
    return int(text)


def _text(field: bytes) -> str:
    """A NUL-terminated header field, decoded like tarfile does (utf-8, surrogateescape)."""
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """A numeric header field: octal text or GNU base-256, read exactly as tarfile does."""
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0o377:
            value -= 256 ** (len(field) - 1)
    else:
        try:  # int() of bytes takes ASCII only, like tarfile's nts(s, "ascii")
            value = int(field.split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError as exc:
            raise Refused("corrupt", "a tar header has a bad number (not a tar?)") from exc
    if value < 0:
        raise Refused("corrupt", "a tar header has a negative number")
    return value


def _check_checksum(block: bytes) -> None:
    # The byte sum of the header with its checksum field as spaces. adler32's low half over at
    # most 256 bytes is exactly 1 + their byte sum, and 10x faster than sum().
    adler = zlib.adler32
    low = 0xFFFF
    unsigned = (
        253
        + (adler(block[:148]) & low)
        + (adler(block[156:412]) & low)
        + (adler(block[412:]) & low)
    )
    stored = _number(block[148:156])
    if stored != unsigned:
        # Some old tars summed signed chars; tarfile accepts either.
        signed = 256 + sum(struct.unpack_from("148b8x356b", block))
        if stored != signed:
            raise Refused("corrupt", "a tar header fails its checksum (not a tar, or damaged)")


# -- what we do with the members ------------------------------------------------------------


class MemberData(Protocol):
    """What a deep read gives each payload file's data to (payload.py)."""

    wanted: frozenset[str]  # info/ files it needs kept besides ours

    def member(self, key: str, stream: Stream, size: int) -> None: ...


class MemberCheck(Protocol):
    """What the walk shows every member to (the safety checks in deep.py)."""

    def start_tar(self) -> None: ...
    def member(self, member: Member) -> None: ...
    def finish(self) -> None: ...


class TarScan:
    """Collects the info/*.json we want from one tar, shows every member to the member checks,
    and (deep) hands every payload file's data to the hashes."""

    def __init__(
        self,
        found: dict[str, bytes] | None,
        checker: MemberCheck | None,
        max_member_bytes: int,
        hashes: MemberData | None = None,
    ) -> None:
        self._found = found  # None: this tar must not carry them (a .conda's pkg tar)
        self._checker = checker
        self._max_member_bytes = max_member_bytes
        self._hashes = hashes

    def walk(self, stream: Stream) -> None:
        """Every member, to the end: what the checks never saw could escape the prefix."""
        checker, hashes = self._checker, self._hashes
        wanted = _WANTED | hashes.wanted if hashes is not None else _WANTED
        if checker is not None:
            checker.start_tar()
        for member in _members(stream):
            if checker is not None:
                checker.member(member)
            key = normal(member.name)
            if key in wanted:
                self._keep(stream, member, key)
            elif hashes is not None and member.kind in _REGULAR and not key.startswith("info/"):
                hashes.member(key, stream, member.size)

    def _keep(self, stream: Stream, member: Member, key: str) -> None:
        found = self._found
        if found is None:
            raise Refused("corrupt", f"the pkg tar carries {key}, which belongs in the info tar")
        if key in found:
            raise Refused("corrupt", f"{key} appears twice in the package")
        if member.kind not in _REGULAR:
            raise Refused("corrupt", f"{key} is not a regular file")
        allowed = max(self._max_member_bytes, _KEPT_LIMITS.get(key, 0))
        if member.size > allowed:
            limit = bytes_text(allowed)
            raise Refused("too_large", f"{key} is {bytes_text(member.size)}, over {limit}")
        found[key] = stream.read(member.size)
        if len(found[key]) != member.size:
            raise Refused("corrupt", f"{key} is cut short (truncated archive)")


def normal(name: str) -> str:
    """The path a member lands on: "./info//index.json" lands on info/index.json."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))
