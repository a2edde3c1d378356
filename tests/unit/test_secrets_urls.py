"""Masking secrets in URLs never fails, even on text urllib cannot split."""

from __future__ import annotations

import pytest

from mirror.core.secrets import MASK, redact_url, url_secrets


@pytest.mark.parametrize(
    "url", ["http://u:hunter2pass@[::1:bad/channel", "https://user:hunter2pass@host]/c"]
)
def test_a_url_urllib_cannot_split_is_still_masked(url: str) -> None:
    assert "hunter2pass" in url_secrets(url)
    shown = redact_url(url)
    assert "hunter2pass" not in shown
    assert MASK in shown


def test_a_well_formed_url_keeps_its_user_and_host() -> None:
    assert redact_url("https://me:hunter2pass@host:8443/t/tok-12345/c") == (
        f"https://me:{MASK}@host:8443/t/{MASK}/c"
    )
