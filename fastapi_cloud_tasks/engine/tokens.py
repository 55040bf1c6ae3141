"""OIDC ID tokens shaped like Google's, signed with a key the fake service owns.

Workers verify them with google-auth against the certificates this key publishes, through a
seam made for it (the real check, another trust root), never by switching verification off.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

__all__ = ["GOOGLE_ISSUER", "TokenIssuer"]

GOOGLE_ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME = timedelta(hours=1)
_CERT_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastapi-cloud-tasks fake")])


def _teach_cryptography_the_real_datetime() -> None:
    """cryptography looks `datetime.datetime` up once, on its first certificate, and later
    accepts only instances of that class. Were that first certificate built under freezegun
    (the harness's clock), it would remember FakeDatetime and reject real datetimes ever after
    (and a re-imported freezegun's FakeDatetime). Build a throwaway one now, at import, on the
    real class: freezegun's FakeDatetime subclasses it, so both clocks work afterwards."""
    key = ed25519.Ed25519PrivateKey.generate()  # microseconds, unlike an RSA key
    when = datetime(2000, 1, 1)
    (x509.CertificateBuilder().subject_name(_CERT_NAME).issuer_name(_CERT_NAME)
     .public_key(key.public_key()).serial_number(1)
     .not_valid_before(when).not_valid_after(when).sign(key, None))


_teach_cryptography_the_real_datetime()


class TokenIssuer:
    """An RS256 key pair that mints ID tokens and serves its public certificate.

    The key is made on first use: generating it costs ~50 ms, and most tests and emulator
    sessions never send a task with a token. Making one is cheap, so every engine can own one.
    """

    def __init__(self) -> None:
        self.key_id = secrets.token_hex(20)
        self._lock = threading.Lock()  # the emulator's threads may all ask at once
        self._made: tuple[rsa.RSAPrivateKey, crypt.RSASigner] | None = None
        self._certificates: dict[str, str] | None = None

    def _keys(self) -> tuple[rsa.RSAPrivateKey, crypt.RSASigner]:
        """The key pair and its signer, made by the first caller (of any thread)."""
        with self._lock:
            if self._made is None:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                signer: crypt.RSASigner = crypt.RSASigner.from_string(pem, key_id=self.key_id)
                self._made = (key, signer)
            return self._made

    def id_token(self, *, email: str, audience: str, now: datetime) -> str:
        """A token with Google's claim shape for `email`, valid for one hour from `now`."""
        issued = int(now.timestamp())
        payload: dict[str, Any] = {
            "iss": GOOGLE_ISSUER,
            "aud": audience,
            "azp": email,
            "sub": str(int(hashlib.sha256(email.encode()).hexdigest()[:16], 16)),
            "email": email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + int(TOKEN_LIFETIME.total_seconds()),
        }
        return self.sign(payload)

    def sign(self, payload: dict[str, Any]) -> str:
        """Any payload, signed RS256 with this key (tests craft bad tokens with it)."""
        token: bytes = jwt.encode(self._keys()[1], payload)
        return token.decode()

    def certificates(self) -> dict[str, str]:
        """`{key_id: PEM certificate}`, the format of Google's oauth2/v1/certs endpoint."""
        if self._certificates is None:
            self._certificates = self._self_signed()
        return dict(self._certificates)

    def _self_signed(self) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes

        name = _CERT_NAME
        start = datetime(2000, 1, 1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._keys()[0].public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=365 * 100))
            .sign(self._keys()[0], hashes.SHA256())
        )
        return {self.key_id: cert.public_bytes(serialization.Encoding.PEM).decode()}

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set (the format of Google's oauth2/v3/certs)."""
        numbers = self._keys()[0].public_key().public_numbers()
        key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.key_id,
               "n": _b64(numbers.n), "e": _b64(numbers.e)}
        return {"keys": [key]}


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
