"""The upstream test server behaves like a real channel host and misbehaves on demand."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rattler
import zstandard

from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import FAULT_KINDS, UpstreamServer

REPODATA = "/noarch/repodata.json"


@pytest.fixture
def channel(tmp_path: Path) -> Path:
    root = tmp_path / "channel"
    build_channel(
        root,
        [
            PackageSpec("liba", "1.0"),
            PackageSpec("app", "1.0", depends=("liba",), fmt=".tar.bz2"),
            PackageSpec("native", "1.0", subdir="linux-64"),
        ],
    )
    (tmp_path / "secret.txt").write_bytes(b"outside the channel\n")
    return root


@pytest.fixture
def server(channel: Path) -> Iterator[UpstreamServer]:
    with UpstreamServer(channel, slow_delay=0.5) as srv:
        yield srv


@pytest.fixture
def client(server: UpstreamServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_serves_files_with_validators(
    server: UpstreamServer, client: httpx.Client, channel: Path
) -> None:
    expected = (channel / "noarch" / "repodata.json").read_bytes()
    r = client.get(REPODATA)
    assert r.status_code == 200
    assert r.content == expected
    assert r.headers["content-length"] == str(len(expected))
    assert r.headers["content-type"] == "application/json"
    assert r.headers["etag"] == f'"{hashlib.sha256(expected).hexdigest()}"'
    mtime = (channel / "noarch" / "repodata.json").stat().st_mtime
    assert r.headers["last-modified"] == email.utils.formatdate(mtime, usegmt=True)

    head = client.head(REPODATA)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(expected))
    assert head.headers["etag"] == r.headers["etag"]

    pkg = client.get("/noarch/liba-1.0-0.conda")
    assert pkg.content == (channel / "noarch" / "liba-1.0-0.conda").read_bytes()

    assert client.get("/noarch/missing.conda").status_code == 404
    assert client.get("/noarch").status_code == 404
    assert client.get("/noarch/").status_code == 404
    assert client.get("/").status_code == 404

    records = server.requests
    assert [(rec.method, rec.status) for rec in records[:2]] == [("GET", 200), ("HEAD", 200)]
    assert records[0].body_bytes_sent == len(expected)
    assert records[1].body_bytes_sent == 0
    assert records[0].headers["user-agent"].startswith("python-httpx")
    assert server.count("*repodata.json") == 2
    assert server.count("*", status=404) == 4
    server.clear_log()
    assert server.requests == []


def test_conditional_requests(server: UpstreamServer, client: httpx.Client, channel: Path) -> None:
    first = client.get(REPODATA)
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]

    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"nope", W/{etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": last_modified},
    ):
        r = client.get(REPODATA, headers=headers)
        assert r.status_code == 304, headers
        assert r.content == b""
        assert r.headers["etag"] == etag

    # A stale ETag wins over a fresh If-Modified-Since (If-None-Match takes precedence).
    stale = client.get(
        REPODATA, headers={"If-None-Match": '"0"', "If-Modified-Since": last_modified}
    )
    assert stale.status_code == 200
    long_ago = email.utils.formatdate(0, usegmt=True)
    assert client.get(REPODATA, headers={"If-Modified-Since": long_ago}).status_code == 200
    assert server.count(REPODATA, status=304) == 4

    # A changed file gets a new ETag and no longer matches the old one.
    path = channel / "noarch" / "repodata.json"
    path.write_bytes(path.read_bytes() + b" ")
    os.utime(path, (time.time() + 5, time.time() + 5))
    changed = client.get(REPODATA, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.content.endswith(b" ")


def test_status_faults(server: UpstreamServer, client: httpx.Client) -> None:
    for kind in ("500", "503", "404"):
        server.add_fault("*repodata.json*", kind)
        r = client.get(REPODATA)
        assert r.status_code == int(kind)
        assert len(r.content) < 100
    assert client.get(REPODATA).status_code == 200
    assert [rec.fault for rec in server.requests] == ["500", "503", "404", None]


def test_fault_count_and_glob(server: UpstreamServer, client: httpx.Client) -> None:
    server.add_fault("*/linux-64/*.conda", "503", count=2)
    assert client.get("/noarch/liba-1.0-0.conda").status_code == 200
    assert client.get(REPODATA).status_code == 200
    assert client.get("/linux-64/native-1.0-0.conda").status_code == 503
    assert client.get("/linux-64/native-1.0-0.conda").status_code == 503
    assert client.get("/linux-64/native-1.0-0.conda").status_code == 200
    assert server.count("/linux-64/*", status=503) == 2

    server.add_fault("*", "500", count=5)
    server.clear_faults()
    assert client.get(REPODATA).status_code == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        server.add_fault("*", "teapot")


def test_reset_fault(server: UpstreamServer, client: httpx.Client) -> None:
    server.add_fault(REPODATA, "reset")
    with pytest.raises(httpx.TransportError) as excinfo:
        client.get(REPODATA)
    assert isinstance(excinfo.value, httpx.ReadError | httpx.RemoteProtocolError)
    assert client.get(REPODATA).status_code == 200
    record = server.requests[0]
    assert (record.fault, record.status, record.body_bytes_sent) == ("reset", 0, 0)


def test_truncate_fault(server: UpstreamServer, client: httpx.Client, channel: Path) -> None:
    size = (channel / "noarch" / "repodata.json").stat().st_size
    server.add_fault(REPODATA, "truncate")
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        client.get(REPODATA)
    assert server.requests[0].body_bytes_sent == size // 2
    assert client.get(REPODATA).status_code == 200


def test_corrupt_fault(server: UpstreamServer, client: httpx.Client, channel: Path) -> None:
    expected = (channel / "noarch" / "liba-1.0-0.conda").read_bytes()
    server.add_fault("*.conda", "corrupt")
    r = client.get("/noarch/liba-1.0-0.conda")
    assert r.status_code == 200
    assert len(r.content) == len(expected)
    diffs = [i for i, (a, b) in enumerate(zip(r.content, expected, strict=True)) if a != b]
    assert diffs == [len(expected) // 2]
    # The ETag still names the real file: corruption happened "in transit".
    assert r.headers["etag"] == f'"{hashlib.sha256(expected).hexdigest()}"'


def test_wrong_length_fault(server: UpstreamServer, client: httpx.Client, channel: Path) -> None:
    expected = (channel / "noarch" / "repodata.json").read_bytes()
    server.add_fault(REPODATA, "wrong_length")
    r = client.get(REPODATA)
    # Content-Length is too small: the client sees success with a short body.
    assert r.status_code == 200
    assert r.content == expected[: len(expected) // 2]
    assert client.get(REPODATA).content == expected


def test_body_faults_ignore_conditional_headers(
    server: UpstreamServer, client: httpx.Client
) -> None:
    etag = client.get(REPODATA).headers["etag"]
    server.add_fault(REPODATA, "corrupt")
    assert client.get(REPODATA, headers={"If-None-Match": etag}).status_code == 200
    assert client.get(REPODATA, headers={"If-None-Match": etag}).status_code == 304


def test_slow_fault(channel: Path) -> None:
    with UpstreamServer(channel) as server, httpx.Client(base_url=server.url) as client:
        server.add_fault(REPODATA, "slow")
        start = time.perf_counter()
        assert client.get(REPODATA).status_code == 200
        assert time.perf_counter() - start >= 2.0
        start = time.perf_counter()
        assert client.get(REPODATA).status_code == 200
        assert time.perf_counter() - start < 1.0
        with pytest.raises(httpx.ReadTimeout):
            server.add_fault(REPODATA, "slow")
            client.get(REPODATA, timeout=0.2)


def test_not_json_fault(server: UpstreamServer, client: httpx.Client) -> None:
    server.add_fault("*.json", "not_json")
    r = client.get(REPODATA)
    assert (r.status_code, r.content) == (200, b"<html>oops")
    with pytest.raises(json.JSONDecodeError):
        r.json()
    assert server.requests[0].fault == "not_json"


def test_empty_repodata_fault(server: UpstreamServer, client: httpx.Client) -> None:
    server.add_fault("*repodata.json*", "empty_repodata", count=2)
    plain = client.get("/linux-64/repodata.json").json()
    zst = client.get("/linux-64/repodata.json.zst")
    assert zst.status_code == 200
    assert json.loads(zstandard.ZstdDecompressor().decompress(zst.content)) == plain
    assert plain["info"] == {"subdir": "linux-64"}
    assert plain["packages"] == plain["packages.conda"] == {}
    assert plain["repodata_version"] == 1
    real = client.get("/linux-64/repodata.json").json()
    assert list(real["packages.conda"]) == ["native-1.0-0.conda"]


def test_every_fault_kind_is_covered() -> None:
    assert {
        "500",
        "503",
        "404",
        "reset",
        "truncate",
        "corrupt",
        "wrong_length",
        "slow",
        "not_json",
        "empty_repodata",
    } == FAULT_KINDS


def _fault_sequence(channel: Path, seed: int) -> list[str | None]:
    with UpstreamServer(channel) as server, httpx.Client(base_url=server.url) as client:
        server.set_fault_rate(0.5, ["500", "503", "404"], seed=seed, path_glob="*.json")
        for _ in range(40):
            client.get(REPODATA)
        client.get("/noarch/liba-1.0-0.conda")  # outside the glob: never faulted
        assert server.requests[-1].fault is None
        return [rec.fault for rec in server.requests[:-1]]


def test_fault_rate_is_seeded(channel: Path) -> None:
    first = _fault_sequence(channel, seed=7)
    assert first == _fault_sequence(channel, seed=7)
    assert first != _fault_sequence(channel, seed=8)
    faulted = [kind for kind in first if kind is not None]
    assert 5 < len(faulted) < 35
    assert set(faulted) <= {"500", "503", "404"}


def test_fault_rate_clears(server: UpstreamServer, client: httpx.Client) -> None:
    server.set_fault_rate(1.0, ["503"], seed=1)
    assert client.get(REPODATA).status_code == 503
    server.clear_faults()
    assert client.get(REPODATA).status_code == 200
    with pytest.raises(ValueError):
        server.set_fault_rate(1.5, ["503"], seed=1)


def test_token_enforced(channel: Path) -> None:
    with UpstreamServer(channel, token="tk-123") as server:
        assert server.url == f"http://127.0.0.1:{server.port}/t/tk-123"
        with httpx.Client() as client:
            assert client.get(server.url + REPODATA).status_code == 200
            assert client.get(server.base_url + REPODATA).status_code == 403
            assert client.get(f"{server.base_url}/t/other{REPODATA}").status_code == 403
            server.add_fault(REPODATA, "503")  # globs see the path without the token
            assert client.get(server.url + REPODATA).status_code == 503
        assert [rec.status for rec in server.requests] == [200, 403, 403, 503]
        assert server.requests[0].path == f"/t/tk-123{REPODATA}"
        assert server.requests[0].match_path == REPODATA
        # Rejected requests keep their raw path as match_path.
        assert server.count(REPODATA) == 3
        assert server.count(REPODATA, status=403) == 1


def test_bearer_enforced(channel: Path) -> None:
    with UpstreamServer(channel, token="tk", bearer="s3cret") as server, httpx.Client() as client:
        missing = client.get(server.url + REPODATA)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.get(server.url + REPODATA, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = client.get(server.url + REPODATA, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert server.requests[2].headers["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/noarch/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/noarch/..%2f..%2fsecret.txt",
        "//secret.txt",
        "/noarch/%00",
    ],
)
def test_path_traversal_refused(server: UpstreamServer, target: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 404
    assert b"outside" not in body


def test_symlink_out_of_root_refused(server: UpstreamServer, channel: Path) -> None:
    (channel / "noarch" / "link.txt").symlink_to(channel.parent / "secret.txt")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/noarch/link.txt").status_code == 404


def test_keep_alive_is_fast(server: UpstreamServer, client: httpx.Client) -> None:
    # Without TCP_NODELAY each response is ~40 ms late: 100 requests would take ~4 s.
    client.get("/noarch/liba-1.0-0.conda")
    start = time.perf_counter()
    for _ in range(100):
        assert client.get("/noarch/liba-1.0-0.conda").status_code == 200
    assert time.perf_counter() - start < 1.0


def test_quiet_and_clean_shutdown(channel: Path, capfd: pytest.CaptureFixture[str]) -> None:
    threads_before = threading.active_count()
    server = UpstreamServer(channel)
    with server, httpx.Client(base_url=server.url) as client:
        server.add_fault("*", "reset")
        with pytest.raises(httpx.TransportError):
            client.get(REPODATA)
        server.add_fault("*", "truncate")
        with pytest.raises(httpx.TransportError):
            client.get(REPODATA)
        client.get("/missing")
        client.get(REPODATA)  # leaves an idle keep-alive connection open
        port = server.port
        start = time.perf_counter()
    assert time.perf_counter() - start < 1.0
    assert server.errors == []
    assert threading.active_count() == threads_before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


async def _solve_and_install(url: str, work: Path) -> list[str]:
    records = await rattler.solve(
        sources=[rattler.Channel(url + "/")],
        specs=["app"],
        gateway=rattler.Gateway(cache_dir=work / "repodata-cache"),
        platforms=["linux-64", "noarch"],
    )
    await rattler.install(
        records,
        target_prefix=work / "env",
        cache_dir=work / "pkgs-cache",
        show_progress=False,
    )
    return sorted(r.name.normalized for r in records)


def test_rattler_installs_over_http(channel: Path, tmp_path: Path) -> None:
    with UpstreamServer(channel, token="tk") as server:
        names = asyncio.run(_solve_and_install(server.url, tmp_path))
        assert names == ["app", "liba"]
        assert server.count("/noarch/repodata.json*", status=200) >= 1
        assert server.count("/noarch/*.conda", status=200) == 1
    assert (tmp_path / "env" / "share" / "app" / "1.0.txt").exists()
