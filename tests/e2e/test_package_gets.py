"""Package files come over a lean http.client path on kept-alive connections; where that path
does not serve (a redirect, a proxy in the environment) httpx carries them, with the same
result: every file verified, nothing else changed.

Real parts: the loopback upstream server (over http and over TLS with a certificate made for
the test), a redirecting server in front of it, the upstream server standing in for a forward
proxy, real package files, in-process syncs, `mirror verify`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirror.adapters.upstream import make_http_client, open_upstream
from mirror.config import load_config
from mirror.config.model import TransferSettings
from mirror.core.plan import WantedFile
from mirror.core.secrets import Redactor
from mirror.errors import UpstreamError
from mirror.health.repair import run_verify
from mirror.reports import SyncReport
from mirror.sync.run import SyncOptions, run_sync
from tests.conftest import write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import RequestRecord, UpstreamServer

SUFFIXES = (".conda", ".tar.bz2")
PACKAGES = 40
Channel = dict[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Channel]:
    root = tmp_path_factory.mktemp("gets") / "upstream"
    specs = [
        PackageSpec(f"pkg{i:03d}", "1.0", build="h0_0", subdir="linux-64",
                    fmt=".tar.bz2" if i % 3 == 0 else ".conda")
        for i in range(PACKAGES)
    ]  # fmt: skip
    return root, build_channel(root, specs)


def sync(base: Path, url: str, **channel: Any) -> tuple[SyncReport, Path]:
    base.mkdir(parents=True, exist_ok=True)
    settings = {"upstream": url, "subdirs": ["linux-64"], **channel}
    config = write_config(base, {"up": settings})
    return run_sync(load_config(config), SyncOptions()), config


def assert_complete(report: SyncReport, config: Path, channel: Channel) -> None:
    (subdir,) = report.subdirs
    assert subdir.ok, subdir.message
    tree = config.parent / "tree" / "up" / "linux-64"
    on_disk = {p.name for p in tree.iterdir() if p.name.endswith(SUFFIXES)}
    assert on_disk == set(channel["linux-64"])
    assert run_verify(load_config(config)).before.problems == []


def packages(requests: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in requests if r.match_path.endswith(SUFFIXES)]


def lean(request: RequestRecord) -> bool:
    """http.client asks for no encoding; httpx asks for gzip (and more)."""
    return request.headers.get("accept-encoding") == "identity"


def test_package_files_come_over_kept_alive_connections_repodata_over_httpx(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    with UpstreamServer(upstream[0]) as server:
        report, config = sync(tmp_path, server.url, workers=2, max_connections_per_host=2)
        requests = server.requests
    assert_complete(report, config, upstream[1])
    files = packages(requests)
    assert len(files) == PACKAGES and all(lean(r) for r in files)
    assert not any(lean(r) for r in requests if "repodata" in r.match_path)
    # two requests at once: two connections carried every file
    assert len({r.client_port for r in files}) <= 2


def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    """A server's keep-alive timeout closes idle connections (the daemon's client lives on
    between syncs): the next request takes a new connection instead of failing."""
    root, channel = upstream
    first, second = sorted(channel["linux-64"])[:2]
    with UpstreamServer(root) as server, make_http_client(4) as client:
        settings = TransferSettings(retries=0)  # a failed attempt would fail the download
        up = open_upstream(
            server.url, http=client, settings=settings, bearer_token=None, redactor=Redactor(),
            stop=threading.Event(), max_repodata_bytes=1 << 20, on_retry=lambda reason: None,
        )  # fmt: skip
        for name in (first, second):
            if name == second:
                server.drop_connections()
            record = channel["linux-64"][name]
            want = WantedFile(name, record["size"], record["sha256"], None)
            got = up.download("linux-64", want, tmp_path / name, lambda n: None)
            assert got.attempts == 1
            assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == record["sha256"]
        ports = [r.client_port for r in packages(server.requests)]
    assert len(ports) == 2 and ports[0] != ports[1]


class Redirector(ThreadingHTTPServer):
    """Answers every GET with a 302 to the same path on `target` (another origin, as a
    channel host sends its files to a CDN), after checking the bearer token."""

    daemon_threads = True

    def __init__(self, target: str, bearer: str) -> None:
        self.target, self.bearer = target, bearer
        self.seen: list[tuple[str, dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), _RedirectHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _RedirectHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Redirector

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.path, headers))
        if headers.get("authorization") != f"Bearer {self.server.bearer}":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(302)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def redirector(upstream: tuple[Path, Channel]) -> Iterator[tuple[Redirector, UpstreamServer]]:
    with UpstreamServer(upstream[0]) as cdn:
        front = Redirector(cdn.url, "tok-123456")
        thread = threading.Thread(target=front.serve_forever, daemon=True)
        thread.start()
        try:
            yield front, cdn
        finally:
            front.shutdown()
            front.server_close()
            thread.join()


def test_a_redirecting_upstream_is_followed_by_httpx_and_the_token_stays_at_home(
    redirector: tuple[Redirector, UpstreamServer],
    upstream: tuple[Path, Channel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front, cdn = redirector
    monkeypatch.setenv("UP_TOKEN", front.bearer)
    report, config = sync(tmp_path, front.url, workers=2, token_env="UP_TOKEN")
    assert_complete(report, config, upstream[1])
    asked = [(path, h) for path, h in front.seen if path.endswith(SUFFIXES)]
    assert {path.rsplit("/", 1)[-1] for path, _ in asked} == set(upstream[1]["linux-64"])
    # after the first redirects (one per thread at most), httpx asks the front directly
    assert sum(h.get("accept-encoding") == "identity" for _, h in asked) <= 2
    assert all(h.get("authorization") for _, h in front.seen)
    assert not any("authorization" in r.headers for r in cdn.requests)


def test_a_proxy_in_the_environment_carries_package_files_too(
    upstream: tuple[Path, Channel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream's name does not resolve: only the proxy (the loopback server, which
    serves absolute-form requests as a forward proxy would relay them) can reach it."""
    with UpstreamServer(upstream[0]) as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        report, config = sync(tmp_path, "http://channel.invalid", workers=2)
        files = packages(proxy.requests)
    assert_complete(report, config, upstream[1])
    assert len(files) == PACKAGES and not any(lean(r) for r in files)
    assert all(r.path.startswith("http://channel.invalid/") for r in files)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own trust anchor) and its key."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mirror test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(
    upstream: tuple[Path, Channel], certificate: tuple[Path, Path]
) -> Iterator[UpstreamServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with UpstreamServer(upstream[0], tls=context) as server:
        yield server


def test_over_https_package_files_take_the_lean_path_with_the_trust_httpx_has(
    tls_server: UpstreamServer,
    certificate: tuple[Path, Path],
    upstream: tuple[Path, Channel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the CA bundle a site sets
    report, config = sync(tmp_path, tls_server.url, workers=2)
    assert_complete(report, config, upstream[1])
    files = packages(tls_server.requests)
    assert len(files) == PACKAGES and all(lean(r) for r in files)


def test_a_certificate_nobody_vouches_for_is_refused_on_the_lean_path(
    tls_server: UpstreamServer,
    upstream: tuple[Path, Channel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    name = sorted(upstream[1]["linux-64"])[0]
    record = upstream[1]["linux-64"][name]
    with make_http_client(4) as client:
        up = open_upstream(
            tls_server.url, http=client, settings=TransferSettings(retries=0), bearer_token=None,
            redactor=Redactor(), stop=threading.Event(), max_repodata_bytes=1 << 20,
            on_retry=lambda reason: None,
        )  # fmt: skip
        want = WantedFile(name, record["size"], record["sha256"], None)
        with pytest.raises(UpstreamError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED") as e:
            up.download("linux-64", want, tmp_path / name, lambda n: None)
    assert e.value.reason == "connect"
    assert not (tmp_path / name).exists()
    assert packages(tls_server.requests) == []
