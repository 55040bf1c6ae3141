"""Verifying the OIDC ID tokens Cloud Tasks and Cloud Scheduler send to a worker.

A task endpoint is a public HTTP route, and `X-CloudTasks-*` headers prove nothing. On Cloud
Run with IAM the platform checks the token; anywhere else the app must. The check is always
the full one (signature, issuer, expiry, audience, verified e-mail, allowed account). What can
be swapped is only the trust root: Google's published certificates by default, the fake
service's in tests and in the local emulator (`trust_certificates`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from starlette.concurrency import run_in_threadpool

from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError

__all__ = [
    "GOOGLE_CERTS_URL",
    "CertificateCache",
    "task_url_audience",
    "trust_certificates",
    "verify_cloud_tasks_token",
]

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
CLOCK_SKEW_SECONDS = 10
Certificates = Mapping[str, str]
AudienceRule = Callable[[Request], Iterable[str]]


class CertificateCache:
    """Google's signing certificates, fetched on first use and kept for as long as the
    response's `Cache-Control: max-age` allows."""

    def __init__(self, url: str = GOOGLE_CERTS_URL, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._certs: Certificates = {}
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> Certificates:
        with self._lock:
            if time.monotonic() >= self._expires:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    certs = json.loads(response.read())
                    cache_control = response.headers.get("Cache-Control", "")
                match = re.search(r"max-age=(\d+)", cache_control)
                self._certs = certs
                self._expires = time.monotonic() + (int(match.group(1)) if match else 300)
            return self._certs


# The trust roots installed by `trust_certificates`, innermost last (process-wide: a test's
# app may run on another thread than the test).
_trusted: list[Callable[[], Certificates]] = []
_trusted_lock = threading.Lock()


@contextmanager
def trust_certificates(source: Callable[[], Certificates]) -> Iterator[None]:
    """Inside the block, every verifier trusts the certificates `source()` returns instead
    of Google's: the seam the pytest plugin and the emulator use. Checks stay the same."""
    with _trusted_lock:
        _trusted.append(source)
    try:
        yield
    finally:
        with _trusted_lock:
            _trusted.remove(source)


def task_url_audience(base_url: str) -> AudienceRule:
    """The audience Cloud Tasks uses when the token sets none: the full task URL.

    Accepts `base_url + path` with or without the request's query string, since the default
    audience includes the query (a common cause of 401s on Cloud Run).
    """
    base = base_url.rstrip("/")

    def audiences(request: Request) -> list[str]:
        url = base + request.url.path
        query = request.url.query
        return [url, f"{url}?{query}"] if query else [url]

    return audiences


def verify_cloud_tasks_token(
    *,
    audience: str | Sequence[str] | AudienceRule,
    service_accounts: Iterable[str],
    certs_url: str = GOOGLE_CERTS_URL,
) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A FastAPI dependency that admits only requests with a Google-signed ID token for
    `audience` from one of `service_accounts`, and returns the token's claims.

    401 for a missing, malformed, expired or not-Google token; 403 for a valid token with
    another audience, an unverified e-mail or an account not in `service_accounts`. Use it on
    one route (`claims: Annotated[dict, Depends(verifier)]`) or on every route of a router
    (`APIRouter(route_class=..., dependencies=[Depends(verifier)])`).
    """
    allowed = frozenset(service_accounts)
    if not allowed or isinstance(service_accounts, str):
        raise InvalidTaskOptionError(
            f"service_accounts={service_accounts!r}: give the list of service account e-mails "
            "whose tokens may call this worker (the OidcToken.service_account_email you send)."
        )
    rule: AudienceRule
    if callable(audience):
        rule = audience
    else:
        fixed = [audience] if isinstance(audience, str) else list(audience)
        if not fixed:
            raise InvalidTaskOptionError("audience must name at least one expected audience.")

        def rule(request: Request) -> list[str]:
            return fixed

    cache = CertificateCache(certs_url)

    async def verified_claims(request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Missing bearer ID token.")
        token = token.strip()
        try:
            certs = _trusted[-1]() if _trusted else await run_in_threadpool(cache.get)
        except (OSError, ValueError) as exc:  # Cloud Tasks retries a 503 later
            raise HTTPException(503, f"Could not fetch the token certificates: {exc}") from None
        try:
            claims = dict(jwt.decode(token, certs=certs, audience=None,
                                     clock_skew_in_seconds=CLOCK_SKEW_SECONDS))
        except (ValueError, TypeError, auth_exceptions.GoogleAuthError) as exc:
            # google-auth may quote the token itself: never echo credentials back.
            reason = str(exc).replace(token, "<token>")
            raise _unauthorized(f"Invalid ID token: {reason}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _unauthorized("The ID token was not issued by Google.")
        token_audiences = claims.get("aud")
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        if not set(token_audiences or ()) & set(rule(request)):
            raise HTTPException(403, "The ID token is for another audience.")
        if claims.get("email_verified") is not True:
            raise HTTPException(403, "The ID token's e-mail is not verified.")
        if claims.get("email") not in allowed:
            raise HTTPException(403, "The ID token's service account may not call this worker.")
        return claims

    return verified_claims


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
