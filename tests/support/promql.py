"""What a PromQL expression reads: metric names and label names, for checks against exports.

Not a PromQL parser (promtool checks the syntax): it strips strings, range selectors and
grouping lists, and takes every remaining identifier that is not a function, keyword or label as
a metric name, so a misspelt name is caught rather than skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# labels Prometheus adds to every scraped series, and the bucket label of histograms
SCRAPE_LABELS = frozenset({"job", "instance"})
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "atan2"}
)
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1d",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)


@dataclass
class Reads:
    """The metrics an expression selects, with the labels it names for each, and the labels
    it groups or matches by."""

    metrics: dict[str, set[str]] = field(default_factory=dict)
    grouping_labels: set[str] = field(default_factory=set)


def substitute_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    # $channel, ${channel}: only inside label matchers' strings
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def reads(expr: str) -> Reads:
    """Metric and label names read by a PromQL expression or a Grafana `label_values(...)`."""
    found = Reads()
    match = _LABEL_VALUES.match(expr)
    if match:
        expr, label = match.group(1), match.group(2)
        found.grouping_labels.add(label)
    text = _RANGE.sub("", _STRING.sub('""', substitute_grafana_variables(expr)))

    def selector(m: re.Match[str]) -> str:
        name = m.group(1)
        labels = set(_MATCHER_LABEL.findall(m.group(2)))
        if name is None:  # {__name__=...} selectors are not used; refuse to guess
            raise ValueError(f"selector without a metric name in {expr!r}")
        found.metrics.setdefault(name, set()).update(labels)
        return " "

    text = _SELECTOR.sub(selector, text)

    def grouping(m: re.Match[str]) -> str:
        found.grouping_labels.update(label.strip() for label in m.group(1).split(",") if label)
        return " "

    text = _GROUPING.sub(grouping, text)
    for name in _IDENTIFIER.findall(text):
        if name not in KEYWORDS:
            found.metrics.setdefault(name, set())
    return found
