"""Fine-grained upstream protocol cases (httpx.MockTransport), complementing the loopback tests."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import zstandard

from mirror import __version__
from mirror.adapters.upstream import (
    Fetched,
    HttpUpstream,
    NotModified,
    Retrier,
    Validators,
    decompress_zst,
)
from mirror.config.model import TransferSettings
from mirror.core.plan import WantedFile
from mirror.core.secrets import Redactor
from mirror.errors import UpstreamError

BODY = b'{"packages": {}, "info": {"subdir": "linux-64"}}'


def make(
    handler: Callable[[httpx.Request], httpx.Response],
    retries: int = 2,
    bearer: str | None = None,
    retried: list[str] | None = None,
) -> HttpUpstream:
    client = httpx.Client(
        transport=httpx.MockTransport(handler),
        headers={"User-Agent": f"mirror/{__version__}"},
        follow_redirects=True,
    )
    settings = TransferSettings(retries=retries, retry_backoff_s=0.0)
    log = retried if retried is not None else []
    retry = Retrier(settings, threading.Event(), log.append)
    return HttpUpstream(
        "https://up.example/chan",
        client,
        settings,
        bearer,
        Redactor(),
        retry,
        max_repodata_bytes=10_000_000,
    )


def zst_without_content_size(data: bytes) -> bytes:
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_content_size=False).stream_writer(out, closefd=False) as w:
        w.write(data)
    return out.getvalue()


def test_zstd_frames_without_content_size_and_several_frames_decompress() -> None:
    frame = zst_without_content_size(BODY)
    assert zstandard.frame_content_size(frame) == -1
    assert decompress_zst(frame, 10_000, "x") == BODY
    two = zstandard.ZstdCompressor().compress(b"[1,") + zstandard.ZstdCompressor().compress(b"2]")
    assert decompress_zst(two, 10_000, "x") == b"[1,2]"


def test_a_decompression_bomb_is_cut_off() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * 50_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(UpstreamError, match="max_repodata_size") as info:
        decompress_zst(bomb, 1_000_000, "bomb")
    assert info.value.reason == "too_large"


def test_fetch_prefers_zst_and_sends_identity_and_validators() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("If-None-Match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(
            200,
            content=zst_without_content_size(BODY),
            headers={"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"},
        )

    upstream = make(handler, bearer="tok-123456")
    first = upstream.fetch_repodata("linux-64", None, skip_zst=False)
    assert (
        isinstance(first, Fetched)
        and bytes(first.repodata.top_level["info"]) == b'{"subdir": "linux-64"}'
    )
    assert first.validators == Validators(
        "repodata.json.zst", '"v1"', "Mon, 01 Jan 2024 00:00:00 GMT"
    )
    second = upstream.fetch_repodata("linux-64", first.validators, skip_zst=False)
    assert isinstance(second, NotModified)
    assert str(seen[0].url) == "https://up.example/chan/linux-64/repodata.json.zst"
    assert seen[0].headers["User-Agent"] == f"mirror/{__version__}"
    assert seen[0].headers["Authorization"] == "Bearer tok-123456"
    assert seen[1].headers["If-Modified-Since"] == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_validators_of_one_variant_are_not_sent_for_the_other() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=BODY)

    make(handler).fetch_repodata(
        "noarch", Validators("repodata.json.zst", '"z"', None), skip_zst=True
    )
    assert str(seen[0].url).endswith("/noarch/repodata.json")
    assert "If-None-Match" not in seen[0].headers


def test_auth_failures_are_not_retried_and_say_what_to_check() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(403)

    with pytest.raises(UpstreamError, match="check the channel token") as info:
        make(handler).fetch_repodata("noarch", None, skip_zst=False)
    assert info.value.reason == "auth" and len(calls) == 1


def test_server_errors_are_retried_then_reported() -> None:
    retried: list[str] = []
    with pytest.raises(UpstreamError, match="HTTP 502") as info:
        make(lambda r: httpx.Response(502), retries=3, retried=retried).fetch_repodata(
            "noarch", None, skip_zst=True
        )
    assert info.value.reason == "http_502" and retried == ["http_502"] * 3


def test_oversized_repodata_is_refused() -> None:
    upstream = make(lambda r: httpx.Response(200, content=b" " * 20_000_000))
    with pytest.raises(UpstreamError, match="max_repodata_size"):
        upstream.fetch_repodata("noarch", None, skip_zst=True)


def test_download_stops_reading_once_more_bytes_arrive_than_the_record_says(tmp_path: Path) -> None:
    data = b"x" * 5000
    want = WantedFile("a-1-0.conda", 100, hashlib.sha256(data[:100]).hexdigest(), None)
    upstream = make(lambda r: httpx.Response(200, content=data), retries=0)
    with pytest.raises(UpstreamError, match="more bytes") as info:
        upstream.download("noarch", want, tmp_path / "t", lambda n: None)
    assert info.value.reason == "size_mismatch"
    assert not (tmp_path / "t").exists()


def test_a_download_computes_an_md5_only_for_a_record_without_a_sha256(tmp_path: Path) -> None:
    data = b"x" * 5000
    upstream = make(lambda r: httpx.Response(200, content=data), retries=0)
    sha256 = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    with_sha = WantedFile("a-1-0.conda", len(data), sha256, md5)
    assert upstream.download("noarch", with_sha, tmp_path / "a", lambda n: None).md5 is None
    md5_only = WantedFile("b-1-0.conda", len(data), None, md5)
    assert upstream.download("noarch", md5_only, tmp_path / "b", lambda n: None).md5 == md5


def test_authorization_is_not_forwarded_to_another_host_on_redirect() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "up.example":
            return httpx.Response(302, headers={"Location": "https://cdn.example/file"})
        return httpx.Response(200, content=BODY)

    make(handler, bearer="tok-123456").fetch_repodata("noarch", None, skip_zst=True)
    assert seen[0].headers.get("Authorization") == "Bearer tok-123456"
    assert "Authorization" not in seen[1].headers
