"""The token issuer is lazy itself: making one costs nothing until a token or certificate is
asked for, so every engine (and the harness) can simply own one."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine
from fastapi_cloud_tasks.engine.tokens import TokenIssuer

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def keys_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    real = rsa.generate_private_key

    def counting(*args: object, **kwargs: object) -> rsa.RSAPrivateKey:
        made.append(1)
        return real(65537, 2048)

    monkeypatch.setattr(rsa, "generate_private_key", counting)
    return made


def test_an_issuer_and_engines_owning_one_make_no_key(keys_made: list[int]) -> None:
    TokenIssuer()
    CloudTasksEngine(VirtualClock(NOW))
    CloudSchedulerEngine(VirtualClock(NOW))
    assert keys_made == []


def test_the_key_is_made_once_on_first_use_and_signs_what_it_certifies(
        keys_made: list[int]) -> None:
    issuer = TokenIssuer()
    now = datetime.now(timezone.utc)
    token = issuer.id_token(email="a@p.iam.gserviceaccount.com", audience="https://w", now=now)
    certificates = issuer.certificates()
    assert issuer.jwks()["keys"][0]["kid"] == issuer.key_id
    assert keys_made == [1]
    assert list(certificates) == [issuer.key_id]
    claims = jwt.decode(token, certs=certificates, audience="https://w")
    assert claims["email"] == "a@p.iam.gserviceaccount.com"
