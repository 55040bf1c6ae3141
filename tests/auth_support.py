"""What the `verify_cloud_tasks_token` tests share: the accounts and audience, a worker app
recording the claims it was called with, token crafting, and a certificates server on loopback.

No `from __future__ import annotations` here: the endpoint's `Depends(verifier)` names a local
variable, which FastAPI can only see in annotations evaluated when the function is defined.
"""

import base64
import http.server
import json
import threading
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from google.auth import jwt as google_jwt

from fastapi_cloud_tasks.engine.tokens import TokenIssuer

SA = "tasks-invoker@my-project.iam.gserviceaccount.com"
OTHER_SA = "someone-else@my-project.iam.gserviceaccount.com"
AUDIENCE = "https://worker.example.com"
URL = "/tasks/work"

calls: list[dict[str, Any]] = []


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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_app(verifier: Any) -> FastAPI:
    app = FastAPI()

    @app.post(URL)
    def work(claims: Annotated[dict[str, Any], Depends(verifier)]) -> dict[str, Any]:
        calls.append(claims)
        return {"email": claims["email"]}

    return app


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert calls == []


def assert_forbidden(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert calls == []


class CertsServer:
    """Serves a certificates document on 127.0.0.1 (an ephemeral port), counting fetches."""

    def __init__(self, body: bytes, cache_control: str | None,
                 path: str = "/oauth2/v1/certs") -> None:
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
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def serve(self, document: Any) -> None:
        self.body = document if isinstance(document, bytes) else json.dumps(document).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
