"""Retry-After as upstreams send it (RFC 9110 10.2.3): seconds or an HTTP-date, bounded; and
what the http upstream does with a 429 or 503 that carries one."""

from __future__ import annotations

import email.utils
import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror import __version__
from mirror.adapters.upstream import HttpUpstream, Retrier
from mirror.adapters.upstream.http import PacedClient
from mirror.adapters.upstream.pacing import HostPacer
from mirror.config.model import TransferSettings
from mirror.core.retry_after import retry_after_s
from mirror.core.secrets import Redactor
from mirror.errors import UpstreamError

NOW = 1_800_000_000.0
BOUND = 300.0


def test_delta_seconds_are_read_and_bounded() -> None:
    assert retry_after_s("120", NOW, BOUND) == 120.0
    assert retry_after_s(" 0 ", NOW, BOUND) == 0.0
    assert retry_after_s("2.5", NOW, BOUND) == 2.5
    assert retry_after_s("86400", NOW, BOUND) == BOUND
    assert retry_after_s("9" * 400, NOW, BOUND) == BOUND


def test_an_http_date_is_read_against_the_wall_clock_and_bounded() -> None:
    assert retry_after_s(email.utils.formatdate(NOW + 30, usegmt=True), NOW, BOUND) == 30.0
    assert retry_after_s(email.utils.formatdate(NOW + 3600, usegmt=True), NOW, BOUND) == BOUND
    assert retry_after_s(email.utils.formatdate(NOW - 30, usegmt=True), NOW, BOUND) == 0.0
    # the obsolete RFC 850 and asctime forms are HTTP-dates too
    assert retry_after_s("Sunday, 06-Nov-94 08:49:37 GMT", NOW, BOUND) == 0.0
    assert retry_after_s("Sun Nov  6 08:49:37 1994", NOW, BOUND) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1e3", "Tue, 99 Foo 2024", "٣"])
def test_anything_else_is_no_retry_after(value: str | None) -> None:
    assert retry_after_s(value, NOW, BOUND) is None


@settings(derandomize=True, max_examples=300)
@given(st.text(max_size=40), st.floats(0, 4e9), st.floats(0, 1e4))
def test_any_header_gives_none_or_a_wait_within_the_bound(
    value: str, now: float, bound: float
) -> None:
    wait = retry_after_s(value, now, bound)
    assert wait is None or 0.0 <= wait <= bound


def upstream_answering(response: httpx.Response, pacer: HostPacer) -> HttpUpstream:
    client = PacedClient(
        pacer,
        transport=httpx.MockTransport(lambda request: response),
        headers={"User-Agent": f"mirror/{__version__}"},
    )
    settings = TransferSettings(retries=0, workers=8, max_retry_after_s=60.0)
    retry = Retrier(settings, threading.Event(), lambda reason: None)
    return HttpUpstream(
        "https://up.example/chan", client, settings, None, Redactor(), retry, 10_000_000
    )


@pytest.mark.parametrize("status", [429, 503])
def test_a_refusal_halves_the_hosts_limit_and_its_message_says_how_long_to_wait(
    status: int,
) -> None:
    pacer = HostPacer()
    upstream = upstream_answering(httpx.Response(status, headers={"Retry-After": "7"}), pacer)
    with pytest.raises(UpstreamError, match=r"HTTP \d+; it asks to wait 7 s \(Retry-After\)") as e:
        upstream.fetch_small("https://up.example/chan/linux-64/x.json", None, 1000)
    assert e.value.reason == f"http_{status}"
    assert pacer.limit("https://up.example") == 4


def test_a_server_error_without_pushback_leaves_the_limit_alone() -> None:
    pacer = HostPacer()
    upstream = upstream_answering(httpx.Response(500), pacer)
    with pytest.raises(UpstreamError, match=r"HTTP 500\)$"):
        upstream.fetch_small("https://up.example/chan/linux-64/x.json", None, 1000)
    assert pacer.limit("https://up.example") == 8


def test_download_threads_follow_the_hosts_limit() -> None:
    """A pool runs as many threads as the host may have requests in flight: `workers` at
    first, then the adaptive limit (here halved by a refusal)."""
    pacer = HostPacer()
    upstream = upstream_answering(httpx.Response(503, headers={"Retry-After": "1"}), pacer)
    assert upstream.transfer_threads() == 8
    with pytest.raises(UpstreamError):
        upstream.fetch_small("https://up.example/chan/linux-64/x.json", None, 1000)
    assert upstream.transfer_threads() == 4
