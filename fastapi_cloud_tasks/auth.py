"""Verifying the OIDC ID tokens Cloud Tasks and Cloud Scheduler send to a worker.

A task endpoint is a public HTTP route, and `X-CloudTasks-*` headers prove nothing. On Cloud
Run with IAM the platform checks the token; anywhere else the app must. The check is always
the full one (signature, issuer, expiry, not-before, audience, verified e-mail, allowed
account). What can be swapped is only the trust root: Google's published certificates by
default, the fake service's in tests and in the local emulator (`trust_certificates`).

Nothing a caller sends is ever repeated back or logged: a rejection's detail is one of the
fixed sentences below, never an exception's text (google-auth quotes the token in its errors).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import HTTPException, Request
from google.auth import jwt
from starlette.concurrency import run_in_threadpool

from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError

__all__ = [
    "GOOGLE_CERTS_URL",
    "CertificateCache",
    "parse_certificates",
    "task_url_audience",
    "trust_certificates",
    "verify_cloud_tasks_token",
]

logger = logging.getLogger("fastapi_cloud_tasks.auth")

# Google publishes the same keys as PEM certificates (v1) and as a JWK Set (v3); both work.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
CLOCK_SKEW_SECONDS = 10
MAX_TOKEN_CHARS = 8192  # Google's ID tokens are about 1 KB; anything far longer is not one
MAX_CERTS_BYTES = 1 << 20  # Google's documents are about 2 KB
DEFAULT_MAX_AGE = 300  # when the certificates response names no max-age
MAX_MAX_AGE = 86400  # Google's keys rotate within days; never trust a fetch longer than this
Certificates = Mapping[str, str]
AudienceRule = Callable[[Request], Iterable[str]]

# JWS compact serialization: three unpadded base64url segments (RFC 7515 sections 2 and 7.1).
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# Every detail a 401 can carry; none of them includes anything the caller sent.
NO_TOKEN = "No bearer ID token: send 'Authorization: Bearer <ID token>'."
MALFORMED = "The bearer token is not a well-formed ID token."
NOT_RS256 = "The ID token is not signed with RS256, as Google signs ID tokens."
UNKNOWN_KEY = "The ID token's signing key is not one of the trusted certificates."
BAD_SIGNATURE = "The ID token's signature does not verify."
EXPIRED = "The ID token has expired."
NOT_YET_VALID = "The ID token is not valid yet (iat or nbf in the future): check the clocks."
NOT_GOOGLE = "The ID token was not issued by Google."
CERTS_UNAVAILABLE = "The certificates that verify ID tokens are unavailable; retry later."


def parse_certificates(document: object) -> dict[str, str]:
    """`{key id: PEM}` from either shape Google publishes: a map of PEM certificates
    (oauth2/v1/certs) or a JSON Web Key Set (oauth2/v3/certs). Raises ValueError on anything
    else, naming what is wrong (a server problem: the verifier answers 503)."""
    if isinstance(document, Mapping) and isinstance(document.get("keys"), list):
        certs = _pems_from_jwks(document["keys"])
    elif isinstance(document, Mapping):
        certs = {kid: _checked_pem(kid, pem) for kid, pem in document.items()}
    else:
        raise ValueError(f"The certificates document is a {type(document).__name__}, not a "
                         "JSON object: expected {key id: PEM} or a JWK Set {'keys': [...]}.")
    if not certs:
        raise ValueError("The certificates document holds no RS256 signing key.")
    return certs


def _checked_pem(kid: object, pem: object) -> str:
    if not isinstance(pem, str) or not pem.lstrip().startswith("-----BEGIN "):
        raise ValueError(f"Key {kid!r} of the certificates document is not a PEM string.")
    data = pem.encode()
    try:
        key = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
               else serialization.load_pem_public_key(data))
    except ValueError:
        raise ValueError(f"Key {kid!r} of the certificates document is not a valid PEM "
                         "certificate or public key.") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"Key {kid!r} of the certificates document is not an RSA key.")
    return pem


def _pems_from_jwks(keys: list[Any]) -> dict[str, str]:
    certs = {}
    for key in keys:
        if not isinstance(key, dict):
            raise ValueError(f"A JWK Set entry is a {type(key).__name__}, not a JSON object.")
        # Keys of another type or purpose are skipped, as RFC 7517 section 5 asks.
        if (key.get("kty") != "RSA" or key.get("use", "sig") != "sig"
                or key.get("alg", "RS256") != "RS256"):
            continue
        kid, n, e = key.get("kid"), key.get("n"), key.get("e")
        if not (isinstance(kid, str) and isinstance(n, str) and isinstance(e, str)):
            raise ValueError(f"The JWK {kid!r} lacks a string 'kid', 'n' or 'e'.")
        try:
            public = rsa.RSAPublicNumbers(_b64_int(e), _b64_int(n)).public_key()
        except ValueError:
            raise ValueError(f"The JWK {kid!r} is not a valid RSA public key.") from None
        certs[kid] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    return certs


def _b64_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(_padded(text)), "big")


class _Fetch:
    """One download in flight: every caller that needs the certificates meanwhile waits for
    this future (marked running, so a waiter giving up cannot cancel it for the others)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.future: concurrent.futures.Future[dict[str, str]] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class CertificateCache:
    """Google's signing certificates (either document shape), fetched on first use and kept
    for as long as the response's `Cache-Control: max-age` allows.

    At most one download runs at a time, on its own thread; everyone who needs the
    certificates meanwhile shares it, and gives up when it passes `timeout` seconds (then
    the next caller starts a fresh download). A failed download is not cached."""

    def __init__(self, url: str = GOOGLE_CERTS_URL, timeout: float = 10.0) -> None:
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise InvalidTaskOptionError(
                f"timeout={timeout!r}: give the seconds to wait for the certificates, a "
                "positive number (10 by default)."
            )
        self.url = url
        self.timeout = float(timeout)
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetch: _Fetch | None = None
        self._lock = threading.Lock()

    def get(self) -> Certificates:
        """The certificates, waiting (blocking this thread) for a download if needed."""
        certs, fetch = self._current()
        if fetch is None:
            return certs
        try:
            return fetch.future.result(fetch.remaining())
        except concurrent.futures.TimeoutError:
            raise self._timed_out() from None

    async def aget(self) -> Certificates:
        """`get()` for an event loop: waiting for the download holds no thread."""
        certs, fetch = self._current()
        if fetch is None:
            return certs
        if fetch.future.done():
            return fetch.future.result()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another async library (trio): wait on a worker thread
            return await run_in_threadpool(self.get)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fetch.future), fetch.remaining())
        except asyncio.TimeoutError:
            raise self._timed_out() from None

    def _current(self) -> tuple[dict[str, str], _Fetch | None]:
        with self._lock:
            now = time.monotonic()
            if now < self._expires:
                return self._certs, None
            fetch = self._fetch
            if fetch is None or fetch.future.done() or now >= fetch.deadline:
                fetch = self._fetch = _Fetch(now + self.timeout)
                threading.Thread(target=self._run, args=(fetch,), daemon=True,
                                 name="fastapi-cloud-tasks-certificates").start()
            return {}, fetch

    def _run(self, fetch: _Fetch) -> None:
        try:
            certs, max_age = self._download(fetch.deadline)
        except BaseException as exc:  # handed to every waiter, who answers 503
            with self._lock:
                if self._fetch is fetch:
                    self._fetch = None
            fetch.future.set_exception(exc)
            return
        with self._lock:  # stored before waking anyone, so later callers find them
            self._certs = certs
            self._expires = time.monotonic() + max_age
            if self._fetch is fetch:
                self._fetch = None
        fetch.future.set_result(certs)

    def _download(self, deadline: float) -> tuple[dict[str, str], int]:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        body = bytearray()
        try:
            opened = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            error.close()  # the error is the open response: left to the GC, its socket leaks
            raise OSError(f"The certificates server {self.url!r} answered HTTP "
                          f"{error.code}.") from None
        with opened as response:
            # Each read waits at most `timeout`; the deadline bounds a server that trickles.
            while chunk := response.read1(65536):
                body += chunk
                if len(body) > MAX_CERTS_BYTES:
                    raise ValueError(f"The certificates document from {self.url!r} is over "
                                     f"{MAX_CERTS_BYTES} bytes.")
                if time.monotonic() > deadline:
                    raise self._timed_out()
            cache_control = response.headers.get("Cache-Control", "")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise ValueError(f"The certificates document from {self.url!r} is not JSON.") from None
        match = re.search(r"max-age=(\d+)", cache_control)
        digits = match.group(1) if match else str(DEFAULT_MAX_AGE)
        max_age = int(digits) if len(digits) <= 9 else MAX_MAX_AGE  # no 400-digit int parse
        return parse_certificates(document), min(max_age, MAX_MAX_AGE)

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"The certificates at {self.url!r} did not arrive within "
                            f"{self.timeout:g} s.")


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
    certs_timeout: float = 10.0,
) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A FastAPI dependency that admits only requests with a Google-signed ID token for
    `audience` from one of `service_accounts`, and returns the token's claims.

    401 for a missing, malformed, expired, not-yet-valid or not-Google token; 403 for a valid
    token with another audience, an unverified e-mail or an account not in
    `service_accounts`; 503 (Cloud Tasks retries it) when the certificates at `certs_url`
    (PEM map or JWK Set) do not arrive within `certs_timeout` seconds or make no sense. Use it
    on one route (`claims: Annotated[dict, Depends(verifier)]`) or on every route of a router
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

    cache = CertificateCache(certs_url, timeout=certs_timeout)

    async def verified_claims(request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            _reject(request, 401, NO_TOKEN)
        if len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
            _reject(request, 401, MALFORMED)
        try:
            certs = parse_certificates(_trusted[-1]()) if _trusted else await cache.aget()
        except Exception as exc:  # the certificates' own problem: nothing of the token in it
            logger.warning("Cannot verify ID tokens: %s", exc)
            raise HTTPException(503, CERTS_UNAVAILABLE) from None
        claims = _verified(token, certs)
        if isinstance(claims, str):
            _reject(request, 401, claims)
        if _text(claims, "iss") not in GOOGLE_ISSUERS:
            _reject(request, 401, NOT_GOOGLE)
        token_audiences = claims.get("aud")
        if not isinstance(token_audiences, list):
            token_audiences = [token_audiences]
        if not {a for a in token_audiences if isinstance(a, str)} & set(rule(request)):
            _reject(request, 403, "The ID token is for another audience.")
        if claims.get("email_verified") is not True:
            _reject(request, 403, "The ID token's e-mail is not verified.")
        if _text(claims, "email") not in allowed:
            _reject(request, 403, "The ID token's service account may not call this worker.")
        return claims

    return verified_claims


def _verified(token: str, certs: Certificates) -> dict[str, Any] | str:
    """The claims of a token whose signature and times check out, or the detail (one of the
    fixed sentences) saying why not. Exceptions stay in here: their text may hold the token."""
    try:
        header = json.loads(base64.urlsafe_b64decode(_padded(token.partition(".")[0])))
    except (ValueError, RecursionError):
        return MALFORMED
    if not isinstance(header, dict):
        return MALFORMED
    if header.get("alg") != "RS256":
        return NOT_RS256
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in certs:
        return UNKNOWN_KEY
    try:
        claims = jwt.decode(token, certs={kid: certs[kid]}, audience=None,
                            clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
    except Exception as exc:  # google-auth's errors: pick a sentence, never forward the text
        text = str(exc)
        return (BAD_SIGNATURE if "signature" in text else EXPIRED if "expired" in text
                else NOT_YET_VALID if "too early" in text else MALFORMED)
    if not isinstance(claims, dict):
        return MALFORMED
    # google-auth checks iat and exp only; a token is not valid before its nbf (RFC 7519 4.1.5).
    nbf = claims.get("nbf")
    if nbf is not None:
        if isinstance(nbf, bool) or not isinstance(nbf, (int, float)):
            return MALFORMED
        if nbf - CLOCK_SKEW_SECONDS > datetime.now(timezone.utc).timestamp():
            return NOT_YET_VALID
    return dict(claims)


def _text(claims: dict[str, Any], name: str) -> str:
    """A string claim, or "" (a signed list or object must not reach a set lookup)."""
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def _padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def _reject(request: Request, status: int, detail: str) -> NoReturn:
    # Raised outside any `except`, so no exception that quotes the token rides along as
    # __context__ into a log; the method and path say which route, the detail why.
    logger.info("Refused %s %s with %d: %s", request.method, request.url.path, status, detail)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    raise HTTPException(status, detail, headers=headers)
