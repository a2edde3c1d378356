"""py-rattler as a real conda client: solve and install from a channel tree we produced."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rattler


def solve(
    channel_urls: Sequence[str],
    specs: Sequence[str],
    platforms: Sequence[str],
    cache: Path,
    virtual_packages: Sequence[str] = (),
) -> list[Any]:
    """Solve `specs` against the channels (fresh repodata cache, so nothing stale is read).

    `virtual_packages` as `__name=version`: what the client machine would report."""

    async def run() -> list[Any]:
        return list(
            await rattler.solve(
                sources=[rattler.Channel(url) for url in channel_urls],
                specs=list(specs),
                gateway=rattler.Gateway(cache_dir=cache / "repodata"),
                platforms=list(platforms),
                virtual_packages=[_virtual(v) for v in virtual_packages],
            )
        )

    return asyncio.run(run())


def _virtual(text: str) -> Any:
    name, _, version = text.partition("=")
    return rattler.GenericVirtualPackage(
        rattler.PackageName(name), rattler.Version(version or "0"), rattler.BuildString("0")
    )


def install(records: list[Any], prefix: Path, cache: Path) -> None:
    async def run() -> None:
        await rattler.install(
            records, target_prefix=prefix, cache_dir=cache / "pkgs", show_progress=False
        )

    asyncio.run(run())


def solve_and_install(
    channel_urls: Sequence[str],
    specs: Sequence[str],
    platforms: Sequence[str],
    prefix: Path,
    cache: Path,
) -> set[str]:
    """Install into `prefix`; return the installed package names."""
    records = solve(channel_urls, specs, platforms, cache)
    install(records, prefix, cache)
    return {r.name.normalized for r in records}
