"""py-rattler's solver, over repodata files we write or publish: conda's own solving semantics.

Used twice: the closure's `solve` mode solves the include specs against the records our rules
leave available (written to small temporary repodata files, only for the names a solve can
reach), and the solvability check solves against the published tree itself, as a client would.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.closure import split_virtual_package
from mirror.errors import MirrorError

SOLVE_TIMEOUT_S = 300.0

# What a client on each platform typically reports, as conda-forge builds assume: a glibc
# 2.28 Linux, macOS 11 on arm64 and 10.15 on x86_64. No CUDA unless configured.
DEFAULT_VIRTUAL_PACKAGES = {
    "linux": ("__unix=0=0", "__linux=5.10=0", "__glibc=2.28=0"),
    "osx-arm64": ("__unix=0=0", "__osx=11.0=0"),
    "osx": ("__unix=0=0", "__osx=10.15=0"),
    "win": ("__win=0=0",),
}
_ARCHSPEC = {"64": "x86_64", "arm64": "arm64", "aarch64": "aarch64", "ppc64le": "ppc64le"}


class SolveError(MirrorError):
    """The specs do not solve; the message is the solver's own explanation."""


@dataclass(frozen=True)
class SolveSource:
    """One channel/subdir's repodata.json on disk, in priority order with the others."""

    channel: str
    subdir: str
    path: Path


@dataclass(frozen=True)
class Solved:
    channel: str
    subdir: str
    filename: str
    name: str
    depends: tuple[str, ...]


def default_virtual_packages(platform: str) -> tuple[str, ...]:
    family = platform.split("-", 1)[0]
    found = DEFAULT_VIRTUAL_PACKAGES.get(platform) or DEFAULT_VIRTUAL_PACKAGES.get(family, ())
    arch = _ARCHSPEC.get(platform.split("-", 1)[-1])
    return found + ((f"__archspec=1={arch}",) if arch and platform != "noarch" else ())


def _virtual_package(text: str) -> Any:
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    name, version, build = split_virtual_package(text)
    return GenericVirtualPackage(PackageName(name), Version(version), BuildString(build))


def solve(
    sources: Sequence[SolveSource],
    specs: Sequence[str],
    virtual_packages: Iterable[str],
    timeout_s: float = SOLVE_TIMEOUT_S,
) -> list[Solved]:
    """Solve `specs` with strict channel priority (the order of `sources`); raises SolveError."""
    import asyncio  # heavy: only when something is solved

    from rattler import Channel, SparseRepoData, solve_with_sparse_repodata

    # each channel gets a placeholder URL that says which configured channel a record came from
    base = {s.channel: f"https://solve.invalid/{i}" for i, s in enumerate(_unique(sources))}
    sparse = [SparseRepoData(Channel(base[s.channel]), s.subdir, str(s.path)) for s in sources]
    owners = {url: name for name, url in base.items()}
    try:
        records = asyncio.run(
            solve_with_sparse_repodata(
                specs=list(specs),
                sparse_repodata=sparse,
                virtual_packages=[_virtual_package(v) for v in virtual_packages],
                timeout=datetime.timedelta(seconds=timeout_s),
            )
        )
    except Exception as exc:  # rattler's SolverError and friends
        raise SolveError(_clean_message(str(exc))) from exc
    finally:
        for repodata in sparse:
            repodata.close()
    out = []
    for record in records:
        url = str(record.url)
        channel_url, subdir, filename = url.rsplit("/", 2)
        out.append(
            Solved(
                channel=owners.get(channel_url, channel_url),
                subdir=subdir,
                filename=filename,
                name=record.name.normalized,
                depends=tuple(record.depends),
            )
        )
    return out


def _unique(sources: Sequence[SolveSource]) -> list[SolveSource]:
    seen: dict[str, SolveSource] = {}
    for source in sources:
        seen.setdefault(source.channel, source)
    return list(seen.values())


def _clean_message(message: str) -> str:
    """rattler's explanation, without our placeholder channel URLs."""
    return re.sub(r"https://solve\.invalid/\d+/?", "", message).strip()
