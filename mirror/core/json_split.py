"""Cutting a JSON object into its members' raw bytes without decoding them.

The fallback for a repodata document the strict decoder refuses as a whole: a single record
holding a byte that is not UTF-8 or a lone surrogate escape must not keep every other record of
the subdir from being mirrored. The structure (braces, brackets, strings, commas) is still
checked; what is inside a string is left to whoever decodes that member (the record gate).
"""

from __future__ import annotations

import re

# a JSON string with any bytes inside (escapes skipped whole), or a bracket
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]', re.DOTALL)
_SCALAR_END = re.compile(rb"[,}\]\s]")
_SPACE = b" \t\r\n"
MAX_DEPTH = 256  # deeper than any reader of repodata goes; past it the document is refused
# ...but not what the record groups hold: a record nested deeper is the gate's to refuse
# (too_deep) on its own, and counting brackets does not recurse, so nothing bounds it here
UNBOUNDED = None


class SplitError(ValueError):
    """The bytes are not shaped like a JSON object; the message says where."""


def object_members(
    data: bytes, start: int = 0, max_depth: int | None = MAX_DEPTH
) -> tuple[list[tuple[bytes, bytes]], int]:
    """The members of the object at data[start:] (after whitespace) as (the key's raw string,
    quotes included; the value's raw bytes), and the index just past its closing brace.
    A value nested deeper than `max_depth` (None: any depth) is refused."""
    at = _skip_space(data, start)
    if data[at : at + 1] != b"{":
        raise SplitError(f"expected an object at byte {at}")
    at = _skip_space(data, at + 1)
    members: list[tuple[bytes, bytes]] = []
    if data[at : at + 1] == b"}":
        return members, at + 1
    while True:
        key = _STRING.match(data, at)
        if key is None:
            raise SplitError(f"expected a key string at byte {at}")
        at = _skip_space(data, key.end())
        if data[at : at + 1] != b":":
            raise SplitError(f"expected ':' at byte {at}")
        value_start = _skip_space(data, at + 1)
        value_end = value_end_at(data, value_start, max_depth)
        members.append((key.group(), data[value_start:value_end]))
        at = _skip_space(data, value_end)
        separator = data[at : at + 1]
        if separator == b"}":
            return members, at + 1
        if separator != b",":
            raise SplitError(f"expected ',' or '}}' at byte {at}")
        at = _skip_space(data, at + 1)


def value_end_at(data: bytes, start: int, max_depth: int | None = MAX_DEPTH) -> int:
    """Where the JSON value starting at data[start] ends (exclusive)."""
    first = data[start : start + 1]
    if not first:
        raise SplitError("the document ends where a value should be")
    if first == b'"':
        string = _STRING.match(data, start)
        if string is None:
            raise SplitError(f"an unterminated string at byte {start}")
        return string.end()
    if first in (b"{", b"["):
        return _container_end(data, start, max_depth)
    scalar_end = _SCALAR_END.search(data, start)
    end = scalar_end.start() if scalar_end else len(data)
    if end == start:
        raise SplitError(f"expected a value at byte {start}")
    return end


def _container_end(data: bytes, start: int, max_depth: int | None) -> int:
    depth = 0
    for token in _TOKEN.finditer(data, start):
        mark = token.group()
        if mark in (b"{", b"["):
            depth += 1
            if max_depth is not None and depth > max_depth:
                raise SplitError(f"nested deeper than {max_depth} at byte {token.start()}")
        elif mark in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                return token.end()
    raise SplitError(f"the object or array at byte {start} is never closed")


def _skip_space(data: bytes, at: int) -> int:
    while at < len(data) and data[at] in _SPACE:
        at += 1
    return at
