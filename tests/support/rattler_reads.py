"""Does rattler read these records? Write them verbatim into a repodata.json and load it as pixi
does: the whole document (RepoData.from_path) and name by name (SparseRepoData)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import rattler

Entry = tuple[str, str, bytes]  # file name, group ("packages" / "packages.conda"), raw record


def write_repodata(channel_dir: Path, subdir: str, entries: Iterable[Entry]) -> Path:
    """`<channel_dir>/<subdir>/repodata.json` holding the raw records byte for byte."""
    groups: dict[str, list[bytes]] = {"packages": [], "packages.conda": []}
    for filename, group, raw in entries:
        groups[group].append(json.dumps(filename).encode() + b": " + raw)
    body = b", ".join(
        json.dumps(group).encode() + b": {" + b", ".join(items) + b"}"
        for group, items in groups.items()
    )
    info = json.dumps({"subdir": subdir}).encode()
    path = channel_dir / subdir / "repodata.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"info": ' + info + b", " + body + b', "repodata_version": 1}')
    return path


def load_with_rattler(path: Path, names: Sequence[str]) -> int:
    """How many records rattler loads from `path`, whole and per name; raises what it raises."""
    channel = rattler.Channel(path.parent.parent.as_uri())
    whole = rattler.RepoData.from_path(str(path)).into_repo_data(channel)
    sparse = rattler.SparseRepoData(channel, path.parent.name, str(path))
    try:
        by_name = sum(
            len(sparse.load_records(name, rattler.PackageFormatSelection.BOTH))
            for name in sorted(set(names))
        )
    finally:
        sparse.close()
    if by_name != len(whole):
        raise AssertionError(f"sparse loading found {by_name} records, the whole file {len(whole)}")
    return len(whole)


def rattler_refusal(channel_dir: Path, subdir: str, entries: Sequence[Entry]) -> str | None:
    """What rattler says about these records, or None when it loads every one of them."""
    path = write_repodata(channel_dir, subdir, entries)
    try:
        count = load_with_rattler(path, [json.loads(raw)["name"] for _, _, raw in entries])
    except Exception as exc:  # rattler's own exception types
        return f"{type(exc).__name__}: {exc}"
    return None if count == len(entries) else f"rattler loaded {count} of {len(entries)}"


def assert_rattler_reads(path: Path) -> None:
    """py-rattler loads every record of a published repodata.json, whole and name by name."""
    document = json.loads(path.read_bytes())
    records = {**document.get("packages", {}), **document.get("packages.conda", {})}
    names = [record["name"] for record in records.values()]
    assert load_with_rattler(path, names) == len(records)
