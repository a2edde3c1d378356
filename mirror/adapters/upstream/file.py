"""An upstream on a local disk or share (file://); validators are the size and mtime."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from mirror.adapters.upstream.retry import Retrier
from mirror.adapters.upstream.values import (
    Downloaded,
    Fetched,
    FetchedBytes,
    NotModified,
    OnBytes,
    Validators,
)
from mirror.adapters.upstream.verified import (
    CHUNK_BYTES,
    decompress_zst,
    parse_checked,
    write_verified,
)
from mirror.core.plan import WantedFile
from mirror.errors import (
    UpstreamError,
)

REPODATA_JSON = "repodata.json"
REPODATA_ZST = "repodata.json.zst"


class FileUpstream:
    """A channel on a local disk or share (file://). Validators are the file's size and mtime."""

    def __init__(self, root: Path, retry: Retrier, max_repodata_bytes: int) -> None:
        self._root = root
        self._retry = retry
        self._max_repodata = max_repodata_bytes
        self.shown_url = root.as_uri()

    def transfer_threads(self) -> int:
        return self._retry.settings.workers

    def fetch_repodata(
        self, subdir: str, previous: Validators | None, skip_zst: bool
    ) -> NotModified | Fetched:
        # Reading the plain JSON avoids a decompression when both exist on a local disk.
        for variant in (REPODATA_JSON, REPODATA_ZST):
            path = self._root / subdir / variant
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UpstreamError(f"{path}: cannot read: {exc.strerror}", reason="io") from exc
            validators = Validators(variant, f'"{st.st_size}-{st.st_mtime_ns}"', None)
            if previous == validators:
                return NotModified(validators)
            if st.st_size > self._max_repodata:
                raise UpstreamError(
                    f"{path}: larger than max_repodata_size", reason="too_large", retryable=False
                )
            body: bytes | bytearray = path.read_bytes()
            if variant == REPODATA_ZST:
                body = decompress_zst(body, self._max_repodata, str(path))
            parsed = parse_checked(body, str(path))
            return Fetched(parsed, validators, zst_missing=False, transferred_bytes=st.st_size)
        raise UpstreamError(
            f"{self._root / subdir}: no repodata.json there; is this a conda channel with that "
            "subdir?",
            reason="not_found",
            retryable=False,
        )

    def file_url(self, subdir: str, name: str) -> str:
        return (self._root / subdir / name).as_uri()

    def fetch_small(
        self, url: str, previous: Validators | None, max_bytes: int, *, hash_checked: bool = False
    ) -> NotModified | FetchedBytes:
        """A small file by file:// URL; its validators are its size and mtime."""
        path = Path(unquote(urlsplit(url).path))

        def attempt() -> NotModified | FetchedBytes:
            try:
                with open(path, "rb") as handle:
                    st = os.fstat(handle.fileno())
                    validators = Validators(path.name, f'"{st.st_size}-{st.st_mtime_ns}"', None)
                    if previous == validators:
                        return NotModified(validators)
                    data = handle.read(max_bytes + 1)
            except FileNotFoundError:
                raise UpstreamError(
                    f"{path}: not found upstream", reason="not_found", retryable=False
                ) from None
            except OSError as exc:
                raise UpstreamError(f"{path}: cannot read: {exc.strerror}", reason="io") from None
            if len(data) > max_bytes:
                raise UpstreamError(
                    f"{path}: larger than {max_bytes:,} bytes; refused",
                    reason="too_large",
                    retryable=False,
                )
            return FetchedBytes(data, validators)

        result, _ = self._retry.run(attempt)
        return result

    def download(self, subdir: str, want: WantedFile, dest: Path, on_bytes: OnBytes) -> Downloaded:
        source = self._root / subdir / want.filename

        def attempt() -> Downloaded:
            try:
                handle = open(source, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                raise UpstreamError(
                    f"{source}: not found upstream", reason="not_found", retryable=False
                ) from None
            except OSError as exc:
                raise UpstreamError(f"{source}: cannot read: {exc.strerror}", reason="io") from None
            with handle:
                chunks = _read_chunks(handle, source)
                return write_verified(chunks, dest, want, on_bytes, self._retry.stop, str(source))

        result, tries = self._retry.run(attempt)
        return Downloaded(result.size, result.sha256, result.md5, tries)


def _read_chunks(handle: BinaryIO, source: Path) -> Iterator[bytes]:
    """A failing read is the upstream's fault; write_verified takes any OSError for ours."""
    try:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
    except OSError as exc:
        raise UpstreamError(f"{source}: cannot read: {exc.strerror}", reason="io") from None
