"""Hand-made msgpack and zstd bytes for shard tests, including what no honest writer makes."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import msgpack
import zstandard


class Packed(bytes):
    """Bytes that are already msgpack: copied into a hand-made map as they are."""


def zst(payload: bytes, *, content_size: bool = True) -> bytes:
    """One zstd frame; rattler writes frames without the content size in the header."""
    return zstandard.ZstdCompressor(level=3, write_content_size=content_size).compress(payload)


def pack(value: Any) -> bytes:
    """msgpack of value; dicts and lists may hold Packed parts anywhere."""
    if isinstance(value, Packed):
        return bytes(value)
    if isinstance(value, dict):
        return packed_map(list(value.items()))
    if isinstance(value, list):
        header = bytes([0x90 | len(value)]) if len(value) < 16 else b"\xdc" + _u16(len(value))
        return header + b"".join(pack(item) for item in value)
    return bytes(msgpack.packb(value, use_bin_type=True))


def packed_map(pairs: Sequence[tuple[Any, Any]]) -> Packed:
    """A msgpack map with the pairs in order; unlike a dict, it may repeat a key."""
    count = len(pairs)
    header = bytes([0x80 | count]) if count < 16 else b"\xde" + _u16(count)
    return Packed(header + b"".join(pack(k) + pack(v) for k, v in pairs))


def _u16(count: int) -> bytes:
    return struct.pack(">H", count)
