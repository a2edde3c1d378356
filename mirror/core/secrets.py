"""Keep tokens out of everything a person or a scraper can read: logs, errors, status, metrics."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# anaconda.org style: https://conda.anaconda.org/t/<token>/<channel>
_URL_TOKEN = re.compile(r"/t/([^/]+)")
# scheme://user:password@ (for text urllib cannot split)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)(?:[^/?#@\s]*?:)?([^/?#@\s]*)@")


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: a /t/<token>/ segment and a user:password."""
    found = [m.group(1) for m in _URL_TOKEN.finditer(url)]
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL urllib can split (a stray bracket): take the userinfo whole
        userinfo = _USERINFO.match(url)
        password = userinfo.group(2) if userinfo else None
    if password:
        found.append(password)
    return found


def redact_url(url: str) -> str:
    """The URL as it may be shown: token segments and passwords masked."""
    masked = _URL_TOKEN.sub(f"/t/{MASK}", url)
    try:
        parts = urlsplit(masked)
    except ValueError:  # not a URL urllib can split: mask all userinfo
        return _USERINFO.sub(rf"\g<1>{MASK}@", masked)
    if parts.password:
        host = parts.hostname or ""
        user = f"{parts.username}:{MASK}@" if parts.username else f"{MASK}@"
        port = f":{parts.port}" if parts.port else ""
        masked = urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))
    return masked


class Redactor:
    """Masks every known secret string in a text. Secrets shorter than 4 characters are not
    masked (they would shred ordinary words) and are rejected at configuration time instead."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        merged = set(self._secrets) | {s for s in secrets if len(s) >= 4}
        # longest first so that a secret containing another is masked whole
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _URL_TOKEN.sub(f"/t/{MASK}", text)
