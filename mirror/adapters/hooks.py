"""Site commands run around bundles (signing a manifest, verifying a signature)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from mirror.errors import BundleError

HOOK_TIMEOUT_S = 300


def run_hook(command: Sequence[str], replacements: dict[str, Path], what: str) -> None:
    """Run `command` (no shell) with `{name}` placeholders replaced by paths; BundleError with
    the command's own output when it fails."""
    args = list(command)
    for key, path in replacements.items():
        args = [a.replace("{" + key + "}", str(path)) for a in args]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=HOOK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"bundles.{what} {args[0]!r} could not run: {exc}") from None
    if done.returncode != 0:
        raise BundleError(
            f"bundles.{what} {args[0]!r} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[:500]}"
        )
