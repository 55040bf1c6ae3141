"""`verify_cloud_tasks_token`: the worker-side check of the OIDC ID tokens Cloud Tasks and Cloud
Scheduler send, exercised through a real FastAPI app with tokens from a `TokenIssuer` whose
certificates are trusted with `trust_certificates`. Where the certificates come from (Google's
URL, either document shape, a slow or broken server) is in test_auth_certificates.py.
"""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

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
    auth,
    oidc_delayed_hook,
    task_url_audience,
    trust_certificates,
    verify_cloud_tasks_token,
)
from fastapi_cloud_tasks.engine.tokens import TokenIssuer
from tests.auth_support import (
    AUDIENCE,
    OTHER_SA,
    SA,
    URL,
    assert_forbidden,
    assert_unauthorized,
    b64,
    bearer,
    build_app,
    calls,
    claims_for,
    utcnow,
)
from tests.conftest import BASE_URL, QUEUE
from tests.recording import deliver_task


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(scope="module")
def stranger() -> TokenIssuer:
    """Another key pair: its tokens look right but nobody trusts it."""
    return TokenIssuer()


def unb64(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


@pytest.fixture
def client(issuer: TokenIssuer) -> Iterator[TestClient]:
    calls.clear()
    verifier = verify_cloud_tasks_token(audience=AUDIENCE, service_accounts=[SA])
    with trust_certificates(issuer.certificates), TestClient(build_app(verifier)) as client:
        yield client


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



# -- not before ------------------------------------------------------------------------------


class TestNotBefore:
    """google-auth checks iat and exp only; `nbf` (RFC 7519 section 4.1.5) is checked too."""

    def test_a_token_not_valid_yet_is_refused(self, client, issuer):
        nbf = int(utcnow().timestamp()) + 300
        token = issuer.sign(claims_for(issuer, nbf=nbf))
        response = client.post(URL, headers=bearer(token))
        assert_unauthorized(response)
        assert response.json() == {"detail": auth.NOT_YET_VALID}

    def test_nbf_within_the_clock_skew_is_accepted(self, client, issuer):
        token = issuer.sign(claims_for(issuer, nbf=int(utcnow().timestamp()) + 5))
        assert client.post(URL, headers=bearer(token)).status_code == 200

    def test_nbf_in_the_past_is_accepted(self, client, issuer):
        token = issuer.sign(claims_for(issuer, nbf=int(utcnow().timestamp()) - 60))
        assert client.post(URL, headers=bearer(token)).status_code == 200

    @pytest.mark.parametrize("nbf", ["0", True, [0], {"at": 0}])
    def test_nbf_that_is_not_a_number_is_refused(self, client, issuer, nbf):
        response = client.post(URL, headers=bearer(issuer.sign(claims_for(issuer, nbf=nbf))))
        assert_unauthorized(response)
        assert response.json() == {"detail": auth.MALFORMED}


# -- claims of the wrong type, signed ----------------------------------------------------------


class TestClaimTypes:
    """A signed list or object where a string belongs is refused, never a 500."""

    @pytest.mark.parametrize("iss", [["https://accounts.google.com"], {"a": 1}, 1])
    def test_an_issuer_that_is_not_a_string(self, client, issuer, iss):
        assert_unauthorized(client.post(URL, headers=bearer(
            issuer.sign(claims_for(issuer, iss=iss)))))

    @pytest.mark.parametrize("email", [[SA], {SA: SA}, 1])
    def test_an_email_that_is_not_a_string(self, client, issuer, email):
        assert_forbidden(client.post(URL, headers=bearer(
            issuer.sign(claims_for(issuer, email=email)))))

    @pytest.mark.parametrize("aud", [{AUDIENCE: 1}, [[AUDIENCE]], 7])
    def test_an_audience_that_is_not_a_string_or_a_list_of_strings(self, client, issuer, aud):
        assert_forbidden(client.post(URL, headers=bearer(
            issuer.sign(claims_for(issuer, aud=aud)))))


# -- what a refusal says ---------------------------------------------------------------------


def sweep_mutations(token: str, count: int, seed: int) -> Iterator[str]:
    """`count` damaged copies of `token`: bytes appended, inserted, replaced or cut, segments
    repeated or swapped (a fixed seed: the same sweep every run)."""
    rng = random.Random(seed)
    alphabet = "Aa0_-.=+/\\'\"%{}[] éÿ€\u2028\t!#$&()*,:;<>?@^`|~"
    header, payload, signature = token.split(".")
    shapes = [
        lambda: token + rng.choice([".a\\b", ".é", "é", "\\", ".", "..", "'", '"']),
        lambda: f"{token[:(i := rng.randrange(len(token)))]}{rng.choice(alphabet)}{token[i:]}",
        lambda: f"{token[:(i := rng.randrange(len(token)))]}{rng.choice(alphabet)}"
                f"{token[i + 1:]}",
        lambda: token[:rng.randrange(len(token))],
        lambda: token[rng.randrange(1, len(token)):],
        lambda: f"{token}.{rng.choice([header, payload, signature])}",
        lambda: f"{payload}.{header}.{signature}",
        lambda: f"{header}.{payload}.{signature}{rng.choice(alphabet)}{signature}",
        lambda: f"{rng.choice(alphabet)}{token}",
    ]
    for _ in range(count):
        yield rng.choice(shapes)()


def leaked(secret: str, *texts: str) -> list[str]:
    """Every 8-character piece of `secret` found in `texts`."""
    seen = "\n".join(texts)
    return sorted({secret[i:i + 8] for i in range(len(secret) - 7) if secret[i:i + 8] in seen})


def exposed(response: Any) -> str:
    """Everything a caller sees of a response: status line, headers and body."""
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.multi_items())
    return f"{response.status_code}\n{headers}\n{response.text}"


class TestNothingOfTheTokenComesBack:
    """A refusal's detail is one fixed sentence, never google-auth's text (which quotes the
    token, as a bytes repr the old scrub missed: the valid token came back and replayed)."""

    @pytest.fixture
    def logs(self, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.DEBUG)
        return caplog

    @pytest.mark.parametrize("suffix", [".a\\b", ".é"])
    def test_a_valid_token_with_a_hostile_suffix(self, client, issuer, logs, suffix):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())

        response = client.post(URL, headers={
            "Authorization": f"Bearer {token}{suffix}".encode()})

        assert_unauthorized(response)
        assert response.json() == {"detail": auth.MALFORMED}
        assert leaked(token, exposed(response), logs.text) == []

    def test_a_sweep_of_damaged_tokens(self, client, issuer, logs):
        token = issuer.id_token(email=SA, audience=AUDIENCE, now=utcnow())
        statuses = set()
        for damaged in sweep_mutations(token, count=300, seed=11):
            logs.clear()
            response = client.post(URL, headers={
                "Authorization": f"Bearer {damaged}".encode()})
            statuses.add(response.status_code)
            assert leaked(token, exposed(response), logs.text) == [], repr(damaged)
            assert leaked(damaged, exposed(response), logs.text) == [], repr(damaged)
        assert statuses <= {200, 401}  # a cut-off sign bit may still verify; nothing else
        assert 401 in statuses

    @pytest.mark.parametrize(
        ("make", "detail"),
        [
            (lambda issuer, stranger: "", auth.NO_TOKEN),
            (lambda issuer, stranger: "eyJ.eyJ.", auth.MALFORMED),
            (lambda issuer, stranger: "a" * 9000 + ".b.c", auth.MALFORMED),
            (lambda issuer, stranger: f"{b64({'alg': 'none'})}.{b64({})}.", auth.NOT_RS256),
            (lambda issuer, stranger: stranger.id_token(
                email=SA, audience=AUDIENCE, now=utcnow()), auth.UNKNOWN_KEY),
            (lambda issuer, stranger: issuer.id_token(
                email=SA, audience=AUDIENCE, now=utcnow())[:-8] + "AAAAAAAA", auth.BAD_SIGNATURE),
            (lambda issuer, stranger: issuer.id_token(
                email=SA, audience=AUDIENCE, now=utcnow() - timedelta(hours=2)), auth.EXPIRED),
            (lambda issuer, stranger: issuer.id_token(
                email=SA, audience=AUDIENCE, now=utcnow() + timedelta(hours=1)),
             auth.NOT_YET_VALID),
            (lambda issuer, stranger: issuer.sign(claims_for(issuer, iss="https://evil.example")),
             auth.NOT_GOOGLE),
        ],
        ids=["missing", "truncated", "oversized", "alg-none", "unknown-key", "bad-signature",
             "expired", "early", "not-google"],
    )
    def test_each_refusal_says_why_in_a_fixed_sentence(
        self, client, issuer, stranger, logs, make, detail
    ):
        token = make(issuer, stranger)

        response = client.post(URL, headers=bearer(token))

        assert_unauthorized(response)
        assert response.json() == {"detail": detail}
        [record] = [r for r in logs.records if r.name == "fastapi_cloud_tasks.auth"]
        assert record.getMessage() == f"Refused POST {URL} with 401: {detail}"
        assert leaked(token, logs.text) == []


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
