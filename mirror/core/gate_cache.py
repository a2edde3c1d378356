"""rattler's verdicts on the strings of records (specs, versions, names), cached per string.

A subdir has about 20 times fewer distinct specs than records, so the record gate asks py-rattler
about each string once per GateCache (one per subdir, or per run). The parse functions hold the
rules rattler's own parsers leave out: lowercase names, no '-' in versions (rattler's sparse
index splits file names there), and specs short and flat enough not to crash its parser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

_CACHE_ENTRIES = 1 << 20  # per table; past it verdicts are still right, only not remembered
# real specs are under 300 characters and use a pair of parentheses at most; py-rattler 0.28
# segfaults on MatchSpec("a " + "(" * 5000 + ...) (its parser recurses)
MAX_SPEC_CHARS = 1024
MAX_SPEC_NESTING = 16


@dataclass
class Verdicts:
    """What rattler said of each distinct string of one kind: it parsed (`good`, a set, so a
    record's whole list is looked up in one call) or why not (`bad`)."""

    good: set[str] = field(default_factory=set)
    bad: dict[str, str] = field(default_factory=dict)

    def first_problem(
        self, texts: tuple[str, ...], parse: Callable[[str], object]
    ) -> tuple[str, str] | None:
        """The first of `texts` that `parse` refuses, with what it said; None if all parse."""
        if self.good.issuperset(texts):
            return None
        for text in texts:
            if text in self.good:
                continue
            problem = self.bad.get(text)
            if problem is None:
                try:
                    parse(text)
                except Exception as exc:  # rattler raises its own exception types
                    problem = str(exc) or type(exc).__name__
                else:
                    if len(self.good) < _CACHE_ENTRIES:
                        self.good.add(text)
                    continue
                if len(self.bad) < _CACHE_ENTRIES and len(text) <= MAX_SPEC_CHARS:
                    self.bad[text] = problem
            return text, problem
        return None


@dataclass
class GateCache:
    """rattler's verdicts on strings that repeat across records (a subdir has about 20 times
    fewer distinct specs than records); one per subdir, or per run."""

    specs: Verdicts = field(default_factory=Verdicts)
    versions: Verdicts = field(default_factory=Verdicts)
    names: Verdicts = field(default_factory=Verdicts)


def parse_spec(text: str) -> None:
    from rattler import MatchSpec  # imported on a cache miss only: the gate stays light

    if not spec_shape_is_safe(text):
        raise ValueError(
            f"longer than {MAX_SPEC_CHARS} characters or nested more than {MAX_SPEC_NESTING} "
            "deep; rattler's parser recurses and crashes on a few thousand parentheses"
        )
    MatchSpec(text, strict=False)  # exact names only: rattler's solver cannot handle globs


def spec_shape_is_safe(text: str) -> bool:
    """Short and flat enough for rattler's recursive spec parser, which overflows its stack
    (a segfault, in our process and in every client's) on deeply nested input."""
    return (
        len(text) <= MAX_SPEC_CHARS
        and text.count("(") <= MAX_SPEC_NESTING
        and text.count("[") <= MAX_SPEC_NESTING
    )


def parse_version(text: str) -> None:
    from rattler import Version

    Version(text)
    if "-" in text:  # rattler's sparse index splits file names at '-' to find names
        raise ValueError("a '-' separates name, version and build in file names")


def parse_name(text: str) -> None:
    from rattler import PackageName

    PackageName(text)
    if not text or text != text.lower():
        raise ValueError(
            "empty" if not text else "not lowercase: rattler looks names up lowercased"
        )
