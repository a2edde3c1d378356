"""Credentials from the standard AWS chain only, never from mirror's configuration file.

In the chain's order: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) in the
environment; then a profile (AWS_PROFILE, or a shared config/credentials file), resolved by
botocore so that SSO, assume-role and credential_process profiles work as with the AWS CLI
(imported only then: it costs about 0.1 s); otherwise the store's own chain (web identity,
ECS/EKS container credentials, EC2 instance metadata).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from mirror.errors import StoreError

Source = Literal["environment", "profile", "instance"]
# how long obstore may reuse credentials from a refreshable profile before asking again
_PROFILE_REUSE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CredentialChoice:
    """Which link of the chain applies; `static` only for the environment."""

    source: Source
    static: Credentials | None = None
    profile: str | None = None

    def describe(self) -> str:
        """For messages: where the credentials came from (never what they are)."""
        if self.source == "environment":
            return "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment"
        if self.source == "profile":
            return f"the AWS profile {self.profile or 'default'!r}"
        return "the instance's role (web identity, container or EC2 metadata)"


def choose_credentials(environ: Mapping[str, str]) -> CredentialChoice:
    key_id = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if key_id and secret:
        token = environ.get("AWS_SESSION_TOKEN") or None
        return CredentialChoice("environment", Credentials(key_id, secret, token))
    profile = environ.get("AWS_PROFILE") or None
    if profile is not None or any(path.is_file() for path in _shared_files(environ)):
        return CredentialChoice("profile", profile=profile)
    return CredentialChoice("instance")


def secrets_of(credentials: Credentials) -> list[str]:
    return [s for s in (credentials.secret_access_key, credentials.session_token) if s]


def _shared_files(environ: Mapping[str, str]) -> list[Path]:
    home = Path(environ.get("HOME", "/nonexistent"))
    return [
        Path(environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials"),
        Path(environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config"),
    ]


def make_provider(
    choice: CredentialChoice,
    environ: Mapping[str, str],
    on_secret: Callable[[list[str]], None],
) -> Callable[[], dict[str, Any]] | None:
    """The callable obstore asks for credentials, or None to let obstore's own chain find
    them. `on_secret` learns every secret handed out, so that messages can mask it."""
    if choice.static is not None:
        on_secret(secrets_of(choice.static))
        return _StaticProvider(choice.static)
    if choice.source == "profile":
        return _ProfileProvider(choice.profile, environ, on_secret)
    return None


class _StaticProvider:
    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return "<credentials from the environment>"

    def __call__(self) -> dict[str, Any]:
        c = self._credentials
        return {
            "access_key_id": c.access_key_id,
            "secret_access_key": c.secret_access_key,
            "token": c.session_token,
            "expires_at": None,
        }


class _ProfileProvider:
    """botocore's resolution of a profile; it refreshes temporary credentials itself."""

    def __init__(
        self,
        profile: str | None,
        environ: Mapping[str, str],
        on_secret: Callable[[list[str]], None],
    ) -> None:
        # imported here: only profile users pay for botocore's import
        import botocore.exceptions
        import botocore.session

        self._lock = threading.Lock()
        self._on_secret = on_secret
        session = botocore.session.Session(profile=profile)
        for variable, setting in (
            ("AWS_SHARED_CREDENTIALS_FILE", "credentials_file"),
            ("AWS_CONFIG_FILE", "config_file"),
        ):
            if environ.get(variable):
                session.set_config_variable(setting, environ[variable])
        name = profile or "default"
        try:
            self._credentials = session.get_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(
                f"cannot load the AWS profile {name!r}: {type(exc).__name__}; check AWS_PROFILE "
                "and ~/.aws/config (or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE)"
            ) from None
        if self._credentials is None:
            raise StoreError(
                f"the AWS profile {name!r} gives no credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or give the profile credentials (aws configure)"
            )

    def __repr__(self) -> str:
        return "<credentials from an AWS profile>"

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            frozen = self._credentials.get_frozen_credentials()
        self._on_secret([s for s in (frozen.secret_key, frozen.token) if s])
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": datetime.now(UTC) + _PROFILE_REUSE,
        }
