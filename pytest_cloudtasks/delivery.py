"""Delivering an attempt into an ASGI app in-process, as a real HTTP request.

The app is called with the ASGI scope a server builds from what Cloud Tasks puts on the wire:
the method, the path (percent-decoded, and raw), the query string, the task's headers plus Host
and Content-Length, and the body. Calling the app directly costs about a third of going
through httpx's ASGI transport, whose request and URL models dominated a drain; the response
becomes an `httpx.Response` only when a test reads it. Sync tests run the calls on an event
loop in a helper thread (as starlette's TestClient does); async tests await them on their own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.from_thread
import httpx

from fastapi_cloud_tasks.engine.http_target import split_url, wire_headers

__all__ = ["AppRouter", "Delivered", "Portal", "deliver"]

ASGIApp = Callable[..., Awaitable[None]]
CLIENT = ("127.0.0.1", 123)  # the peer address the app sees, as under httpx's ASGI transport


@dataclass(frozen=True)
class Delivered:
    """What came back from the app: the status the service sees (500 when the app raised or
    never finished a response, as a server would answer), the response as sent, and the
    exception that escaped the app, if any."""

    status_code: int
    answered: bool  # a complete response was sent
    headers: list[tuple[bytes, bytes]]
    body: bytes
    exception: BaseException | None
    method: str
    url: str

    @functools.cached_property
    def response(self) -> httpx.Response | None:
        """The app's response (None if it raised before answering), built on first use."""
        if not self.answered:
            return None
        return httpx.Response(self.status_code, headers=self.headers, content=self.body,
                              request=httpx.Request(self.method, self.url))

    def header(self, name: bytes) -> str | None:
        """A response header by lower-case name."""
        for key, value in self.headers if self.answered else ():
            if key.lower() == name:
                return value.decode("latin-1")
        return None


async def deliver(
    app: ASGIApp, method: str, url: str, headers: dict[str, str], body: bytes
) -> Delivered:
    """Send one request into `app`. An exception escaping the app (or a request that cannot be
    sent, like a header that is not ASCII) is kept, and the attempt counts as a 500."""
    status, answered = 500, False
    response_headers: list[tuple[bytes, bytes]] = []
    parts: list[bytes] = []
    request_sent = False
    done: anyio.Event | None = None  # made only if the app waits for the disconnect

    async def receive() -> dict[str, Any]:
        nonlocal request_sent, done
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # A server reports the client gone only once the response is over (a streaming
        # response listens for it while it sends).
        if not answered:
            done = done or anyio.Event()
            await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, response_headers, answered
        if message["type"] == "http.response.start":
            status, response_headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            if message.get("body") and method != "HEAD":
                parts.append(message["body"])
            if not message.get("more_body", False):
                answered = True
                if done is not None:
                    done.set()

    exception: BaseException | None = None
    try:
        await app(_scope(method, url, headers, body), receive, send)
    except Exception as exc:  # the app raised: the server answers 500 if it had not answered
        exception = exc
    if not answered:
        status = 500
    return Delivered(status, answered, response_headers, b"".join(parts), exception, method,
                     url)


def _scope(method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    target = split_url(url)
    fields = [(name.lower(), value) for name, value in wire_headers(target, method, headers, body)]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": target.scheme,
        "path": unquote(target.path),
        "raw_path": target.path.encode("ascii"),
        "query_string": target.query.encode("ascii"),
        "root_path": "",
        "headers": fields,
        "server": (target.host, target.port),
        "client": CLIENT,
    }


class AppRouter:
    """Which app receives a URL: the default app, or one routed by base URL prefix."""

    def __init__(self, default: Callable[[], Any]) -> None:
        self._default = default  # resolved on first use: a test that only inspects needs no app
        self._routes: list[tuple[str, Any]] = []

    def add(self, base_url: str, app: Any) -> None:
        self._routes.append((base_url.rstrip("/"), app))
        self._routes.sort(key=lambda route: len(route[0]), reverse=True)

    def app_for(self, url: str) -> Any:
        for base, app in self._routes:
            if url == base or url.startswith((base + "/", base + "?")):
                return app
        return self._default()


class Portal:
    """An event loop in a helper thread for sync tests, started on first use."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None

    def call(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._portal is None:
            self._stack = contextlib.ExitStack()
            self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        return self._portal.call(func, *args)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._portal = None
