"""The emulator's HTTP/1.1 client: one request per attempt over kept-alive connections.

Deliveries are the emulator's hot path. httpx spent ~2 ms of CPU per request here (URL and
header models, anyio, its pool), h11's state machine ~0.15 ms; this client writes the request
itself and reads the response with `_ResponseReader`, a parser of just what RFC 9112 says a
client must read (status line, header fields, a body framed by Content-Length, chunked
coding or the connection's close), ~0.04 ms. It does only what a delivery needs: send method,
URL, headers and body, read the status and headers, drain the body, keep the connection for
the next attempt to the same host.

Each request is sent once. A kept-alive connection the worker closes just as a request goes
out on it (its keep-alive timeout racing the reuse) answers nothing, and nothing says whether
the app saw the request: that is `DeliveryError`, a failed attempt the engine counts and
retries after its backoff (the next try carries `X-CloudTasks-TaskRetryCount` one higher and
`X-CloudTasks-TaskPreviousResponse: 504`), never a silent second send the engine would not see.
Delivery is at least once, as on Google (which documents rare duplicate executions): a handler
whose first run did its work but lost its answer runs again, so handlers must be idempotent.
To make that race rare, a connection idle longer than `max_idle_time` (1 s, below the
keep-alive timeout of common servers: uvicorn's and Node's 5 s, gunicorn's 2 s) is closed
instead of reused.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import NamedTuple

from fastapi_cloud_tasks.engine.http_target import HttpTarget, split_url, wire_headers

__all__ = ["DeliveryError", "HttpDelivery", "Response"]

MAX_HEAD = 64 * 1024  # a response head (or a chunk-size line, or trailers) longer is refused
_TOKEN_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARS.encode())
_NOT_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # controls but horizontal tab
_NAMES = re.compile(f"{_TOKEN_CHARS}(?:\n{_TOKEN_CHARS})*".encode())  # joined by LF
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class DeliveryError(Exception):
    """No response: the request could not be sent, or the connection closed before the reply."""


class Response(NamedTuple):  # a NamedTuple: built for every attempt, cheaper than a dataclass
    status_code: int
    headers: dict[str, str]  # lower-case names


def request_bytes(method: str, target: HttpTarget, headers: dict[str, str],
                  body: bytes) -> bytes:
    """The request as written on the wire. Raises ValueError (naming what is wrong) for a
    method, header name or value that cannot be sent as it is."""
    if not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        raise ValueError(f"the method {method!r} is not an HTTP token")
    path = target.path + (f"?{target.query}" if target.query else "")
    fields = wire_headers(target, method, headers, body)
    # All names, then all values, each checked in one match (in C: this runs for every
    # attempt). An LF within a name would show in the count of the names' separators.
    names, values = zip(*fields, strict=True)
    joined = b"\n".join(names)
    if (not _NAMES.fullmatch(joined) or joined.count(b"\n") != len(names) - 1
            or _NOT_IN_VALUE.search(b"".join(values))):
        for name, value in fields:  # which one
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"the header name {name!r} is not an HTTP token")
            if _NOT_IN_VALUE.search(value):
                raise ValueError(f"the value of {name.decode()} holds a control character: "
                                 f"{value!r}")
    lines = b"\r\n".join(map(b": ".join, fields))
    return b"".join((f"{method} {path} HTTP/1.1\r\n".encode("ascii"), lines, b"\r\n\r\n",
                     body))


class _BadResponse(Exception):
    """Bytes that are not an HTTP/1.1 response (RFC 9112)."""


# _ResponseReader states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class _ResponseReader:
    """One response at a time from the bytes a connection receives: informational (1xx)
    responses skipped, the body framed as RFC 9112 §6.3 says and read to its end (unkept)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _DONE
        self._head_only = False
        self._remaining = 0
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = False

    def expect(self, head_only: bool) -> None:
        """The next bytes answer a new request (`head_only`: a HEAD, so no body follows)."""
        self._state = _HEAD
        self._head_only = head_only

    @property
    def reusable(self) -> bool:
        """The response ended, the server keeps the connection, and no byte came past it."""
        return self._state == _DONE and self._keep_alive and not self._buffer

    def feed(self, data: bytes) -> Response | None:
        """The response, once these bytes complete it."""
        self._buffer += data
        while True:
            state = self._state
            if state == _HEAD:
                if not self._read_head():
                    return None
            elif state in (_LENGTH, _CHUNK_DATA):
                taken = min(self._remaining, len(self._buffer))
                del self._buffer[:taken]
                self._remaining -= taken
                if self._remaining:
                    return None
                self._state = _CHUNK_END if state == _CHUNK_DATA else _DONE
            elif state == _CHUNK_SIZE:
                line = self._line()
                if line is None:
                    return None
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise _BadResponse(f"a chunk size of {bytes(line)!r}")
                self._remaining = int(size, 16)
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _CHUNK_END:
                if len(self._buffer) < 2:
                    return None
                if self._buffer[:2] != b"\r\n":
                    raise _BadResponse("a chunk longer than its size")
                del self._buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                line = self._line()
                if line is None:
                    return None
                if not line:
                    self._state = _DONE
            elif state == _UNTIL_CLOSE:
                self._buffer.clear()
                return None
            else:  # _DONE
                return Response(self._status, self._headers)

    def finish(self) -> Response | None:
        """The connection closed: the response if that ended it (a body read until close);
        raises _BadResponse if it was cut short."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return Response(self._status, self._headers)
        if self._state != _DONE:
            raise _BadResponse("the connection closed in the middle of the response")
        return None

    def _line(self) -> bytearray | None:
        end = self._buffer.find(b"\r\n")
        if end > MAX_HEAD or (end < 0 and len(self._buffer) > MAX_HEAD + 1):
            raise _BadResponse(f"a line over {MAX_HEAD} bytes")
        if end < 0:
            return None
        line = self._buffer[:end]
        del self._buffer[:end + 2]
        return line

    def _read_head(self) -> bool:
        """Parse a whole head if it is here; True if one was (the state moved on)."""
        end = self._buffer.find(b"\r\n\r\n")
        # The same limit however the bytes arrive: an unfinished head may still end in a
        # terminator starting at MAX_HEAD.
        if end > MAX_HEAD or (end < 0 and len(self._buffer) > MAX_HEAD + 3):
            raise _BadResponse(f"a response head over {MAX_HEAD} bytes")
        if end < 0:
            return False
        status_line, *lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[:end + 4]
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise _BadResponse(f"the status line {status_line!r}")
        status = int(match[3])
        headers: dict[str, str] = {}
        lengths: set[bytes] = set()
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise _BadResponse(f"the header line {line!r}")
            value = value.strip(b" \t")
            if _NOT_IN_VALUE.search(value):
                raise _BadResponse(f"the header line {line!r}")
            key = name.decode("ascii").lower()
            text = value.decode("latin-1")
            # A repeated field is one comma-separated list (RFC 9110 §5.3).
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
            if key == "content-length":
                lengths.add(value)
        if 100 <= status < 200:
            if status == 101:
                raise _BadResponse("101 Switching Protocols, to a request that asked for none")
            return True  # informational: the final response is still to come
        self._status, self._headers = status, headers
        connection = headers.get("connection")
        closes = connection is not None and "close" in {
            token.strip().lower() for token in connection.split(",")}
        self._keep_alive = match.group(1, 2) == (b"1", b"1") and not closes
        coding = headers.get("transfer-encoding")
        if self._head_only or status in (204, 304):
            self._state = _DONE
        elif coding is not None:
            if coding.lower() != "chunked":
                raise _BadResponse(f"the transfer coding {coding!r}")
            self._state = _CHUNK_SIZE
        elif lengths:
            if len(lengths) > 1 or not all(length.isdigit() for length in lengths):
                raise _BadResponse(f"Content-Length {headers['content-length']!r}")
            self._remaining = int(lengths.pop())
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
        return True


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a reader for the responses, a future waiting for the reply."""

    def __init__(self) -> None:
        self.reader = _ResponseReader()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.received = False  # any byte of the current response
        self.idle_since = 0.0  # loop time it was last released for reuse
        self._reply: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, head_only: bool) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.received = False
        self.reader.expect(head_only)
        self._reply = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._reply

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._reply is None:  # nothing asked (a stray 408 on an idle connection...)
            self.close()
            return
        try:
            response = self.reader.feed(data)
        except _BadResponse as exc:
            self._fail(DeliveryError(f"invalid HTTP response: {exc}"))
            self.close()
            return
        if response is not None:
            self._succeed(response)

    def eof_received(self) -> bool:
        if self._reply is not None:
            try:
                response = self.reader.finish()
            except _BadResponse as exc:
                self._fail(DeliveryError(
                    "connection closed before the response" if not self.received
                    else f"invalid HTTP response: {exc}"))
            else:
                if response is not None:
                    self._succeed(response)
        self.closed = True
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(DeliveryError(f"connection closed before the response ({exc or 'EOF'})"))

    def time_out(self) -> None:
        self._fail(TimeoutError("no response within the deadline"))

    def _succeed(self, response: Response) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_result(response)

    def _fail(self, exc: Exception) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(exc)

    @property
    def reusable(self) -> bool:
        return not self.closed and self._reply is None and self.reader.reusable

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpDelivery:
    """Sends deliveries; keeps up to `max_idle` idle connections per host for reuse, each for
    at most `max_idle_time` seconds."""

    def __init__(self, max_idle: int = 64, max_idle_time: float = 1.0) -> None:
        self.max_idle = max_idle
        self.max_idle_time = max_idle_time
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes,
                      timeout: float) -> Response:
        """One request and its response within `timeout` seconds, else `TimeoutError`.
        Raises `DeliveryError` when no response came (the request is not sent again),
        `ValueError` for a request that cannot be written (a bad URL, method, header name or
        value)."""
        try:  # checked before any connection is taken: a bad request sends nothing
            split = split_url(url)
            data = request_bytes(method, split, headers, body)
        except ValueError as exc:
            raise ValueError(f"cannot send {method} {url}: {exc}") from exc
        key = (split.scheme, split.host, split.default_port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._idle_connection(key, loop.time())
        if connection is None:
            connection = await self._connect(key, deadline - loop.time())
        # A timer rather than asyncio.timeout (3.11+) or wait_for (a task per request).
        reply = connection.send(data, head_only=method == "HEAD")
        timer = loop.call_at(deadline, connection.time_out)
        try:
            response = await reply
        except BaseException:  # no response, the timeout, or the emulator stopping
            connection.close()
            raise
        finally:
            timer.cancel()
        self._release(key, connection, loop.time())
        return response

    def _idle_connection(self, key: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.idle_since <= self.max_idle_time:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[str, str, int], timeout: float) -> _Connection:
        scheme, host, port = key
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            _, connection = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(_Connection, host, port,
                                                             ssl=context),
                max(0.0, timeout),
            )
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise TimeoutError(f"no connection to {host}:{port} within the deadline") from None
        except OSError as exc:
            raise DeliveryError(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection

    def _release(self, key: tuple[str, str, int], connection: _Connection, now: float) -> None:
        if not connection.reusable:
            connection.close()
            return
        connection.idle_since = now
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle:
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
