"""Regenerate config/demo-channel, the demo upstream: `python -m tests.support.make_demo_channel`.

Real .conda and .tar.bz2 files with dependencies between them, built deterministically, so
regenerating gives the same bytes and the demo works offline on a fresh machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.builder import PackageSpec, build_channel

DEMO_DIR = Path(__file__).resolve().parents[2] / "config" / "demo-channel"
DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # 2023-11-14


def demo_specs() -> list[PackageSpec]:
    """A small world: a runtime, a library on it, an app on the library, data, a GPL tool."""
    specs: list[PackageSpec] = []
    for i, version in enumerate(("1.0", "1.1", "2.0")):
        specs.append(
            PackageSpec(
                "demo-runtime",
                version,
                build="h1a2b3c_0",
                subdir="linux-64",
                timestamp_ms=T0 + i * DAY_MS,
                license="BSD-3-Clause",
                run_exports={"weak": [f"demo-runtime >={version}"]},
            )
        )
    # the same build in both formats: mirror keeps only the .conda unless told otherwise
    specs.append(
        PackageSpec(
            "demo-runtime",
            "1.1",
            build="h1a2b3c_0",
            subdir="linux-64",
            fmt=".tar.bz2",
            timestamp_ms=T0 + DAY_MS,
            license="BSD-3-Clause",
        )
    )
    for i, version in enumerate(("1.9", "1.10", "2.0rc1")):
        for pin in ("1", "2"):
            specs.append(
                PackageSpec(
                    "demo-numlib",
                    version,
                    build=f"rt{pin}_0",
                    subdir="linux-64",
                    depends=(f"demo-runtime >={pin}.0,<{int(pin) + 1}",),
                    timestamp_ms=T0 + (3 + i) * DAY_MS,
                    license="BSD-3-Clause",
                )
            )
    for i, version in enumerate(("0.1", "0.2")):
        specs.append(
            PackageSpec(
                "demo-app",
                version,
                build="pyh0_0",
                depends=("demo-numlib >=1.10", "demo-data"),
                timestamp_ms=T0 + (6 + i) * DAY_MS,
                license="MIT",
            )
        )
    specs.append(
        PackageSpec("demo-data", "2024.1", timestamp_ms=T0 + 8 * DAY_MS, license="CC0-1.0")
    )
    specs.append(
        PackageSpec(
            "demo-gpl-tool",
            "1.0",
            build="h0_0",
            subdir="linux-64",
            timestamp_ms=T0 + 9 * DAY_MS,
            license="GPL-3.0-or-later",
            license_family="GPL",
        )
    )
    return specs


def main() -> None:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    channel = build_channel(DEMO_DIR, demo_specs())
    count = sum(len(records) for records in channel.values())
    print(f"wrote {count} packages into {DEMO_DIR}")


if __name__ == "__main__":
    main()
