"""Delivering an attempt into an ASGI app in-process, as a real HTTP request.

httpx's ASGI transport builds the request from the exact URL, method, headers and body Cloud
Tasks would send. Sync tests run the calls on an event loop in a helper thread (as starlette's
TestClient does); async tests await them on their own loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.from_thread
import httpx

__all__ = ["AppRouter", "Delivered", "Portal", "asgi_client", "deliver"]

ASGIApp = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Delivered:
    """What came back from the app."""

    response: httpx.Response | None
    status_code: int
    exception: BaseException | None


async def deliver(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], body: bytes
) -> Delivered:
    """Send one request through `client` (see `asgi_client`). An exception escaping the app
    counts as a 500 (what the server would answer) and is kept."""
    try:
        response = await client.request(method, url, headers=headers, content=body or None)
    except Exception as exc:  # the app raised: the server would have answered 500
        return Delivered(None, 500, exc)
    return Delivered(response, response.status_code, None)


def asgi_client(app: ASGIApp) -> httpx.AsyncClient:
    """A client whose requests go into `app` in-process. It holds no sockets or loop state,
    so one serves every delivery of a test, on whichever event loop."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=True))


class AppRouter:
    """Which app receives a URL: the default app, or one routed by base URL prefix."""

    def __init__(self, default: Callable[[], Any]) -> None:
        self._default = default  # resolved on first use: a test that only inspects needs no app
        self._routes: list[tuple[str, Any]] = []
        self._clients: dict[int, httpx.AsyncClient] = {}

    def add(self, base_url: str, app: Any) -> None:
        self._routes.append((base_url.rstrip("/"), app))
        self._routes.sort(key=lambda route: len(route[0]), reverse=True)

    def app_for(self, url: str) -> Any:
        for base, app in self._routes:
            if url == base or url.startswith((base + "/", base + "?")):
                return app
        return self._default()

    def client_for(self, url: str) -> httpx.AsyncClient:
        """The (cached) in-process client of the app that receives `url`."""
        app = self.app_for(url)
        client = self._clients.get(id(app))
        if client is None or client._transport.app is not app:  # type: ignore[attr-defined]
            client = self._clients[id(app)] = asgi_client(app)
        return client


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
