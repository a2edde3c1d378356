"""What a tree serves to clients: its files, without dotfiles (the writer lock, channel markers,
temp files), which web servers are configured never to serve."""

from __future__ import annotations

from pathlib import Path


def served_paths(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def served_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in served_paths(root)}
