"""The emulator's HTTP/1.1 server: REST calls and token certificates on one port.

h11 parses and frames the messages: keep-alive, Content-Length and chunked request bodies,
`Connection: close`, HTTP/1.0, `Expect: 100-continue`. Handlers are plain synchronous
functions of a whole request: everything served here is a short in-memory call, run on the
event loop. A router answers paths nobody serves with 404, known paths with the wrong method
with 405, and a handler that raises with 500; the connection stays usable after all three.
Error bodies are Google's JSON error shape; status lines carry the standard reason phrase.

Every peer is assumed hostile (`HTTP_LIMITS`): connections are capped (past the cap the
longest-idle one makes room, else the newcomer waits for room, up to the head timeout and as
many as are served; then a 503), an idle connection is closed, a request
head and body must each arrive whole within a deadline however slowly the bytes come, and
unfinished bodies are bounded per request and across connections. `SameOrigin` refuses what
a web page could send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import urlsplit

import h11

from fastapi_cloud_tasks.emulator.connection_limits import Budget, Limits
from fastapi_cloud_tasks.emulator.http_limits import HTTP_LIMITS
from fastapi_cloud_tasks.emulator.quiet_log import RepeatLimiter
from fastapi_cloud_tasks.emulator.same_origin import SameOrigin

__all__ = ["HttpRequest", "HttpResponse", "HttpServer", "Router", "json_error"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")

MAX_HEAD = 64 * 1024  # h11 refuses a longer request head (431)
# Seconds a connection must have waited for a request before it is closed to make room: one
# may be on its way (Node's REST transport opens a connection per concurrent call and writes
# at once, and reuses a kept-alive one as soon as it is free).
IDLE_GRACE = 1.0
_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


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
    """Serves `handler` on `host:port` until `stop`, within `limits`, answering only requests
    `SameOrigin` lets through (`allowed_hosts`: the names given with `--allow-host`)."""

    def __init__(self, handler: Callable[[HttpRequest], HttpResponse], *,
                 limits: Limits = HTTP_LIMITS, allowed_hosts: Iterable[str] = ()) -> None:
        self.handler = handler
        self.limits = limits
        self.allowed_hosts = tuple(allowed_hosts)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._origin = SameOrigin("", 0)
        self._connections: dict[asyncio.Task[None], _Watch] = {}
        self._idle: dict[_Watch, None] = {}  # waiting for their next request, oldest first
        self._freed = asyncio.Event()  # set when a connection closes or turns idle
        self._waiting = 0  # connections past the cap waiting for room
        self._grace = min(IDLE_GRACE, limits.idle_timeout)
        self._unfinished = Budget(limits.total_buffer_limit)  # request body bytes held
        self._log = RepeatLimiter()
        self._busy = _whole(json_error(
            503, "UNAVAILABLE",
            f"The emulator already serves {limits.max_connections} HTTP connections "
            "(--http-max-connections) and none became idle within --http-head-timeout; retry "
            "later, close some, or raise the limit."))

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._origin = SameOrigin(host, self.port, self.allowed_hosts)
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
        if len(self._connections) >= self.limits.max_connections and not await self._room():
            writer.write(self._busy)  # refused before reading a byte
            writer.close()
            self._log.log(logger, logging.WARNING, "busy", "Refused an HTTP connection: "
                          "already serving %d (--http-max-connections), none idle",
                          len(self._connections))
            return
        watch = _Watch(task)
        self._connections[task] = watch
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while (request := await self._read(watch, connection, reader, writer)) is not None:
                self._respond(connection, writer, request, self._handle(request))
                if writer.transport.get_write_buffer_size():  # a client slow to read
                    watch.arm(self.limits.body_timeout, "write")
                    await writer.drain()
                    watch.disarm()
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    break  # closing: asked for, HTTP/1.0, or a body we did not read
                connection.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                self._respond(connection, writer, None, json_error(
                    status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL",
                    f"Malformed HTTP request: {exc}"), close=True)
        except _Refused as exc:
            self._respond(connection, writer, None, exc.response, close=True)
        except asyncio.CancelledError:  # stopping, evicted, or a deadline (watch.expired)
            if watch.expired in ("head", "body") and connection.our_state in (
                h11.IDLE, h11.SEND_RESPONSE
            ):
                seconds = getattr(self.limits, f"{watch.expired}_timeout")
                self._respond(connection, writer, None, json_error(
                    408, "DEADLINE_EXCEEDED",
                    f"The request {watch.expired} did not arrive whole within {seconds:g} s "
                    f"(--http-{watch.expired}-timeout); the connection is closed."), close=True)
        except ConnectionError:
            pass
        finally:
            watch.disarm()
            self._idle.pop(watch, None)
            self._unfinished.held -= watch.unfinished
            del self._connections[task]
            self._freed.set()
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # close() would wait for a reader that never reads
            else:
                writer.close()

    async def _read(self, watch: _Watch, connection: h11.Connection,
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                    ) -> HttpRequest | None:
        """The next whole request; None when the client closed or stayed idle too long.

        One timer per connection bounds what it waits for: its next request while idle, the
        whole head from its first byte, the whole body from the head's end. A byte that
        arrives does not move a deadline, so dribbling cannot hold a connection."""
        limits = self.limits
        head: h11.Request | None = None
        fields: dict[str, str] = {}
        body = bytearray()
        started = False  # a byte of this request has come
        phase = ""  # what the timer is armed for
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                if head is not None:
                    if phase != "body":
                        phase = "body"
                        watch.arm(limits.body_timeout, phase)
                    if connection.they_are_waiting_for_100_continue:
                        writer.write(connection.send(h11.InformationalResponse(
                            status_code=100, headers=[], reason=b"Continue")) or b"")
                elif started or connection.trailing_data[0]:
                    if phase != "head":
                        phase = "head"
                        watch.arm(limits.head_timeout, phase)
                elif phase != "idle":
                    phase = "idle"
                    watch.arm(limits.idle_timeout, phase)
                    watch.idle_since = asyncio.get_running_loop().time()
                    self._idle[watch] = None
                    self._freed.set()
                data = await reader.read(65536)
                if not started:
                    started = True
                    self._idle.pop(watch, None)
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
                refusal = self._origin.refusal(fields)
                if refusal is not None:
                    self._log.log(logger, logging.WARNING, "refused", "Refused %s %s: %s",
                                  event.method.decode("latin-1"),
                                  event.target.decode("latin-1"), refusal)
                    raise _Refused(json_error(403, "PERMISSION_DENIED", refusal))
                length = fields.get("content-length")
                if length is not None and int(length) > limits.buffer_limit:
                    raise _Refused(self._too_large())
            elif isinstance(event, h11.Data):
                size = len(event.data)
                if len(body) + size > limits.buffer_limit:
                    raise _Refused(self._too_large())
                budget = self._unfinished
                if budget.held + size > budget.limit:
                    raise _Refused(json_error(
                        429, "RESOURCE_EXHAUSTED",
                        f"The emulator already holds {budget.held} bytes of unfinished request "
                        f"bodies, of the {budget.limit} it takes at once; send this request "
                        "again once others have finished."))
                body += event.data
                watch.unfinished += size
                budget.held += size
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                watch.disarm()
                self._unfinished.held -= watch.unfinished
                watch.unfinished = 0
                target = urlsplit(head.target.decode("latin-1"))
                return HttpRequest(
                    method=head.method.decode("ascii").upper(), path=target.path,
                    query=target.query,
                    headers=fields,
                    body=bytes(body),
                )
            else:  # ConnectionClosed, or PAUSED after a protocol switch we never accept
                return None

    async def _room(self) -> bool:
        """Whether a connection past the cap may be served: once one is closed to make room
        or one finishes, within the head timeout. A waiting connection holds a socket, so no
        more wait than are served; the others are refused at once."""
        if self._waiting >= self.limits.max_connections:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.head_timeout
        self._waiting += 1
        try:
            while len(self._connections) >= self.limits.max_connections and not self._evict_idle():
                now = loop.time()
                if now >= deadline:
                    return False
                # Until a connection closes or turns idle, or the oldest idle one is past its
                # grace (self._idle is in the order they turned idle).
                oldest = next(iter(self._idle), None)
                wake = deadline if oldest is None else min(deadline,
                                                           oldest.idle_since + self._grace)
                self._freed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), max(wake - now, 0.001))
            return True
        finally:
            self._waiting -= 1

    def _evict_idle(self) -> bool:
        """Make room by closing the connection idle the longest, if it has been for the grace;
        False if none has."""
        watch = next(iter(self._idle), None)
        if watch is None or watch.idle_since > asyncio.get_running_loop().time() - self._grace:
            return False
        del self._idle[watch]
        watch.expire("evicted")
        return True

    def _too_large(self) -> HttpResponse:
        return json_error(413, "INVALID_ARGUMENT",
                          f"The request body exceeds {self.limits.buffer_limit} bytes, the most "
                          "Google's HTTP APIs take too.")

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
        data = connection.send(h11.Response(status_code=response.status, headers=headers,
                                            reason=_REASONS.get(response.status, b""))) or b""
        if request is None or request.method != "HEAD":
            data += connection.send(h11.Data(data=response.body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        writer.write(data)


class _Watch:
    """One connection's timer: armed for what it waits for, it cancels the serving task when
    that takes too long, and says which deadline passed (`expired`)."""

    __slots__ = ("expired", "idle_since", "task", "timer", "unfinished")

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task
        self.timer: asyncio.TimerHandle | None = None
        self.expired = ""  # "idle", "head", "body", "write" or "evicted" once it has
        self.unfinished = 0  # body bytes of the request being read
        self.idle_since = 0.0  # loop time it last began waiting for a request

    def arm(self, seconds: float, phase: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self.expire, phase)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self, phase: str) -> None:
        self.disarm()
        self.expired = phase
        self.task.cancel()


def _whole(response: HttpResponse) -> bytes:
    """`response` as bytes on the wire, closing the connection, for a peer never parsed."""
    head = (f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + response.body


class _Refused(Exception):
    """A request answered with `response` before its body is read; the connection closes."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response
