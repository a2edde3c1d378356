"""JSON-level checks of one record's bytes: what any client's JSON parser must accept.

These come before any field is read: valid UTF-8 everywhere (keys and values rattler ignores
included), no lone surrogate escapes, no NaN/Infinity, no `-0`, numbers a client can hold, a
bounded nesting depth and no key given twice. Each failure is a `JsonProblem` naming the
reason; `decode_object` returns the record as Python values when there is none.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

# serde_json (rattler) refuses a document nested deeper than 128; a record sits at depth 3 of
# repodata.json and of a shard, and real records nest 3 deep at most (run_exports lists)
MAX_NESTING = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NEGATIVE_ZERO = re.compile(rb"-0(?![0-9.eE])")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# keys of nested objects that rattler reads as structs: a repeated key there is refused too
# (in maps such as extra_depends, and in keys nobody reads, the last value wins everywhere)
_STRUCT_KEYS = ("run_exports",)


class JsonProblem(Exception):
    """The bytes are not a JSON object every client reads alike; `reason` is a RefusalReason
    value, `field` the key at fault when one is known."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


def decode_object(data: bytes) -> dict[str, Any]:
    """The record as Python values, or JsonProblem."""
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonProblem(
                "bad_utf8",
                f"the record holds bytes that are not UTF-8 (byte {exc.start}); rattler refuses "
                "a whole repodata.json for that",
            ) from None
    opens = data.count(b"{")
    if opens + data.count(b"[") > MAX_NESTING and nesting_depth(data) > MAX_NESTING:
        raise JsonProblem("too_deep", f"the record nests deeper than {MAX_NESTING} levels")
    document = _decode(data)
    if not isinstance(document, dict):
        raise JsonProblem(
            "bad_json", f"record is malformed: a JSON object is needed, not {_kind(document)}"
        )
    # a regex finds "-0" faster than `in` (records are full of '-'); strings are cut out only
    # when it is there, to tell "x-0" in a string from the number
    if _NEGATIVE_ZERO.search(data) and _NEGATIVE_ZERO.search(_STRING.sub(b'""', data)):
        raise JsonProblem(
            "bad_json", "the record holds the number -0, which rattler reads as a float"
        )
    # every key is followed by a ':', so when the bytes hold no more colons than the values
    # have distinct keys, none repeats (a colon inside a string only adds to the count)
    keys = len(document) if opens == 1 else _key_count(document)
    repeated = None if data.count(b":") == keys else duplicate_key(data, document)
    if repeated is not None:
        # conda keeps the last value, rattler refuses the whole repodata: published verbatim,
        # such a record would make clients disagree (or fail), so it is never published
        raise JsonProblem(
            "duplicate_key", f"record has the key {_shown(repeated)!r} twice; refused", repeated
        )
    return document


def _decode(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.ValidationError as exc:  # 1e400, huge integers: no client holds them
        raise JsonProblem("bad_number", f"record holds a number out of range ({exc})") from None
    except msgspec.DecodeError as exc:
        text = str(exc)
        if ("truncated" in text or "surrogate" in text) and _SURROGATE_ESCAPE.search(data):
            raise JsonProblem(
                "bad_utf8",
                "a string holds a lone UTF-16 surrogate escape (such as \\ud800), which is no "
                "character; rattler refuses a whole repodata.json for that",
            ) from None
        raise JsonProblem("bad_json", f"record is malformed: not valid JSON ({text})") from None
    except RecursionError:  # unreachable past the depth check, kept as a guard
        raise JsonProblem("too_deep", "the record nests too deep to read") from None


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings not counted)."""
    depth = deepest = 0
    for byte in _STRING.sub(b'""', data).translate(None, _NOT_BRACKETS):
        if byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def duplicate_key(data: bytes, document: dict[str, Any]) -> str | None:
    """A key given twice in the record or in a struct-like value of it (`run_exports.weak`),
    parsed key by key (decode_object asks only when counting colons cannot rule it out)."""
    repeated = _repeated_top_level_key(data)
    if repeated is not None:
        return repeated
    for key in _STRUCT_KEYS:
        if isinstance(document.get(key), dict):
            inner = msgspec.json.decode(data, type=dict[str, msgspec.Raw])[key]
            nested = _repeated_top_level_key(bytes(inner))
            if nested is not None:
                return f"{key}.{nested}"
    return None


def _key_count(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_key_count(v) for v in value.values() if isinstance(v, dict | list))
    if isinstance(value, list):
        return sum(_key_count(v) for v in value if isinstance(v, dict | list))
    return 0


def _repeated_top_level_key(data: bytes) -> str | None:
    # the hook sees nested objects first and the object itself last; numbers stay text (a
    # 5,000-digit integer must not hit int()'s digit limit)
    last_keys: list[str] = []

    def remember(pairs: list[tuple[str, object]]) -> dict[str, object]:
        last_keys[:] = [key for key, _ in pairs]
        return {}

    json.loads(data, object_pairs_hook=remember, parse_int=str, parse_float=str)
    seen: set[str] = set()
    for key in last_keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _shown(text: str) -> str:
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 80 else shown[:80] + "..."
