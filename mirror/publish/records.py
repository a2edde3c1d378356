"""The bytes a record is published with, and upstream's top-level keys as the catalog keeps them."""

from __future__ import annotations

import msgspec

from mirror.adapters.catalog import StoredRecord
from mirror.core.patches import PatchSet, patch_record
from mirror.core.repodata_doc import (
    with_indexed_timestamp,
)


def pack_top_level(top_level: dict[str, bytes]) -> bytes:
    return msgspec.msgpack.encode({key: bytes(value) for key, value in top_level.items()})


def unpack_top_level(packed: bytes | None) -> dict[str, bytes]:
    if not packed:
        return {}
    decoded = msgspec.msgpack.decode(packed)
    return {str(k): bytes(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}


def final_record(stored: StoredRecord, patches: PatchSet) -> bytes | None:
    """The bytes a record is published with: CEP-47 timestamp added, patches applied."""
    raw = with_indexed_timestamp(stored.record, stored.indexed_ms)
    return patch_record(patches, stored.filename, raw)
