"""The docs follow the code: every config key the loader accepts is in docs/configuration.md,
nothing is documented there that the loader would refuse, and every relative link resolves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mirror.config import bundles, closure, load, service, storage
from tests.conftest import REPO

CONFIG_DOC = REPO / "docs" / "configuration.md"
CHANNEL = "channels.<name>"
# the key tuples of the loader and its helpers, with where their keys sit in the file
NESTED_KEYS = {
    "index": load._INDEX_KEYS,
    f"{CHANNEL}.index": load._INDEX_KEYS,
    "watch": service.WATCH_KEYS,
    "bundles": bundles.BUNDLE_KEYS,
    "storage": storage.STORAGE_KEYS,
    f"{CHANNEL}.schedule": service.SCHEDULE_KEYS,
    f"{CHANNEL}.drop_folders": service.DROP_FOLDER_KEYS,  # an item written as a mapping
    f"{CHANNEL}.dependencies": closure.DEPENDENCY_KEYS,
    f"{CHANNEL}.check": closure.CHECK_KEYS,
}
_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def documented_keys(text: str) -> set[str]:
    """Key paths named in the first cell of the tables whose first column is `key`. A cell may
    list siblings: `` `index.zst` / `bz2` `` documents `index.zst` and `index.bz2`."""
    paths: set[str] = set()
    in_key_table = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_key_table = False
            continue
        first = line.split("|")[1].strip()
        if first == "key":
            in_key_table = True
        spans = _SPAN.findall(first)
        if not in_key_table or not spans:
            continue
        parent = spans[0].rpartition(".")[0]
        for span in spans:
            paths.add(span if "." in span or not parent else f"{parent}.{span}")
    return paths


def test_the_table_reader_expands_siblings_and_skips_other_tables() -> None:
    text = (
        "| key | default |\n|---|---|\n| `index.zst` / `bz2` | on |\n| `root` | required |\n\n"
        "| file | default |\n|---|---|\n| `repodata.json` | always |\n"
    )
    assert documented_keys(text) == {"index.zst", "index.bz2", "root"}


@pytest.fixture(scope="module")
def documented() -> set[str]:
    return documented_keys(CONFIG_DOC.read_text())


def is_documented(path: str, documented: set[str]) -> bool:
    """A key is documented by its own row, or by rows of its sub-keys (`index.zst`)."""
    return path in documented or any(d.startswith(f"{path}.") for d in documented)


def test_every_top_level_key_is_documented(documented: set[str]) -> None:
    missing = [key for key in load._TOP_KEYS if not is_documented(key, documented)]
    assert missing == [], f"add these to {CONFIG_DOC.name}"


def test_every_channel_key_is_documented(documented: set[str]) -> None:
    missing = [
        key for key in load._CHANNEL_KEYS if not is_documented(f"{CHANNEL}.{key}", documented)
    ]
    assert missing == [], f"add these to {CONFIG_DOC.name}"


@pytest.mark.parametrize("prefix", sorted(NESTED_KEYS))
def test_every_nested_key_is_documented(prefix: str, documented: set[str]) -> None:
    if prefix.endswith(".index"):  # the channel's index: takes the same keys, documented once
        assert prefix in documented
        prefix = "index"
    missing = [key for key in NESTED_KEYS[prefix] if f"{prefix}.{key}" not in documented]
    assert missing == [], f"add these to {CONFIG_DOC.name}"


def keys_read_inline() -> set[str]:
    """Keys the config modules pass to `.mapping((...))` as a literal tuple, outside the
    named tuples (`metrics.listen`, `licenses.allow`): new keys added that way count too."""
    keys: set[str] = set()
    for path in sorted((REPO / "mirror" / "config").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "mapping"
                and node.args
                and isinstance(node.args[0], ast.Tuple)
            ):
                keys |= {
                    e.value
                    for e in node.args[0].elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
    return keys


def test_keys_read_inline_are_documented(documented: set[str]) -> None:
    inline = keys_read_inline()
    assert {"listen", "allow", "deny"} <= inline  # the reader finds them
    last_parts = {path.rsplit(".", 1)[-1] for path in documented}
    assert sorted(inline - last_parts) == []


def test_every_documented_key_is_accepted(documented: set[str]) -> None:
    """No row for a key the loader would refuse as unknown (a typo, or a feature not built)."""
    accepted = (
        set(load._TOP_KEYS)
        | set(load._CHANNEL_KEYS)
        | {key for keys in NESTED_KEYS.values() for key in keys}
        | keys_read_inline()
    )
    unknown = sorted(
        path
        for path in documented
        if any(part not in accepted for part in path.split(".") if part != "<name>")
    )
    assert unknown == []


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, repeats -1, -2."""
    anchors: set[str] = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def test_the_anchor_reader_follows_github() -> None:
    text = "# Ops\n## `mirror sync`\n```\n# not a heading\n```\n## Quarantine and .reason files\n"
    assert heading_anchors(text) == {"ops", "mirror-sync", "quarantine-and-reason-files"}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code is not prose
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_that_exists(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(target)
            continue
        if anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
            broken.append(target)
    assert broken == []


def test_the_docs_link_to_each_other() -> None:
    """A link checker that finds no links cannot fail: the README reaches every page."""
    readme_links = {t.partition("#")[0] for t in relative_links(REPO / "README.md")}
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert pages <= readme_links
