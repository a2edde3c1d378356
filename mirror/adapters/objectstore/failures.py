"""obstore's exceptions become mirror's errors here, with what to do, and never a secret.

obstore raises a handful of classes (not found, already exists, precondition, generic) whose
text carries the HTTP status, the S3 error code and its retry count. That text also quotes
the server's error body, which for a signature mismatch echoes the canonical request (a
session token among its headers): so only the status, the code and the server's short
message are kept, and the original exception is not chained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.core.secrets import Redactor
from mirror.errors import MirrorError, StoreConflictError, StoreError, StoreMissingError

_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{0,300})</Message>")
_RETRIES = re.compile(r"\bretries: (\d+),\s*max_retries: (\d+)")
_TRANSPORT = re.compile(r"HttpError \{\s*kind: (\w+)")
# 400s that mean "the bytes arrived damaged" or "the link stalled": nothing was stored, and
# sending again is the cure
_RESEND_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "RequestTimeout"})
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccessDenied"}
)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What an obstore exception says, as far as its text tells."""

    kind: str  # missing, exists, precondition, denied, unauthenticated, generic, ...
    status: int | None = None
    code: str | None = None
    message: str | None = None
    transport: str | None = None  # Timeout, Connect, Interrupted, ... (no answer at all)
    retries: int | None = None  # how often obstore already retried this request
    max_retries: int | None = None

    @property
    def transient(self) -> bool:
        """Overload, outage or a bad link: the same request may well succeed later."""
        if self.transport is not None:
            return True
        if self.status is not None and (self.status >= 500 or self.status == 429):
            return True
        return self.code in _RESEND_CODES

    @property
    def retried_enough(self) -> bool:
        """obstore already spent its retries on this request (so we must not multiply them)."""
        return self.retries is not None and self.retries >= (self.max_retries or 0) > 0

    @property
    def worth_retrying(self) -> bool:
        return self.transient and not self.retried_enough


def diagnose(exc: BaseException) -> Diagnosis:
    text = str(exc)
    status = _first_int(_STATUS, text)
    code = _first(_CODE, text)
    retries = _RETRIES.search(text)
    return Diagnosis(
        kind=_kind_of(exc, code),
        status=status,
        code=code,
        message=_first(_MESSAGE, text),
        transport=_first(_TRANSPORT, text) if status is None else None,
        retries=int(retries.group(1)) if retries else None,
        max_retries=int(retries.group(2)) if retries else None,
    )


def _kind_of(exc: BaseException, code: str | None) -> str:
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError) or name == "NotFoundError":
        return "no_bucket" if code == "NoSuchBucket" else "missing"
    return {
        "AlreadyExistsError": "exists",
        "PreconditionError": "precondition",
        "PermissionDeniedError": "denied",
        "UnauthenticatedError": "unauthenticated",
        "InvalidPathError": "invalid_path",
        "NotSupportedError": "unsupported",
    }.get(name, "no_bucket" if code == "NoSuchBucket" else "generic")


@dataclass(frozen=True, slots=True)
class Context:
    """What was being done, to which object, where; for the messages."""

    action: str  # "reading", "writing", "listing", "deleting", "checking"
    url: str  # s3://bucket/prefix/key
    bucket: str
    endpoint: str  # already free of any userinfo
    credentials: str  # where the credentials came from, e.g. "the AWS profile 'ci'"


def translate(d: Diagnosis, ctx: Context, attempts: int, redact: Redactor) -> MirrorError:
    """The MirrorError for a diagnosed failure after `attempts` tries."""
    said = _said(d)
    if d.kind == "missing":
        return StoreMissingError(f"{ctx.url} does not exist")
    if d.kind == "no_bucket":
        return StoreError(
            f"{ctx.action} {ctx.url} failed: the bucket {ctx.bucket!r} does not exist at "
            f"{ctx.endpoint}; create it, or correct the s3:// root or storage.endpoint_url"
        )
    if d.kind == "exists":
        return StoreConflictError(
            f"{ctx.url} was not written: it already exists and this write may only create it "
            "(412 Precondition Failed); another writer, or an earlier run, put it there"
        )
    if d.kind == "precondition":
        return StoreConflictError(
            f"{ctx.url} was not written: it changed since this writer last read it (412 "
            "Precondition Failed); another writer is at work on this tree: read it again "
            "before replacing it"
        )
    if (
        d.kind in ("denied", "unauthenticated")
        or d.status in (401, 403)
        or (d.code in _CREDENTIAL_CODES)
    ):
        return StoreError(
            redact(
                f"{ctx.action} {ctx.url} was refused{said}: check the credentials "
                f"({ctx.credentials}) and that the bucket's policy lets them do this"
            )
        )
    if d.code in _RESEND_CODES:
        return StoreError(
            redact(
                f"{ctx.action} {ctx.url} failed{said} after {attempts} attempt(s): the server "
                "found the bytes damaged on the way and stored nothing; check the network "
                "path to the endpoint (a proxy that rewrites bodies?) and run again"
            )
        )
    if d.transient:
        cause = said or f" ({(d.transport or 'connection').lower()} error, no answer)"
        return StoreError(
            redact(
                f"{ctx.action} {ctx.url} failed{cause} after {attempts} attempt(s): the object "
                f"store at {ctx.endpoint} is unreachable or overloaded; check it and run again"
            )
        )
    if d.kind == "invalid_path":
        return StoreError(f"refusing object key {ctx.url!r}: the store cannot name it")
    return StoreError(
        redact(f"{ctx.action} {ctx.url} failed{said or ' (' + d.kind + ')'}; run again later")
    )


def _said(d: Diagnosis) -> str:
    """` (HTTP 503 SlowDown: Please reduce your request rate.)`, or '' without an answer."""
    if d.status is None:
        return ""
    parts = [f"HTTP {d.status}"]
    if d.code:
        parts.append(d.code + (":" if d.message else ""))
    if d.message:
        parts.append(d.message.strip())
    return f" ({' '.join(parts)})"


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _first_int(pattern: re.Pattern[str], text: str) -> int | None:
    found = _first(pattern, text)
    return int(found) if found is not None else None
