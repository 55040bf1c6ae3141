"""Delivering an attempt into an ASGI app in-process, as a real HTTP request.

The app is called with the ASGI scope a server builds from what Cloud Tasks puts on the wire:
the method, the path (percent-decoded, and raw), the query string, the task's headers plus Host
and Content-Length, and the body. Calling the app directly costs about a third of going
through httpx's ASGI transport, whose request and URL models dominated a drain; the response
becomes an `httpx.Response` only when a test reads it. Sync tests run the calls on an event
loop in a helper thread (as starlette's TestClient does); async tests await them on their own.

An attempt has a wall-clock time limit (the task's `dispatch_deadline`): past it the service
stops waiting, and so does `deliver`. An async endpoint is cancelled; a sync one, running in a
worker thread, cannot be: its thread runs on in the background (as a worker does after Cloud
Tasks gave up) and the harness waits for it at teardown.
"""

from __future__ import annotations

import asyncio
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

__all__ = ["APP_ENGINE_HOST", "AppRouter", "Delivered", "Portal", "deliver", "finish_background"]

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
    deadline_exceeded: float | None = None  # the wall-clock limit (s) the app did not answer in

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
    app: ASGIApp, method: str, url: str, headers: dict[str, str], body: bytes,
    state: dict[str, Any] | None = None, timeout: float | None = None,
    background: set[asyncio.Task[Any]] | None = None,
) -> Delivered:
    """Send one request into `app`, with a shallow copy of the lifespan's `state` in its scope.
    An exception escaping the app (or a request that cannot be sent, like a header that is not
    ASCII) is kept, and the attempt counts as a 500. Past `timeout` seconds the attempt is a
    DEADLINE_EXCEEDED (a 504 to the service) and the app's call, cancelled, goes on in
    `background` until it returns."""
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
        scope = _scope(method, url, headers, body, state)
        if timeout is None:
            await app(scope, receive, send)
        elif not await _within(app(scope, receive, send), timeout, background):
            if done is not None:  # the client is gone: a streaming response may listen for it
                done.set()
            return Delivered(504, False, [], b"", None, method, url, timeout)
    except Exception as exc:  # the app raised: the server answers 500 if it had not answered
        exception = exc
    if not answered:
        status = 500
    return Delivered(status, answered, response_headers, b"".join(parts), exception, method,
                     url)


async def _within(call: Awaitable[None], timeout: float,
                  background: set[asyncio.Task[Any]] | None) -> bool:
    """Await `call` for at most `timeout` seconds (of real time: the event loop's clock is never
    faked); False if it did not finish. The call runs as a task so that, past the deadline, it
    can be left running: cancelling a sync endpoint only takes effect when its thread returns.
    It is cancelled through an anyio cancel scope, not `task.cancel()`: anyio's
    `to_thread.run_sync` shields the thread's wait from its own scopes only: a bare
    `task.cancel()` ends the task at once, its thread still running, and teardown would not
    wait for it."""
    scope = anyio.CancelScope()
    task = asyncio.ensure_future(_in_scope(call, scope))
    finished, _ = await asyncio.wait({task}, timeout=timeout)
    if finished:
        task.result()  # the app's exception, if it raised
        return True
    scope.cancel()
    if background is not None:
        background.add(task)
        task.add_done_callback(background.discard)
    task.add_done_callback(_ignore_outcome)
    return False


async def _in_scope(call: Awaitable[None], scope: anyio.CancelScope) -> None:
    with scope:
        await call


def _ignore_outcome(task: asyncio.Task[Any]) -> None:
    """What a call past its deadline finally did is nobody's business (as for the service);
    retrieving it keeps asyncio from logging "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


async def finish_background(background: set[asyncio.Task[Any]]) -> None:
    """Wait for calls left running past their deadline (on their loop, at teardown)."""
    if background:
        await asyncio.wait(set(background))


def _scope(method: str, url: str, headers: dict[str, str], body: bytes,
           state: dict[str, Any] | None) -> dict[str, Any]:
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
        # As uvicorn and Starlette's TestClient: each request its own shallow copy.
        "state": dict(state) if state else {},
    }


# Where App Engine tasks go (the engine's app_engine_host): no route names it, so
# `cloudtasks_app` receives them, or the app a test gives with
# `cloudtasks.route("http://appengine.cloudtasks.test", app)`.
APP_ENGINE_HOST = "appengine.cloudtasks.test"


class AppRouter:
    """Which app receives a URL: the default app, or one routed by base URL prefix. A WSGI
    app is served through one adapter for the whole test (see wsgi.py)."""

    def __init__(self, default: Callable[[], Any]) -> None:
        self._default = default  # resolved on first use: a test that only inspects needs no app
        self._routes: list[tuple[str, Any]] = []
        self._served: dict[int, tuple[Any, Any]] = {}  # id(app) -> (app, what serves it)

    def add(self, base_url: str, app: Any) -> None:
        self._routes.append((base_url.rstrip("/"), self._serve(app)))
        self._routes.sort(key=lambda route: len(route[0]), reverse=True)

    def app_for(self, url: str) -> Any:
        for base, app in self._routes:
            if url == base or url.startswith((base + "/", base + "?")):
                return app
        return self._serve(self._default())

    def _serve(self, app: Any) -> Any:
        served = self._served.get(id(app))
        if served is None:
            from pytest_cloudtasks.wsgi import adapt  # imports a2wsgi only for a WSGI app

            served = self._served[id(app)] = (app, adapt(app))
        return served[1]

    def close(self) -> None:
        for app, served in self._served.values():
            if served is not app:  # an adapter made here
                served.close()
        self._served.clear()


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
