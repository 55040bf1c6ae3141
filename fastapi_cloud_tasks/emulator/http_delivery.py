"""The emulator's HTTP/1.1 client: one request per attempt over kept-alive connections.

Deliveries are the emulator's hot path. httpx spent ~2 ms of CPU per request here (URL and
header models, anyio, its pool); this client writes the request with h11 (the HTTP/1.1 state
machine httpx itself uses) straight onto an asyncio transport and costs ~0.25 ms. It does only
what a delivery needs: send method, URL, headers and body, read the status and headers, drain
the body, keep the connection for the next attempt to the same host.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import h11

from fastapi_cloud_tasks.engine.http_target import split_url, wire_headers

__all__ = ["DeliveryError", "HttpDelivery", "Response"]



class DeliveryError(Exception):
    """No response: the request could not be sent, or the connection closed before the reply."""


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: dict[str, str]  # lower-case names


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: h11 keeps the protocol state, a future waits for the reply."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.received = False  # any byte of the current response
        self._reply: asyncio.Future[Response] | None = None
        self._response: h11.Response | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.received = False
        self._response = None
        self._reply = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._reply

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.h11.receive_data(data)
            self._read_events()
        except h11.RemoteProtocolError as exc:
            self._fail(DeliveryError(f"invalid HTTP response: {exc}"))

    def eof_received(self) -> bool:
        if self._reply is not None and self._response is None:
            self._fail(DeliveryError("connection closed before the response"))
            return False
        try:
            self.h11.receive_data(b"")
            self._read_events()
        except h11.RemoteProtocolError as exc:
            self._fail(DeliveryError(f"invalid HTTP response: {exc}"))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(DeliveryError(f"connection closed before the response ({exc or 'EOF'})"))

    def _read_events(self) -> None:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self._response = event
            elif isinstance(event, h11.EndOfMessage):
                self._complete()
                return
            elif isinstance(event, h11.ConnectionClosed):
                self._fail(DeliveryError("connection closed before the response ended"))
                return
            # h11.Data (the body) and h11.InformationalResponse (1xx) are read and dropped.

    def _complete(self) -> None:
        reply, response = self._reply, self._response
        self._reply = None
        if reply is None or reply.done() or response is None:
            return
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in response.headers}
        reply.set_result(Response(response.status_code, headers))

    def time_out(self) -> None:
        self._fail(TimeoutError("no response within the deadline"))

    def _fail(self, exc: Exception) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(exc)

    @property
    def reusable(self) -> bool:
        """Open, with the last exchange complete: both sides DONE as the response ends, both
        IDLE once `start_next_cycle` put it in the idle pool."""
        states = (self.h11.our_state, self.h11.their_state)
        return (not self.closed and states in ((h11.DONE, h11.DONE), (h11.IDLE, h11.IDLE))
                # bytes past the response would be read as the next request's answer
                and not self.h11.trailing_data[0])

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()




class HttpDelivery:
    """Sends deliveries; keeps up to `max_idle` idle connections per host for reuse."""

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes,
                      timeout: float) -> Response:
        """One request and its response within `timeout` seconds, else `TimeoutError`.
        Raises `DeliveryError` when no response came, `ValueError` for a request that
        cannot be written (a bad URL, or a header h11 refuses)."""
        split = split_url(url)
        target = split.path + (f"?{split.query}" if split.query else "")
        try:  # checked before any connection is taken: a bad request sends nothing
            request = h11.Request(method=method, target=target.encode("ascii"),
                                  headers=wire_headers(split, method, headers, body))
        except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
            raise ValueError(f"cannot send {method} {url}: {exc}") from exc
        key = (split.scheme, split.host, split.default_port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        retried = False
        while True:
            connection, reused = None if retried else self._idle_connection(key), True
            if connection is None:
                connection, reused = await self._connect(key, deadline - loop.time()), False
            data = connection.h11.send(request)
            if body:
                data += connection.h11.send(h11.Data(data=body))
            data += connection.h11.send(h11.EndOfMessage())
            # A timer rather than asyncio.timeout (3.11+) or wait_for (a task per request).
            reply = connection.send(data)
            timer = loop.call_at(deadline, connection.time_out)
            try:
                response = await reply
            except DeliveryError:
                connection.close()
                # A kept-alive connection the server closed as we reused it: the request never
                # reached the app (no byte came back), so a new connection may send it.
                if reused and not connection.received:
                    retried = True  # once, on a new connection
                    continue
                raise
            except BaseException:  # the timeout, or the emulator stopping
                connection.close()
                raise
            finally:
                timer.cancel()
            self._release(key, connection)
            return response

    def _idle_connection(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable:
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

    def _release(self, key: tuple[str, str, int], connection: _Connection) -> None:
        if not connection.reusable:
            connection.close()
            return
        connection.h11.start_next_cycle()
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
