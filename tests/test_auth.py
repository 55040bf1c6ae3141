"""`verify_cloud_tasks_token`: the worker-side check of the OIDC ID tokens Cloud Tasks and Cloud
Scheduler send, exercised through a real FastAPI app with tokens from a `TokenIssuer` whose
certificates are trusted with `trust_certificates` (and, without it, fetched over HTTP from a
local server the way Google's are).

No `from __future__ import annotations` here: the endpoints' `Depends(verifier)` name a local
variable, which FastAPI can only see in annotations evaluated when the function is defined.
"""

import base64
import http.server
import inspect
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from google.auth import crypt
from google.auth import jwt as google_jwt
from google.cloud import tasks_v2
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    DelayedRouteBuilder,
    InvalidTaskOptionError,
    TaskArgumentsError,
    oidc_delayed_hook,
    task_url_audience,
    trust_certificates,
    verify_cloud_tasks_token,
)
from fastapi_cloud_tasks import auth as auth_module
from fastapi_cloud_tasks.auth import GOOGLE_CERTS_URL, CertificateCache
from fastapi_cloud_tasks.engine.tokens import TokenIssuer
from tests.conftest import BASE_URL, QUEUE
from tests.recording import deliver_task

SA = "tasks-invoker@my-project.iam.gserviceaccount.com"
OTHER_SA = "someone-else@my-project.iam.gserviceaccount.com"
AUDIENCE = "https://worker.example.com"
URL = "/tasks/work"

calls: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(scope="module")
def stranger() -> TokenIssuer:
    """Another key pair: its tokens look right but nobody trusts it."""
    return TokenIssuer()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def claims_for(issuer: TokenIssuer, **changes: Any) -> dict[str, Any]:
    """The claims `issuer.id_token` would sign, with `changes` applied (None removes)."""
    token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
    claims = dict(google_jwt.decode(token, verify=False))
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unb64(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_app(verifier: Any) -> FastAPI:
    app = FastAPI()

    @app.post(URL)
    def work(claims: Annotated[dict[str, Any], Depends(verifier)]) -> dict[str, Any]:
        calls.append(claims)
        return {"email": claims["email"]}

    return app


@pytest.fixture
def client(issuer: TokenIssuer) -> Iterator[TestClient]:
    calls.clear()
    verifier = verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA])
    with trust_certificates(issuer.certificates), TestClient(build_app(verifier)) as client:
        yield client


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert calls == []


def assert_forbidden(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert calls == []


# -- accepted ------------------------------------------------------------------------------


class TestAccepted:
    def test_a_google_shaped_token_reaches_the_endpoint_with_its_claims(self, client, issuer):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())

        response = client.post(URL, headers=bearer(token))

        assert response.status_code == 200, response.text
        assert response.json() == {"email": SA}
        [claims] = calls
        assert claims["email"] == SA
        assert claims["aud"] == AUDIENCE
        assert claims["iss"] == "https://accounts.google.com"
        assert claims["email_verified"] is True
        assert claims["exp"] - claims["iat"] == 3600

    def test_the_scheme_is_case_insensitive(self, client, issuer):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        response = client.post(URL, headers={"Authorization": f"bearer {token}"})
        assert response.status_code == 200, response.text

    def test_the_issuer_without_https_is_google_too(self, client, issuer):
        token = issuer.sign(claims_for(issuer, iss="accounts.google.com"))
        assert client.post(URL, headers=bearer(token)).status_code == 200

    def test_a_token_expired_within_the_clock_skew_is_accepted(self, client, issuer):
        # exp is 2 s ago; the check allows 10 s of skew (well clear of a slow test run).
        token = issuer.id_token(email=SA, audience=AUDIENCE,
                                now=utcnow() - timedelta(hours=1, seconds=2))
        assert client.post(URL, headers=bearer(token)).status_code == 200

    def test_a_token_issued_slightly_ahead_within_the_clock_skew_is_accepted(
        self, client, issuer
    ):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow() + timedelta(seconds=5))
        assert client.post(URL, headers=bearer(token)).status_code == 200

    def test_any_of_several_audiences_and_service_accounts(self, issuer):
        calls.clear()
        verifier = verify_cloud_tasks_token(
            audience=[AUDIENCE, "https://other.example.com"],
            service_accounts=(account for account in [OTHER_SA, SA]),
        )
        token = issuer.id_token(email=OTHER_SA, audience="https://other.example.com",
                                now=utcnow())
        with trust_certificates(issuer.certificates), TestClient(build_app(verifier)) as client:
            assert client.post(URL, headers=bearer(token)).status_code == 200
        assert [claims["email"] for claims in calls] == [OTHER_SA]

    def test_a_token_with_a_list_audience_matching_one_expected(self, client, issuer):
        token = issuer.sign(claims_for(issuer, aud=["https://elsewhere.example", AUDIENCE]))
        assert client.post(URL, headers=bearer(token)).status_code == 200


# -- rejected: 401 ---------------------------------------------------------------------------


class TestUnauthorized:
    def test_no_authorization_header(self, client):
        assert_unauthorized(client.post(URL))

    @pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", ""])
    def test_another_scheme_even_with_a_valid_token(self, client, issuer, scheme):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        assert_unauthorized(client.post(URL, headers={"Authorization": f"{scheme} {token}"}))

    def test_a_bare_token_without_a_scheme(self, client, issuer):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        assert_unauthorized(client.post(URL, headers={"Authorization": token}))

    @pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    "])
    def test_bearer_without_a_token(self, client, value):
        assert_unauthorized(client.post(URL, headers={"Authorization": value}))

    @pytest.mark.parametrize(
        "token",
        [
            "not-a-jwt",
            "a.b.c",
            "...",
            "e30.e30.",  # {} . {} . (no alg at all)
            "W10.e30.",  # a header that is a JSON list
            "e30.W10.",  # a payload that is a JSON list
            "eyJ.eyJ.",  # truncated JSON
            "a" * 5000,
        ],
    )
    def test_garbage(self, client, token):
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_signed_by_a_key_nobody_trusts(self, client, stranger):
        token = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_signed_by_another_key_claiming_the_trusted_key_id(self, client, issuer):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        forger = crypt.RSASigner.from_string(pem, key_id=issuer.key_id)
        token = google_jwt.encode(forger, claims_for(issuer)).decode()
        assert google_jwt.decode_header(token)["kid"] == issuer.key_id
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_a_tampered_payload_breaks_the_signature(self, client, issuer):
        header, _, signature = issuer.id_token(
            email=OTHER_SA, audience=AUDIENCE, now=utcnow()).split(".")
        token = f"{header}.{b64(claims_for(issuer))}.{signature}"
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_expired(self, client, issuer):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow() - timedelta(hours=2))
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_expired_beyond_the_clock_skew(self, client, issuer):
        token = issuer.id_token(email=SA, audience=AUDIENCE,
                                now=utcnow() - timedelta(hours=1, seconds=30))
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_issued_in_the_future(self, client, issuer):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow() + timedelta(minutes=5))
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    @pytest.mark.parametrize("missing", ["exp", "iat"])
    def test_without_a_lifetime(self, client, issuer, missing):
        token = issuer.sign(claims_for(issuer, **{missing: None}))
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    @pytest.mark.parametrize("iss", ["https://evil.example.com", "https://accounts.google.co",
                                     "https://accounts.google.com/"])
    def test_issuer_not_google(self, client, issuer, iss):
        token = issuer.sign(claims_for(issuer, iss=iss))
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_without_an_issuer(self, client, issuer):
        token = issuer.sign(claims_for(issuer, iss=None))
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    @pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256"])
    @pytest.mark.parametrize("with_kid", [True, False])
    def test_unsigned_alg_none_token(self, client, issuer, alg, with_kid):
        header = {"alg": alg, "typ": "JWT", **({"kid": issuer.key_id} if with_kid else {})}
        token = f"{b64(header)}.{b64(claims_for(issuer))}."
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_a_valid_payload_with_an_es256_header(self, client, issuer):
        header = {"alg": "ES256", "typ": "JWT", "kid": issuer.key_id}
        signature = base64.urlsafe_b64encode(bytes(64)).rstrip(b"=").decode()
        token = f"{b64(header)}.{b64(claims_for(issuer))}.{signature}"
        assert_unauthorized(client.post(URL, headers=bearer(token)))

    def test_spoofed_cloud_tasks_headers_alone(self, client):
        headers = {
            "X-CloudTasks-QueueName": "emails",
            "X-CloudTasks-TaskName": "0123456789012345678",
            "X-CloudTasks-TaskRetryCount": "0",
            "X-CloudTasks-TaskExecutionCount": "0",
            "X-CloudTasks-TaskETA": "1721236265.266817",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": "nightly",
            "User-Agent": "Google-Cloud-Tasks",
        }
        assert_unauthorized(client.post(URL, headers=headers))


# -- rejected: 403 ---------------------------------------------------------------------------


class TestForbidden:
    def test_another_audience(self, client, issuer):
        token = issuer.id_token(email=SA, audience="https://other.example.com", now=utcnow())
        assert_forbidden(client.post(URL, headers=bearer(token)))

    def test_no_audience(self, client, issuer):
        token = issuer.sign(claims_for(issuer, aud=None))
        assert_forbidden(client.post(URL, headers=bearer(token)))

    def test_another_service_account(self, client, issuer):
        token = issuer.id_token(email=OTHER_SA, audience=AUDIENCE, now=utcnow())
        assert_forbidden(client.post(URL, headers=bearer(token)))

    def test_no_email(self, client, issuer):
        token = issuer.sign(claims_for(issuer, email=None))
        assert_forbidden(client.post(URL, headers=bearer(token)))

    @pytest.mark.parametrize("verified", [False, "true", 1, None])
    def test_email_not_verified(self, client, issuer, verified):
        claims = claims_for(issuer, email_verified=verified)
        if verified is None:
            assert "email_verified" not in claims
        token = issuer.sign(claims)
        assert_forbidden(client.post(URL, headers=bearer(token)))


# -- task_url_audience -----------------------------------------------------------------------


class TestTaskUrlAudience:
    @pytest.fixture
    def url_client(self, issuer: TokenIssuer) -> Iterator[TestClient]:
        calls.clear()
        verifier = verify_cloud_tasks_token(
            audience=task_url_audience("https://worker.example.com/"), service_accounts=[SA]
        )
        with trust_certificates(issuer.certificates), TestClient(build_app(verifier)) as client:
            yield client

    def token(self, issuer: TokenIssuer, audience: str) -> dict[str, str]:
        return bearer(issuer.id_token(email=SA, audience=audience, now=utcnow()))

    def test_the_full_url_with_its_query(self, url_client, issuer):
        headers = self.token(issuer, f"https://worker.example.com{URL}?n=1&m=two")
        assert url_client.post(f"{URL}?n=1&m=two", headers=headers).status_code == 200

    def test_the_url_without_its_query(self, url_client, issuer):
        headers = self.token(issuer, f"https://worker.example.com{URL}")
        assert url_client.post(f"{URL}?n=1", headers=headers).status_code == 200
        assert url_client.post(URL, headers=headers).status_code == 200
        assert len(calls) == 2

    def test_another_path(self, url_client, issuer):
        headers = self.token(issuer, "https://worker.example.com/tasks/other")
        assert_forbidden(url_client.post(URL, headers=headers))

    def test_another_query(self, url_client, issuer):
        headers = self.token(issuer, f"https://worker.example.com{URL}?n=2")
        assert_forbidden(url_client.post(f"{URL}?n=1", headers=headers))

    def test_another_host(self, url_client, issuer):
        headers = self.token(issuer, f"https://attacker.example.com{URL}")
        assert_forbidden(url_client.post(URL, headers=headers))

    def test_the_base_url_alone(self, url_client, issuer):
        headers = self.token(issuer, "https://worker.example.com")
        assert_forbidden(url_client.post(URL, headers=headers))


# -- on a whole router -----------------------------------------------------------------------


class Order(BaseModel):
    sku: str
    quantity: int


class TestRouterDependency:
    @pytest.fixture
    def protected(self, recording_client: tasks_v2.CloudTasksClient) -> SimpleNamespace:
        verifier = verify_cloud_tasks_token(
            audience=task_url_audience(BASE_URL), service_accounts=[SA]
        )
        router = APIRouter(
            prefix="/tasks",
            route_class=DelayedRouteBuilder(
                base_url=BASE_URL,
                queue_path=QUEUE,
                client=recording_client,
                pre_create_hook=oidc_delayed_hook(
                    tasks_v2.OidcToken(service_account_email=SA)
                ),
            ),
            dependencies=[Depends(verifier)],
        )

        @router.post("/count")
        def count(n: int) -> None:
            calls.append({"count": n})

        @router.post("/order")
        async def order(item: Order, rush: bool = False) -> None:
            calls.append({"order": item.sku, "rush": rush})

        app = FastAPI()
        app.include_router(router)
        calls.clear()
        return SimpleNamespace(app=app, count=count, order=order)

    def test_delay_takes_only_the_endpoints_own_arguments(self, protected, tasks_service):
        protected.count.delay(n=3)
        protected.order.delay(item=Order(sku="A-1", quantity=2), rush=True)

        first, second = (request.task.http_request for request in tasks_service.requests)
        assert first.url == f"{BASE_URL}/tasks/count?n=3"
        assert json.loads(second.body) == {"sku": "A-1", "quantity": 2}
        assert first.oidc_token.service_account_email == SA
        assert "Authorization" not in first.headers

    @pytest.mark.parametrize("extra", ["request", "authorization", "claims", "verified_claims"])
    def test_delay_rejects_anything_else(self, protected, tasks_service, extra):
        with pytest.raises(TaskArgumentsError, match=extra):
            protected.count.delay(n=3, **{extra: "x"})
        assert tasks_service.requests == []

    def test_every_route_is_protected(self, protected, tasks_service, issuer):
        protected.count.delay(n=3)
        protected.order.delay(item=Order(sku="A-1", quantity=2))
        with trust_certificates(issuer.certificates), TestClient(protected.app) as client:
            for request in tasks_service.requests:
                assert_unauthorized(deliver_task(client, request.task))

    def test_every_route_runs_with_the_token_cloud_tasks_would_send(
        self, protected, tasks_service, issuer
    ):
        protected.count.delay(n=3)
        protected.order.delay(item=Order(sku="A-1", quantity=2), rush=True)
        with trust_certificates(issuer.certificates), TestClient(protected.app) as client:
            for request in tasks_service.requests:
                task = tasks_v2.Task(request.task)
                http = task.http_request
                # No audience in the OidcToken: Google uses the full task URL, query included.
                token = issuer.id_token(email=http.oidc_token.service_account_email,
                                        audience=http.url, now=utcnow())
                http.headers["Authorization"] = f"Bearer {token}"
                response = deliver_task(client, task)
                assert response.status_code == 200, response.text
        assert calls == [{"count": 3}, {"order": "A-1", "rush": True}]


# -- misconfiguration ------------------------------------------------------------------------


class TestMisconfiguration:
    def test_no_service_accounts(self):
        with pytest.raises(InvalidTaskOptionError, match="service_accounts"):
            verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[])

    def test_a_bare_string_is_not_a_list_of_accounts(self):
        with pytest.raises(InvalidTaskOptionError, match="list of service account"):
            verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=SA)

    def test_an_empty_audience_list(self):
        with pytest.raises(InvalidTaskOptionError, match="audience"):
            verify_cloud_tasks_token(audience=[], service_accounts=[SA])

    def test_the_error_is_a_value_error(self):
        with pytest.raises(ValueError, match="service_accounts"):
            verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=())


# -- the trust root: Google's certificates, or the fake's --------------------------------------


class CertsServer:
    """Serves a certificates JSON on 127.0.0.1 (an ephemeral port), counting fetches."""

    def __init__(self, body: bytes, cache_control: str | None) -> None:
        self.body = body
        self.cache_control = cache_control
        self.status = 200
        self.fetches = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                if server.cache_control is not None:
                    self.send_header("Cache-Control", server.cache_control)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/oauth2/v1/certs"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


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

        certs_server.body = json.dumps(stranger.certificates()).encode()  # Google rotated its keys
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

    def test_a_verifier_fetches_its_certificates_once(self, certs_server, issuer):
        calls.clear()
        verifier = verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA],
                                            certs_url=certs_server.url)
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with TestClient(build_app(verifier)) as client:
            assert client.post(URL, headers=bearer(token)).status_code == 200
            assert client.post(URL, headers=bearer(token)).status_code == 200
        assert certs_server.fetches == 1
        assert len(calls) == 2

    def test_a_verifier_without_trust_rejects_keys_its_certificates_lack(
        self, certs_server, stranger
    ):
        calls.clear()
        verifier = verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA],
                                            certs_url=certs_server.url)
        token = stranger.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        with TestClient(build_app(verifier)) as client:
            assert_unauthorized(client.post(URL, headers=bearer(token)))
        assert certs_server.fetches == 1


class TestTrustCertificates:
    @pytest.fixture
    def verifier_app(self, certs_server: CertsServer) -> FastAPI:
        """A verifier whose own trust root (outside any block) is `certs_server`."""
        calls.clear()
        verifier = verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA],
                                            certs_url=certs_server.url)
        return build_app(verifier)

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


# -- the issuer --------------------------------------------------------------------------------


class TestTokenIssuer:
    def test_tokens_have_googles_claim_shape(self, issuer):
        now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=now)

        header = google_jwt.decode_header(token)
        claims = google_jwt.decode(token, verify=False)
        assert header["alg"] == "RS256"
        assert header["kid"] == issuer.key_id
        assert claims["iss"] == "https://accounts.google.com"
        assert (claims["aud"], claims["email"], claims["email_verified"]) == (AUDIENCE, SA, True)
        assert claims["iat"] == int(now.timestamp())
        assert claims["exp"] == int(now.timestamp()) + 3600

    def test_certificates_are_in_googles_v1_format(self, issuer):
        certs = issuer.certificates()
        assert list(certs) == [issuer.key_id]
        assert certs[issuer.key_id].startswith("-----BEGIN CERTIFICATE-----")

    def test_jwks_publishes_the_same_public_key(self, issuer):
        [key] = issuer.jwks()["keys"]
        assert {key["kty"], key["alg"], key["use"], key["kid"]} == {
            "RSA", "RS256", "sig", issuer.key_id}
        cert = x509.load_pem_x509_certificate(issuer.certificates()[issuer.key_id].encode())
        numbers = cert.public_key().public_numbers()
        assert (unb64(key["n"]), unb64(key["e"])) == (numbers.n, numbers.e)

    def test_certificates_returns_a_copy(self, issuer):
        issuer.certificates().clear()
        assert issuer.certificates() != {}

    def test_each_issuer_has_its_own_key(self, issuer, stranger):
        assert issuer.key_id != stranger.key_id
        assert issuer.certificates() != stranger.certificates()
