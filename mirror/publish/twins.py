"""Warning about a package published in both formats whose records disagree."""

from __future__ import annotations

import logging
from collections.abc import Collection

from mirror.core.twins import disagreeing_twins, twin_of
from mirror.publish.step import PublishRun

log = logging.getLogger(__name__)


def warn_disagreeing_twins(run: PublishRun, changed: Collection[str]) -> int:
    """Log each changed record whose other-format twin says something else; how many."""
    if not changed:
        return 0
    names = set(changed) | {twin for name in changed if (twin := twin_of(name)) is not None}
    stored = run.catalog.records_of(run.channel, run.subdir, names)
    lookup = {filename: record.record for filename, record in stored.items()}
    found = disagreeing_twins(lookup.items(), lookup)
    for first, second, keys in found:
        log.warning(
            "%s/%s: %s and %s are one package in two formats but their records disagree on %s;"
            " conda and rattler may install either: rebuild one, or drop one format",
            run.channel,
            run.subdir,
            first,
            second,
            ", ".join(keys),
        )
    return len(found)
