"""A typed S3 bucket under a prefix: stat, read, ranged read, conditional and checksummed
writes, multipart uploads from disk, listings, deletes; every failure a MirrorError."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import obstore
from obstore.store import S3Store

from mirror.adapters.objectstore.connect import (
    Endpoint,
    path_style_url,
    resolve_endpoint,
    store_settings,
)
from mirror.adapters.objectstore.credentials import choose_credentials, make_provider
from mirror.adapters.objectstore.failures import Context, Diagnosis, diagnose
from mirror.adapters.objectstore.objects import (
    SHA256_METADATA,
    Listing,
    ObjectStat,
    etag_names,
    relative_to,
    stat_from_meta,
)
from mirror.adapters.objectstore.reader import ObjectReader, resuming_chunks
from mirror.adapters.objectstore.retry import Retrier, RetryPolicy
from mirror.core.bucket_location import BucketLocation, check_key, check_prefix
from mirror.core.object_headers import ObjectHeaders, headers_for
from mirror.core.secrets import Redactor
from mirror.errors import StoreConflictError, StoreError, StoreMissingError

T = TypeVar("T")
MIB = 1024 * 1024


class Bucket:
    """Keys are '/'-separated and relative to the location's prefix. Writes are atomic per
    object (a PUT, or a multipart upload completed in one step), carry a SHA-256 the server
    checks, and get the Content-Type and Cache-Control of their kind of key unless told
    otherwise. Thread-safe: one Bucket serves a whole pool of workers. `proxy_url`: an HTTP
    proxy every request goes through."""

    def __init__(
        self,
        location: BucketLocation,
        *,
        environ: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        multipart_threshold_bytes: int = 64 * MIB,
        part_size_bytes: int = 16 * MIB,
        part_concurrency: int = 4,
        proxy_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        env = os.environ if environ is None else environ
        policy = retry or RetryPolicy()
        self.location = location
        self.endpoint: Endpoint = resolve_endpoint(location, env)
        self.multipart_threshold_bytes = max(multipart_threshold_bytes, 5 * MIB)
        self.part_size_bytes = max(part_size_bytes, 5 * MIB)  # S3's smallest part
        self.part_concurrency = part_concurrency
        self._redact = Redactor()
        choice = choose_credentials(env)
        self._credentials_text = choice.describe()
        provider = make_provider(choice, env, self._redact.add)
        self._store = S3Store(
            location.bucket,
            credential_provider=provider,  # type: ignore[arg-type]
            **store_settings(location, self.endpoint, policy, proxy_url=proxy_url),
        )
        self._retrier = Retrier(policy, self._redact, sleep=sleep)

    def __repr__(self) -> str:
        return f"Bucket({self.location.url} at {self.endpoint.shown})"

    def url_of(self, key: str) -> str:
        return self.location.url_of(key)

    def http_url(self, key: str) -> str:
        """Path-style URL of an object, for clients that read the bucket over plain http."""
        return path_style_url(self.location, self.endpoint, quote(key, safe="/"))

    # -- reading ----------------------------------------------------------------------------

    def head(self, key: str) -> ObjectStat | None:
        """The object's stat with its stored headers and sha256, or None if there is none."""
        check_key(self.location, key)

        def op() -> ObjectStat | None:
            try:
                result = obstore.get(self._store, key, options={"head": True})
            except FileNotFoundError as exc:
                if diagnose(exc).kind == "missing":
                    return None
                raise
            return stat_from_meta(result.meta, result.attributes)

        return self._call(op, "checking", key)

    def get_bytes(self, key: str) -> bytes:
        """The whole object; StoreMissingError if there is none."""
        return self.get_object(key)[0]

    def get_object(self, key: str) -> tuple[bytes, ObjectStat]:
        """The whole object and its stat (whose etag a later `if_match` write can name)."""
        check_key(self.location, key)

        def op() -> tuple[bytes, ObjectStat]:
            result = obstore.get(self._store, key)
            data = bytes(result.bytes())
            return data, stat_from_meta(result.meta, result.attributes)

        return self._call(op, "reading", key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer if it ends sooner)."""
        check_key(self.location, key)
        if not 0 <= start < end:
            raise StoreError(f"reading {self.url_of(key)}: empty or negative range {start}-{end}")
        return self._call(
            lambda: bytes(obstore.get_range(self._store, key, start=start, end=end)),
            "reading",
            key,
        )

    def get_suffix(self, key: str, length: int) -> bytes:
        """The last `length` bytes (a zip's central directory) without knowing the size."""
        check_key(self.location, key)
        options: Any = {"range": {"suffix": length}}
        return self._call(
            lambda: bytes(obstore.get(self._store, key, options=options).bytes()),
            "reading",
            key,
        )

    def iter_bytes(self, key: str, *, chunk_bytes: int = MIB) -> Generator[bytes, None, None]:
        """The object as a stream of chunks, resumed by a ranged GET if the link breaks."""
        check_key(self.location, key)
        etag: list[str] = []

        def open_from(offset: int) -> Any:
            if not etag:
                result = obstore.get(self._store, key)
                etag.append(result.meta["e_tag"] or "")
                return result
            options: Any = {"range": {"offset": offset}, "if_match": etag[0]}
            return obstore.get(self._store, key, options=options)

        return resuming_chunks(
            open_from, self._retrier, self._ctx("reading", key), chunk_bytes=chunk_bytes
        )

    def open_read(self, key: str, *, buffer_bytes: int = 256 * 1024) -> ObjectReader:
        """A seekable file over the object; each buffer refill is one ranged GET."""
        stat = self.head(key)
        if stat is None:
            raise StoreMissingError(f"{self.url_of(key)} does not exist")
        return ObjectReader(
            self._store,
            key,
            self._retrier,
            self._ctx("reading", key),
            size=stat.size,
            buffer_bytes=buffer_bytes,
        )

    # -- listing ----------------------------------------------------------------------------

    def list_dir(self, prefix: str = "") -> Listing:
        """Objects and 'folders' directly below `prefix` ('' is the location's root)."""
        check_prefix(self.location, prefix)

        def op() -> Listing:
            result = obstore.list_with_delimiter(self._store, prefix or None)
            return Listing(
                {relative_to(prefix, m["path"]): stat_from_meta(m) for m in result["objects"]},
                sorted(relative_to(prefix, p) for p in result["common_prefixes"]),
            )

        return self._call(op, "listing", prefix)

    def walk(self, prefix: str = "") -> dict[str, ObjectStat]:
        """Every object below `prefix`, at any depth, by its path relative to `prefix`."""
        check_prefix(self.location, prefix)

        def op() -> dict[str, ObjectStat]:
            found = {}
            for chunk in obstore.list(self._store, prefix or None, chunk_size=1000):
                for meta in chunk:
                    found[relative_to(prefix, meta["path"])] = stat_from_meta(meta)
            return found

        return self._call(op, "listing", prefix)

    # -- writing ----------------------------------------------------------------------------

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        headers: ObjectHeaders | None = None,
        create_only: bool = False,
        if_match: str | None = None,
        sha256_hex: str | None = None,
    ) -> str:
        """Store `data` in one PUT and return the new ETag. `create_only`: only if no object
        is there (If-None-Match: *); `if_match`: only if the object is still that version.
        A refused condition raises StoreConflictError and writes nothing."""
        check_key(self.location, key)
        mode = _mode(create_only, if_match)
        attributes = self._attributes(key, headers, sha256_hex)
        return self._put(
            key,
            lambda: obstore.put(
                self._store, key, data, attributes=attributes, mode=mode, use_multipart=False
            )["e_tag"],
            conditional=mode != "overwrite",
            settle=lambda: self._holds_bytes(key, data),
        )

    def put_if_changed(
        self,
        key: str,
        data: bytes,
        *,
        last_etag: str | None,
        headers: ObjectHeaders | None = None,
    ) -> tuple[bool, str]:
        """Write `data` unless the object already holds it; returns (written, etag).

        `last_etag` is the ETag this writer last saw for the key (from head, get_object or a
        listing; None: it saw no object). If it is the MD5 of `data` nothing is sent at all;
        otherwise the PUT is conditional on it (If-Match, or If-None-Match: * for None), so a
        writer that lost its lease never overwrites a newer version: StoreConflictError."""
        if last_etag is not None and etag_names(last_etag, data):
            return False, last_etag
        etag = self.put_bytes(
            key, data, headers=headers, create_only=last_etag is None, if_match=last_etag
        )
        return True, etag

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        headers: ObjectHeaders | None = None,
        create_only: bool = False,
        if_match: str | None = None,
        sha256_hex: str | None = None,
    ) -> str:
        """Upload a local file, streamed from disk; above the multipart threshold in parts
        (each checksummed, several at a time). `sha256_hex`, when given, is stored as the
        object's `sha256` metadata (head() returns it). Returns the new ETag.

        Conditions on a multipart upload are checked with a HEAD just before it: obstore
        cannot yet send If-None-Match/If-Match with CompleteMultipartUpload, so two writers
        racing on one large key are not told apart there (the tree's lease prevents that)."""
        check_key(self.location, key)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot read {path} to upload it", exc) from exc
        mode = _mode(create_only, if_match)
        attributes = self._attributes(key, headers, sha256_hex)
        if size <= self.multipart_threshold_bytes:
            return self._put(
                key,
                lambda: obstore.put(
                    self._store, key, path, attributes=attributes, mode=mode, use_multipart=False
                )["e_tag"],
                conditional=mode != "overwrite",
                settle=lambda: self._holds_file(key, size, sha256_hex),
            )
        self._check_before_multipart(key, create_only, if_match)
        return self._put(
            key,
            lambda: obstore.put(
                self._store,
                key,
                path,
                attributes=attributes,
                use_multipart=True,
                chunk_size=self.part_size_bytes,
                max_concurrency=self.part_concurrency,
            )["e_tag"],
            conditional=False,
            settle=lambda: None,
        )

    def delete(self, key: str) -> None:
        """Remove the object; removing one that is not there is not an error."""
        check_key(self.location, key)
        self._call(lambda: obstore.delete(self._store, key), "deleting", key)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove these objects (in batches of up to 1,000 per request)."""
        batch = list(keys)
        for key in batch:
            check_key(self.location, key)
        if batch:
            self._call(lambda: obstore.delete(self._store, batch), "deleting", batch[0])

    # -- helpers ----------------------------------------------------------------------------

    def _ctx(self, action: str, key: str) -> Context:
        return Context(
            action,
            self.url_of(key),
            self.location.bucket,
            self.endpoint.shown,
            self._credentials_text,
        )

    def _call(self, operation: Callable[[], T], action: str, key: str) -> T:
        return self._retrier.call(operation, self._ctx(action, key))

    def _attributes(
        self, key: str, headers: ObjectHeaders | None, sha256_hex: str | None
    ) -> dict[str, str]:
        chosen = headers or headers_for(key)
        attributes = {"Content-Type": chosen.content_type}
        if chosen.cache_control:
            attributes["Cache-Control"] = chosen.cache_control
        if sha256_hex:
            attributes[SHA256_METADATA] = sha256_hex
        return attributes

    def _put(
        self,
        key: str,
        operation: Callable[[], str | None],
        *,
        conditional: bool,
        settle: Callable[[], str | None],
    ) -> str:
        """Run a PUT. If a conditional PUT is refused after an earlier try of it got no
        answer, that earlier try may be what made the condition fail: if the object now
        holds exactly what we sent, the write did happen (`settle` returns its ETag)."""
        uncertain: list[Diagnosis] = []
        try:
            etag = self._retrier.call(
                operation, self._ctx("writing", key), on_transient=uncertain.append
            )
        except StoreConflictError:
            if not (conditional and uncertain):
                raise
            etag = settle()
            if etag is None:
                raise
        return etag or ""

    def _holds_bytes(self, key: str, data: bytes) -> str | None:
        try:
            stored, stat = self.get_object(key)
        except StoreMissingError:
            return None
        return stat.etag if stored == data else None

    def _holds_file(self, key: str, size: int, sha256_hex: str | None) -> str | None:
        stat = self.head(key)
        if stat is None or sha256_hex is None:
            return None
        return stat.etag if (stat.size, stat.sha256) == (size, sha256_hex) else None

    def _check_before_multipart(self, key: str, create_only: bool, if_match: str | None) -> None:
        if not create_only and if_match is None:
            return
        stat = self.head(key)
        if create_only and stat is not None:
            raise StoreConflictError(
                f"{self.url_of(key)} was not written: it already exists and this write may "
                "only create it"
            )
        if if_match is not None and (stat is None or stat.etag != if_match):
            raise StoreConflictError(
                f"{self.url_of(key)} was not written: it changed since this writer last read "
                "it; read it again before replacing it"
            )


def _mode(create_only: bool, if_match: str | None) -> Any:
    if create_only and if_match is not None:
        raise StoreError("a write is either create-only or replace-if-unchanged, not both")
    if create_only:
        return "create"
    if if_match is not None:
        return {"e_tag": if_match}
    return "overwrite"
