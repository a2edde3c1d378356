"""Typed reads of a YAML document that remember where each value came from (file, line, key).

PyYAML's plain loaders forget positions and silently keep the last of duplicate keys; a
config error must name the file, the line and the key path, so we walk the composed node tree.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from mirror.errors import ConfigError


def load_document(path: Path) -> YamlView:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: config file not found; pass --config or set MIRROR_CONFIG"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        # it has no mark and a two-line text: point at the line and the character instead
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}:{line}: invalid YAML: the character {_char(exc.character)!r} is not allowed "
            "(control characters cannot appear in YAML, even in quotes)"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    if node is None:
        raise ConfigError(f"{path}: config file is empty; see config/example.yaml")
    return YamlView(node, path, "")


class YamlView:
    """One node of the document, with its key path for messages."""

    def __init__(self, node: yaml.Node, file: Path, key_path: str) -> None:
        self.node = node
        self.file = file
        self.key_path = key_path

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def error(self, message: str) -> ConfigError:
        where = f"{self.file}:{self.line}"
        key = f" {self.key_path}:" if self.key_path else ""
        return ConfigError(f"{where}:{key} {message}")

    def child_path(self, key: str) -> str:
        return f"{self.key_path}.{key}" if self.key_path else key

    # -- containers -------------------------------------------------------------------------

    def mapping(self, allowed: Iterable[str] | None = None) -> dict[str, YamlView]:
        """The entries; unknown keys (when `allowed` is given) and duplicate keys are errors."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"expected a mapping (key: value), got {self._kind()}")
        allowed_set = set(allowed) if allowed is not None else None
        out: dict[str, YamlView] = {}
        for key_node, value_node in self.node.value:
            key = _scalar_value(key_node)
            if not isinstance(key, str):
                raise YamlView(key_node, self.file, self.key_path).error(
                    f"keys must be strings, got {key!r}"
                )
            child = YamlView(value_node, self.file, self.child_path(key))
            if key in out:
                raise YamlView(key_node, self.file, child.key_path).error(
                    f"duplicate key (first at line {out[key].line})"
                )
            if allowed_set is not None and key not in allowed_set:
                hint = difflib.get_close_matches(key, sorted(allowed_set), n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                raise YamlView(key_node, self.file, child.key_path).error(
                    f"unknown key{suggestion} (known: {', '.join(sorted(allowed_set))})"
                )
            out[key] = child
        return out

    def sequence(self) -> list[YamlView]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {self._kind()}")
        return [
            YamlView(item, self.file, f"{self.key_path}[{i}]")
            for i, item in enumerate(self.node.value)
        ]

    # -- scalars ----------------------------------------------------------------------------

    def scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error(f"expected a single value, got {self._kind()}")
        return _scalar_value(self.node)

    def string(self) -> str:
        value = self.scalar()
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, minimum: int | None = None) -> int:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected a whole number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        return value

    def number(self, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(f"must be at most {maximum}, got {value}")
        return float(value)

    def boolean(self) -> bool:
        value = self.scalar()
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {value!r}")
        return value

    def string_list(self) -> list[str]:
        if isinstance(self.node, yaml.ScalarNode):
            raise self.error("expected a list of strings, e.g. [a, b]; got a single value")
        return [item.string() for item in self.sequence()]

    def size_bytes(self) -> int:
        """`500MB`, `1.5 GiB` or a plain number of bytes."""
        value = self.scalar()
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            parsed = parse_size(value)
            if parsed is not None:
                return parsed
        raise self.error(f"expected a size such as 500MB or 2GiB, got {value!r}")

    def timestamp_ms(self) -> int:
        """A date (`2024-01-31`) or a date and time, as milliseconds since the epoch (UTC)."""
        value = self.scalar()
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise self.error(f"expected a date such as 2024-01-31, got {value!r}") from None
        if isinstance(value, dt.datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        elif isinstance(value, dt.date):
            moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        else:
            raise self.error(f"expected a date such as 2024-01-31, got {value!r}")
        return int(moment.timestamp() * 1000)

    def _kind(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        return repr(_scalar_value(self.node))


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}


def parse_size(text: str) -> int | None:
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgtib")
    unit = cleaned[len(number) :]
    if unit not in _SIZE_UNITS:
        return None
    try:
        value = float(number)
    except ValueError:
        return None
    return int(value * _SIZE_UNITS[unit]) if value >= 0 else None


def _scalar_value(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return None
    try:
        return SafeConstructor().construct_object(node, deep=True)
    except (ValueError, yaml.constructor.ConstructorError):
        # `2024-13-45` resolves as a date that does not exist: keep the text, so the typed
        # read that expected something else says what it expected
        return node.value


def _char(character: int | str) -> str:
    return chr(character) if isinstance(character, int) else character
