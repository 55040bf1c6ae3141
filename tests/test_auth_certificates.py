"""Where `verify_cloud_tasks_token` gets the certificates it trusts: Google's URL by default,
in either shape Google publishes (PEM map, JWK Set), from both URLs the emulator serves, cached
per max-age, one download at a time however many requests wait, and a 503 (not a 401) when
the download hangs or the document makes no sense; or, inside `trust_certificates`, a source
of the test's choosing.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import math
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_cloud_tasks import InvalidTaskOptionError, trust_certificates, verify_cloud_tasks_token
from fastapi_cloud_tasks import auth as auth_module
from fastapi_cloud_tasks.auth import GOOGLE_CERTS_URL, CertificateCache, parse_certificates
from fastapi_cloud_tasks.engine.tokens import TokenIssuer
from tests.auth_support import (
    AUDIENCE,
    SA,
    URL,
    CertsServer,
    assert_unauthorized,
    bearer,
    build_app,
    calls,
    utcnow,
)


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(scope="module")
def stranger() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def certs_server(issuer: TokenIssuer) -> Iterator[CertsServer]:
    body = json.dumps(issuer.certificates()).encode()
    server = CertsServer(body, "public, max-age=19766, must-revalidate")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The cache's clock, moved by hand (only `fastapi_cloud_tasks.auth` sees it)."""
    now = [1000.0]
    monkeypatch.setattr(auth_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def verifier_for(url: str, **options: Any) -> FastAPI:
    calls.clear()
    return build_app(verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA],
                                              certs_url=url, **options))


def token_of(issuer: TokenIssuer) -> str:
    return issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())


class TestCertificateCache:
    def test_defaults_to_googles_certificates(self):
        assert GOOGLE_CERTS_URL == "https://www.googleapis.com/oauth2/v1/certs"
        assert CertificateCache().url == GOOGLE_CERTS_URL
        default = inspect.signature(verify_cloud_tasks_token).parameters["certs_url"].default
        assert default == GOOGLE_CERTS_URL

    def test_fetches_once_and_serves_from_cache(self, certs_server, issuer):
        cache = CertificateCache(certs_server.url, timeout=5)
        assert certs_server.fetches == 0  # nothing fetched before first use

        assert cache.get() == issuer.certificates()
        assert cache.get() == issuer.certificates()
        assert certs_server.fetches == 1

    def test_refetches_when_max_age_runs_out(self, certs_server, monotonic, stranger):
        certs_server.cache_control = "public, max-age=60, must-revalidate"
        cache = CertificateCache(certs_server.url, timeout=5)
        first = cache.get()

        certs_server.serve(stranger.certificates())  # Google rotated its keys
        monotonic[0] += 59
        assert cache.get() == first
        assert certs_server.fetches == 1

        monotonic[0] += 1
        assert cache.get() == stranger.certificates()
        assert certs_server.fetches == 2

    def test_max_age_zero_is_not_cached(self, certs_server):
        certs_server.cache_control = "max-age=0"
        cache = CertificateCache(certs_server.url, timeout=5)
        cache.get()
        cache.get()
        assert certs_server.fetches == 2

    def test_without_cache_control_keeps_five_minutes(self, certs_server, monotonic):
        certs_server.cache_control = None
        cache = CertificateCache(certs_server.url, timeout=5)
        cache.get()
        monotonic[0] += 299
        cache.get()
        assert certs_server.fetches == 1
        monotonic[0] += 1
        cache.get()
        assert certs_server.fetches == 2

    @pytest.mark.parametrize("max_age", ["max-age=9999999", "max-age=" + "9" * 400])
    def test_a_huge_max_age_keeps_a_day_at_most(self, certs_server, monotonic, max_age):
        certs_server.cache_control = max_age
        cache = CertificateCache(certs_server.url, timeout=5)
        cache.get()
        monotonic[0] += 86399
        cache.get()
        assert certs_server.fetches == 1
        monotonic[0] += 1
        cache.get()
        assert certs_server.fetches == 2

    @pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "10", None])
    def test_the_timeout_is_a_positive_number_of_seconds(self, timeout):
        with pytest.raises(InvalidTaskOptionError, match=rf"timeout={timeout!r}: .*positive"):
            CertificateCache(timeout=timeout)
        with pytest.raises(InvalidTaskOptionError, match="timeout"):
            verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA],
                                     certs_timeout=timeout)

    def test_a_verifier_fetches_its_certificates_once(self, certs_server, issuer):
        token = token_of(issuer)
        with TestClient(verifier_for(certs_server.url)) as client:
            assert client.post(URL, headers=bearer(token)).status_code == 200
            assert client.post(URL, headers=bearer(token)).status_code == 200
        assert certs_server.fetches == 1
        assert len(calls) == 2

    def test_a_verifier_without_trust_rejects_keys_its_certificates_lack(
        self, certs_server, stranger
    ):
        with TestClient(verifier_for(certs_server.url)) as client:
            assert_unauthorized(client.post(URL, headers=bearer(token_of(stranger))))
        assert certs_server.fetches == 1


# -- both shapes Google publishes ----------------------------------------------------------------


def ec_jwk() -> dict[str, Any]:
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "kid": "ec-key", "use": "sig", "alg": "ES256",
            "x": base64.urlsafe_b64encode(numbers.x.to_bytes(32, "big")).decode(),
            "y": base64.urlsafe_b64encode(numbers.y.to_bytes(32, "big")).decode()}


class TestDocumentShapes:
    def test_a_jwk_set_verifies_the_same_tokens_as_the_pem_map(self, issuer):
        server = CertsServer(json.dumps(issuer.jwks()).encode(), "max-age=300",
                             path="/oauth2/v3/certs")
        try:
            with TestClient(verifier_for(server.url)) as client:
                response = client.post(URL, headers=bearer(token_of(issuer)))
        finally:
            server.close()
        assert response.status_code == 200, response.text
        assert [claims["email"] for claims in calls] == [SA]

    def test_keys_of_another_type_or_use_are_skipped(self, issuer, stranger):
        [rsa_key] = issuer.jwks()["keys"]
        [other] = stranger.jwks()["keys"]
        document = {"keys": [ec_jwk(), {**other, "use": "enc"}, {**other, "alg": "RS512"},
                             {"kty": "oct", "k": "c2VjcmV0"}, rsa_key]}
        assert list(parse_certificates(document)) == [issuer.key_id]

    def test_a_jwk_becomes_the_rsa_public_key_of_the_certificate(self, issuer):
        [pem] = parse_certificates(issuer.jwks()).values()
        cert = x509.load_pem_x509_certificate(issuer.certificates()[issuer.key_id].encode())
        key = serialization.load_pem_public_key(pem.encode())
        assert key.public_numbers() == cert.public_key().public_numbers()

    def test_a_pem_map_is_returned_as_served(self, issuer):
        assert parse_certificates(issuer.certificates()) == issuer.certificates()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """The real emulator, in this process, on free loopback ports."""
    from fastapi_cloud_tasks.emulator.server import Emulator

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    instance = Emulator("127.0.0.1", 0, http_port=0)
    asyncio.run_coroutine_threadsafe(instance.start(), loop).result(timeout=30)
    try:
        yield instance
    finally:
        asyncio.run_coroutine_threadsafe(instance.stop(grace=1), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


class TestTheEmulatorsCertificates:
    @pytest.mark.parametrize(("path", "shape"), [("/oauth2/v1/certs", "PEM map"),
                                                 ("/oauth2/v3/certs", "JWK Set")])
    def test_both_urls_verify_the_emulators_tokens(self, emulator, path, shape):
        url = f"http://127.0.0.1:{emulator.http_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            document = json.loads(response.read())
        assert ("keys" in document) == (shape == "JWK Set")

        with TestClient(verifier_for(url)) as client:
            response = client.post(URL, headers=bearer(token_of(emulator.tokens)))

        assert response.status_code == 200, response.text
        assert [claims["email"] for claims in calls] == [SA]


# -- a broken certificates server: 503 -----------------------------------------------------------


NOT_A_CERT = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
BAD_DOCUMENTS = {
    "not-json": b"<html>Service Unavailable</html>",
    "deeply-nested": b"[" * 100_000,
    "a-list": [],
    "a-string": "certs",
    "empty-map": {},
    "not-pem": {"kid": "not a certificate"},
    "pem-not-a-string": {"kid": 12},
    "broken-pem": {"kid": NOT_A_CERT},
    "ec-public-key": {"kid": ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()},
    "empty-jwks": {"keys": []},
    "jwk-not-an-object": {"keys": ["kid"]},
    "jwk-without-n": {"keys": [{"kty": "RSA", "kid": "k", "e": "AQAB"}]},
    "jwk-bad-base64": {"keys": [{"kty": "RSA", "kid": "k", "n": "é", "e": "AQAB"}]},
    "jwk-bad-exponent": {"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AA"}]},
    "only-ec-keys": {"keys": [ec_jwk()]},
    "over-a-mebibyte": {"kid": "x" * (1 << 20)},
}


class TestBrokenCertificates:
    @pytest.mark.parametrize("document", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
    def test_a_document_of_the_wrong_shape_is_a_503(self, certs_server, issuer, document, caplog):
        certs_server.serve(document)
        with TestClient(verifier_for(certs_server.url)) as client:
            response = client.post(URL, headers=bearer(token_of(issuer)))
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": auth_module.CERTS_UNAVAILABLE}
        assert calls == []
        [warning] = [r for r in caplog.records if r.name == "fastapi_cloud_tasks.auth"]
        assert warning.levelno == logging.WARNING

    def test_an_error_status_is_a_503(self, certs_server, issuer):
        certs_server.status = 500
        with TestClient(verifier_for(certs_server.url)) as client:
            assert client.post(URL, headers=bearer(token_of(issuer))).status_code == 503

    @pytest.mark.parametrize("document", [[], {"kid": "nope"}])
    def test_a_trusted_source_of_the_wrong_shape_is_a_503(self, certs_server, issuer, document):
        with trust_certificates(lambda: document), TestClient(
            verifier_for(certs_server.url)
        ) as client:
            assert client.post(URL, headers=bearer(token_of(issuer))).status_code == 503
        assert certs_server.fetches == 0

    def test_a_failed_download_is_not_cached(self, certs_server, issuer):
        certs_server.status = 500
        with TestClient(verifier_for(certs_server.url)) as client:
            assert client.post(URL, headers=bearer(token_of(issuer))).status_code == 503
            certs_server.status = 200
            assert client.post(URL, headers=bearer(token_of(issuer))).status_code == 200
        assert certs_server.fetches == 2


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers; keeps and counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/oauth2/v1/certs"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.connections.append(self.sock.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self.connections:
            connection.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


class TestOneDownloadAtATime:
    def test_concurrent_requests_share_one_hanging_download_and_give_up_together(
        self, silent, issuer
    ):
        # Given four requests arriving while the certificates server never answers
        timeout = 1.0
        app = verifier_for(silent.url, certs_timeout=timeout)
        token = token_of(issuer)

        async def burst() -> tuple[list[httpx.Response], float]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
                started = time.monotonic()
                responses = await asyncio.gather(
                    *(client.post(URL, headers=bearer(token)) for _ in range(4)))
                return list(responses), time.monotonic() - started

        # When they all wait for the certificates
        responses, elapsed = asyncio.run(burst())

        # Then one download served them all, and all gave up at its deadline
        assert [response.status_code for response in responses] == [503] * 4
        assert {response.json()["detail"] for response in responses} == {
            auth_module.CERTS_UNAVAILABLE}
        assert len(silent.connections) == 1
        assert elapsed < 3.5 * timeout  # one after the other would take 4 timeouts at least

    def test_threads_share_one_hanging_download_too(self, silent):
        cache = CertificateCache(silent.url, timeout=0.5)
        errors: list[BaseException] = []
        # All four ask at once: started one by one on a loaded machine, the last could start
        # after the first one's 0.5 s had run out, and rightly make a second download.
        together = threading.Barrier(4)

        def wait() -> None:
            try:
                together.wait(10)
                cache.get()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=wait) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert [type(error) for error in errors] == [TimeoutError] * 4
        assert str(errors[0]) == f"The certificates at {silent.url!r} did not arrive within 0.5 s."
        assert len(silent.connections) == 1

    def test_after_a_timeout_the_next_caller_starts_a_fresh_download(self, silent):
        cache = CertificateCache(silent.url, timeout=0.3)
        for attempt in (1, 2):
            with pytest.raises(TimeoutError, match=r"did not arrive within 0\.3 s"):
                cache.get()
            assert len(silent.connections) == attempt

    def test_waiters_in_flight_all_get_the_one_downloads_result(self, issuer):
        # Given a server that holds its answer until every waiter has asked
        gate = threading.Event()
        server = CertsServer(json.dumps(issuer.certificates()).encode(), "max-age=300")
        serve = server.httpd.RequestHandlerClass.do_GET

        def held(handler: Any) -> None:
            gate.wait(timeout=10)
            serve(handler)

        server.httpd.RequestHandlerClass.do_GET = held
        cache = CertificateCache(server.url, timeout=10)

        async def waiters() -> list[Any]:
            async def release() -> None:  # runs after the four have each called aget()
                gate.set()

            *results, _ = await asyncio.gather(*(cache.aget() for _ in range(4)), release())
            return results

        try:
            results = asyncio.run(waiters())
        finally:
            server.close()
        assert results == [issuer.certificates()] * 4
        assert server.fetches == 1


# -- trust_certificates ---------------------------------------------------------------------------


class TestTrustCertificates:
    @pytest.fixture
    def verifier_app(self, certs_server: CertsServer) -> FastAPI:
        """A verifier whose own trust root (outside any block) is `certs_server`."""
        return verifier_for(certs_server.url)

    def test_inside_the_block_the_source_replaces_the_certificates_url(
        self, verifier_app, certs_server, stranger
    ):
        token = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with trust_certificates(stranger.certificates), TestClient(verifier_app) as client:
            assert client.post(URL, headers=bearer(token)).status_code == 200
        assert certs_server.fetches == 0

    def test_nothing_stays_trusted_after_the_block(self, verifier_app, certs_server, stranger):
        token = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with TestClient(verifier_app) as client:
            with trust_certificates(stranger.certificates):
                assert client.post(URL, headers=bearer(token)).status_code == 200
            calls.clear()
            assert_unauthorized(client.post(URL, headers=bearer(token)))
        assert certs_server.fetches == 1

    def test_nothing_stays_trusted_after_an_exception(self, verifier_app, stranger):
        token = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with pytest.raises(RuntimeError, match="boom"), trust_certificates(stranger.certificates):
            raise RuntimeError("boom")
        with TestClient(verifier_app) as client:
            assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_the_innermost_block_wins_and_the_outer_one_comes_back(
        self, verifier_app, issuer, stranger
    ):
        outer = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        inner = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with TestClient(verifier_app) as client, trust_certificates(issuer.certificates):
            with trust_certificates(stranger.certificates):
                assert client.post(URL, headers=bearer(inner)).status_code == 200
                assert client.post(URL, headers=bearer(outer)).status_code == 401
            assert client.post(URL, headers=bearer(outer)).status_code == 200
            assert client.post(URL, headers=bearer(inner)).status_code == 401

    def test_the_source_is_read_on_every_request(self, verifier_app, issuer, stranger):
        trusted = [issuer]
        token = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with TestClient(verifier_app) as client, trust_certificates(
            lambda: trusted[0].certificates()
        ):
            assert client.post(URL, headers=bearer(token)).status_code == 401
            trusted[0] = stranger
            assert client.post(URL, headers=bearer(token)).status_code == 200
