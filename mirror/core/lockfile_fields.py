"""Checks lockfile readers share: typed fields, hex digits, YAML, what a message may show."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from mirror.core.secrets import MASK
from mirror.errors import LockfileError

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: large lockfiles
# what a message may never show: anaconda.org style /t/<token>/ segments, userinfo, query strings
_TOKEN_SEGMENT = re.compile(r"/t/[^/\s]+")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
_QUERY = re.compile(r"\?[^#\s]*")


def redact(text: str) -> str:
    """The text as it may be shown: token segments, userinfo and query strings masked."""
    text = _TOKEN_SEGMENT.sub(f"/t/{MASK}", text)
    text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
    return _QUERY.sub(f"?{MASK}", text)


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (C or Python)
    except yaml.MarkedYAMLError as exc:
        # str(exc) quotes the offending line, which may hold a token: only the position is shown
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LockfileError(
            f"{source}: not valid YAML{at} ({printable(redact(exc.problem or 'syntax error'))}); "
            "the lockfile is damaged or not a lockfile: regenerate it"
        ) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise LockfileError(
            f"{source}: not valid YAML; the lockfile is damaged or not a lockfile: regenerate it"
        ) from exc


def optional_hex(
    item: Mapping[Any, Any], key: str, pattern: re.Pattern[str], where: str
) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LockfileError(f"{where}: '{key}' must be a string of hex digits")
    return hex_digits(value, pattern, key, where)


def hex_digits(value: str, pattern: re.Pattern[str], what: str, where: str) -> str:
    if not pattern.fullmatch(value):
        length = 64 if what == "sha256" else 32
        raise LockfileError(f"{where}: the {what} is not {length} hex digits")
    return value.lower()


def string_field(item: Mapping[Any, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        problem = "is missing" if value is None else "must be a string"
        raise LockfileError(f"{where}: '{key}' {problem}; the file is damaged")
    return value


def mapping(value: Any, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        raise LockfileError(f"{where}: expected a mapping, found {kind_of(value)}")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise LockfileError(f"{where}: expected a list, found {kind_of(value)}")
    return value


def kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def shown_scalar(value: Any) -> str:
    return printable(str(value)) if isinstance(value, int | str) else kind_of(value)


def version_text(value: Any, kind: str) -> str:
    return (
        f"a {kind} without 'version'" if value is None else f"{kind} version {shown_scalar(value)}"
    )


def shown_url(url: str) -> str:
    return printable(redact(url))


def printable(text: str) -> str:
    """Control characters escaped and length bounded, so a hostile entry cannot forge lines."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 200 else shown[:200] + "..."
