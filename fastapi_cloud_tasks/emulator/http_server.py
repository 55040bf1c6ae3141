"""The emulator's HTTP/1.1 server: REST calls and token certificates on one port.

h11 (already the delivery client's protocol layer) parses and frames the messages: keep-alive,
Content-Length and chunked request bodies, `Connection: close`, HTTP/1.0, `Expect:
100-continue`. Handlers are plain synchronous functions of a whole request: everything served
here is a short in-memory call, run on the event loop. A router answers paths nobody serves
with 404, known paths with the wrong method with 405, and a handler that raises with 500; the
connection stays usable after all three. Error bodies are Google's JSON error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import urlsplit

import h11

__all__ = ["HttpRequest", "HttpResponse", "HttpServer", "Router", "json_error"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")

MAX_BODY = 32 * 1024 * 1024  # Google's HTTP APIs refuse requests over 32 MiB as well
MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 75.0  # seconds a kept-alive connection may wait for its next request
READ_TIMEOUT = 30.0  # seconds a started request may take to arrive whole


@dataclass(frozen=True)
class HttpRequest:
    method: str  # upper case
    path: str  # as sent: still percent-encoded
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    headers: tuple[tuple[str, str], ...] = ()


def json_error(status: int, code: str, message: str,
               headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    """An error the way Google's REST APIs answer one: `{"error": {"code", "message",
    "status"}}`, `code` being the google.rpc.Code name. api_core builds its exception from it."""
    body = {"error": {"code": status, "message": message, "status": code}}
    return HttpResponse(status, json.dumps(body).encode(), headers=headers)


RouteHandler = Callable[[HttpRequest, "re.Match[str]"], HttpResponse]


class Router:
    """Dispatch on method and a regular expression over the (encoded) path."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], RouteHandler]] = []

    def add(self, method: str, pattern: str, handler: RouteHandler) -> None:
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        allowed: list[str] = []
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method == request.method:
                return handler(request, match)
            allowed.append(method)
        if allowed:
            return json_error(405, "UNIMPLEMENTED",
                              f"{request.method} is not allowed on {request.path}; "
                              f"use {' or '.join(sorted(set(allowed)))}.",
                              (("Allow", ", ".join(sorted(set(allowed)))),))
        return json_error(404, "NOT_FOUND",
                          f"The emulator serves nothing at {request.method} {request.path}.")


class HttpServer:
    """Serves `handler` on `host:port` until `stop`."""

    def __init__(self, handler: Callable[[HttpRequest], HttpResponse]) -> None:
        self.handler = handler
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection (idle keep-alive ones included)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while (request := await self._read(connection, reader, writer)) is not None:
                self._respond(connection, writer, request, self._handle(request))
                await writer.drain()
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    break  # closing: asked for, HTTP/1.0, or a body we did not read
                connection.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                self._respond(connection, writer, None, json_error(
                    status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL",
                    f"Malformed HTTP request: {exc}"), close=True)
        except _BodyTooLarge:
            self._respond(connection, writer, None, json_error(
                413, "INVALID_ARGUMENT", f"The request body exceeds {MAX_BODY} bytes."),
                close=True)
        except (asyncio.TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            self._connections.discard(task)

    async def _read(self, connection: h11.Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> HttpRequest | None:
        """The next whole request; None when the client closed or stayed idle too long."""
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                if connection.they_are_waiting_for_100_continue:
                    writer.write(connection.send(h11.InformationalResponse(
                        status_code=100, headers=[])) or b"")
                timeout = IDLE_TIMEOUT if head is None and not body else READ_TIMEOUT
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except asyncio.TimeoutError:
                    if head is None:
                        return None
                    raise
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > MAX_BODY:
                    raise _BodyTooLarge
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _BodyTooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                target = urlsplit(head.target.decode("latin-1"))
                return HttpRequest(
                    method=head.method.decode("ascii").upper(), path=target.path,
                    query=target.query,
                    headers={k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers},
                    body=bytes(body),
                )
            else:  # ConnectionClosed, or PAUSED after a protocol switch we never accept
                return None

    def _handle(self, request: HttpRequest) -> HttpResponse:
        """The handler's answer; HEAD is GET without the body."""
        as_get = request.method == "HEAD"
        try:
            if as_get:
                request = HttpRequest("GET", request.path, request.query, request.headers,
                                      request.body)
            return self.handler(request)
        except Exception:
            logger.exception("HTTP %s %s failed", request.method, request.path)
            return json_error(500, "INTERNAL", "The emulator failed to answer this request.")

    @staticmethod
    def _respond(connection: h11.Connection, writer: asyncio.StreamWriter,
                 request: HttpRequest | None, response: HttpResponse,
                 close: bool = False) -> None:
        headers = [("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body))),
                   ("Date", formatdate(usegmt=True)), *response.headers]
        if close:
            headers.append(("Connection", "close"))
        data = connection.send(h11.Response(status_code=response.status, headers=headers)) or b""
        if request is None or request.method != "HEAD":
            data += connection.send(h11.Data(data=response.body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        writer.write(data)


class _BodyTooLarge(Exception):
    """A request body over MAX_BODY: answered 413, then the connection closes."""
