"""The gRPC surface: unary calls of the services in `rpcs`, over `http2` on the event loop.

Each call's path names the RPC; its one length-prefixed message (gzip or deflate compressed,
or not: `grpc_compression`) is parsed into the request type, run on the engine (`rpcs.bind`)
and answered in Google's wire format, compressed as the request was. Errors are gRPC
statuses in the trailers, as the real service sends them: the engine's own errors keep their
code and message; a path nobody serves is UNIMPLEMENTED, and so is an unknown compression
(with the `grpc-accept-encoding` the spec asks); a message that does not parse is
INVALID_ARGUMENT; one over 4 MiB (grpc's default limit) once decompressed, with over 64 KiB
of metadata, or arriving while the unfinished requests of its connection or of the server
hold their bound, RESOURCE_EXHAUSTED; one past its `grpc-timeout`, DEADLINE_EXCEEDED. The
connections are bounded in number and time (`connection_limits.Limits`); one that breaks
HTTP/2 is closed, and the server keeps serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from google.api_core import exceptions
from google.protobuf.message import DecodeError

from fastapi_cloud_tasks.emulator.connection_limits import Budget, Limits
from fastapi_cloud_tasks.emulator.grpc_compression import (
    ACCEPT_ENCODING,
    CODECS,
    MessageTooLarge,
    compress,
    decompress,
)
from fastapi_cloud_tasks.emulator.http2 import Connection, Refusal, Response, encode_headers
from fastapi_cloud_tasks.emulator.http2_fields import HEADER_LIST_LIMIT
from fastapi_cloud_tasks.emulator.quiet_log import RepeatLimiter
from fastapi_cloud_tasks.emulator.rpcs import Service, bind

__all__ = ["GrpcServer"]

MAX_MESSAGE = 4 * 1024 * 1024
# Bytes a grpc-message may hold as they are (gRPC's HTTP/2 protocol spec): printable ASCII but
# the percent sign. urllib's quote keeps letters, digits and "_.-~" whatever `safe` says.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_GRPC = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_HEAD = encode_headers(_GRPC)
# The head of an answer to a compressed call: its messages may be compressed alike.
_HEADS = {encoding: encode_headers([*_GRPC, (b"grpc-encoding", encoding),
                                    (b"grpc-accept-encoding", ACCEPT_ENCODING)])
          for encoding in CODECS}
_ACCEPTS = encode_headers([(b"grpc-accept-encoding", ACCEPT_ENCODING)])
_OK = encode_headers([(b"grpc-status", b"0")])

# grpc status codes, as numbered in google/rpc/code.proto
UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED = 2, 3, 4, 8
UNIMPLEMENTED, INTERNAL = 12, 13

# grpc-timeout: at most 8 digits and a unit (gRPC's PROTOCOL-HTTP2.md), in seconds.
_TIMEOUT = re.compile(rb"([0-9]{1,8})([HMSmun])")
_UNIT_S = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_TIMEOUTS_KEPT = 4096
_timeouts: dict[bytes, float | None] = {}  # parsed values: clients repeat a few

logger = logging.getLogger("fastapi_cloud_tasks.emulator")


def parse_timeout(value: bytes) -> float | None:
    """A grpc-timeout header's seconds; None if it is malformed."""
    if value in _timeouts:
        return _timeouts[value]
    match = _TIMEOUT.fullmatch(value)
    seconds = int(match[1]) * _UNIT_S[match[2]] if match else None
    if len(_timeouts) >= _TIMEOUTS_KEPT:
        _timeouts.clear()
    _timeouts[value] = seconds
    return seconds


def status_response(code: int, message: str, extra: bytes = b"") -> Response:
    """A trailers-only answer: the call failed with `code`."""
    return Response(_HEAD + extra + encode_headers([
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", quote(message, safe=_MESSAGE_SAFE).encode("ascii")),
    ]))


def _http_error(status: int, says: str) -> Response:
    """Not a gRPC call at all: a plain HTTP status, as grpc servers answer one, with a line
    for the person who pointed curl or a browser here."""
    return Response(encode_headers([(b":status", str(status).encode()),
                                    (b"content-type", b"text/plain; charset=utf-8")]),
                    f"{says}\n".encode())



class GrpcServer:
    def __init__(self, services: list[tuple[Service, Any]], limits: Limits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._calls = {
            f"/{service.name}/{rpc.name}".encode(): (rpc, bind(service, rpc, engine))
            for service, engine in services for rpc in service.rpcs
        }
        self.limits = limits or Limits()
        self._clock = clock
        self._budget = Budget(self.limits.total_buffer_limit)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._refusing = 0  # refused connections not closed yet
        self._quiet = RepeatLimiter()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connect, host, port)
        self._sweeper = asyncio.create_task(self._sweep_every(self.limits.tick))
        port = self._server.sockets[0].getsockname()[1]
        return int(port)

    async def stop(self, grace: float) -> None:
        """Stop listening; tell each client to go away, and close its connection once the
        answers it is owed are sent, or after `grace` seconds."""
        if self._server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.go_away()
        if connections:
            await asyncio.wait([connection.closed for connection in connections],
                               timeout=grace)
        for connection in connections:
            connection.abort()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), grace)

    def sweep(self) -> None:
        """Enforce every connection's timeouts now."""
        now = self._clock()
        for connection in list(self._connections):
            connection.check(now)

    async def _sweep_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def _connect(self) -> asyncio.Protocol:
        limit = self.limits.max_connections
        if len(self._connections) >= limit:
            self._quiet.log(logger, logging.WARNING, "cap", (
                "refused a gRPC connection: %d are open, the most allowed "
                "(--grpc-max-connections)"), limit)
            return self._refusal(limit)
        connection = Connection(self, MAX_MESSAGE + 5, self.limits, self._budget, self._clock)
        self._connections.add(connection)
        connection.closed.add_done_callback(lambda _: self._connections.discard(connection))
        return connection

    def _refusal(self, limit: int) -> asyncio.Protocol:
        """A connection over the cap, refused at once. So that refusals cannot take the file
        descriptors the cap keeps free, one past `limit` refusals still closing is dropped
        outright (its socket closed unanswered)."""
        refusing = self

        class Counted(Refusal):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                refusing._refusing += 1
                if refusing._refusing > limit:
                    transport.abort()  # type: ignore[attr-defined]
                    return
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                refusing._refusing -= 1
                super().connection_lost(exc)

        return Counted(f"This server takes at most {limit} connections at once "
                       "(--grpc-max-connections); close some first.")

    # -- http2.Application -----------------------------------------------------------------

    def respond(self, headers: dict[bytes, bytes], body: bytes, opened: float) -> Response:
        if headers.get(b":method") != b"POST":
            return _http_error(405, "This port serves gRPC: POST with content-type "
                                    "application/grpc.")
        if not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            return _http_error(415, "This port serves gRPC: send content-type "
                                    "application/grpc.")
        path = headers.get(b":path", b"")
        found = self._calls.get(path)
        if found is None:
            return status_response(UNIMPLEMENTED, f"The emulator does not serve the method "
                                                  f"{path.decode('latin-1')}.")
        rpc, call = found
        timeout = headers.get(b"grpc-timeout")
        deadline = None
        if timeout is not None:
            seconds = parse_timeout(timeout)
            if seconds is None:
                return status_response(INTERNAL, (
                    f"grpc-timeout: {timeout.decode('latin-1')!r} is malformed: give at most "
                    "8 digits and one of the units H, M, S, m, u, n."))
            deadline = opened + seconds
            if self._clock() >= deadline:
                return status_response(DEADLINE_EXCEEDED, "Deadline Exceeded")
        if len(body) < 5 or len(body) != 5 + int.from_bytes(body[1:5], "big"):
            return status_response(INTERNAL, f"{rpc.name}: the request is not one gRPC message.")
        message = body[5:]
        encoding = headers.get(b"grpc-encoding")
        if body[0]:
            refused = self._decompressed(rpc.name, body[0], encoding, message)
            if isinstance(refused, Response):
                return refused
            message = refused
        try:
            request = rpc.request_type.deserialize(message)
        except DecodeError as exc:
            return status_response(INVALID_ARGUMENT,
                                   f"{rpc.name}: the request is not a {rpc.request_type.__name__}"
                                   f" ({exc}).")
        try:
            answer = call(request).SerializeToString()
        except exceptions.GoogleAPICallError as exc:
            code = exc.grpc_status_code.value[0] if exc.grpc_status_code else UNKNOWN
            return status_response(code, exc.message)
        if deadline is not None and self._clock() > deadline:
            return status_response(DEADLINE_EXCEEDED, "Deadline Exceeded")
        if encoding in CODECS and encoding in headers.get(b"grpc-accept-encoding", b""):
            packed = compress(encoding, answer)
            head = _HEADS[encoding]
            if packed is not None:
                return Response(head, b"\x01" + len(packed).to_bytes(4, "big") + packed, _OK)
            return Response(head, b"\x00" + len(answer).to_bytes(4, "big") + answer, _OK)
        return Response(_HEAD, b"\x00" + len(answer).to_bytes(4, "big") + answer, _OK)

    def _decompressed(self, name: str, flag: int, encoding: bytes | None,
                      data: bytes) -> bytes | Response:
        """The message of a call whose compressed flag is set, or the answer refusing it."""
        if flag != 1:
            return status_response(INTERNAL, f"{name}: the compressed flag is {flag}, not 0 or 1.")
        if encoding is None or encoding == b"identity":
            return status_response(INTERNAL, (
                f"{name}: a compressed message, but grpc-encoding names no compression."))
        if encoding not in CODECS:
            return status_response(UNIMPLEMENTED, (
                f"{name}: the compression {encoding.decode('latin-1')!r} is not supported; "
                f"use one of {ACCEPT_ENCODING.decode().replace(',', ', ')}."), _ACCEPTS)
        try:
            return decompress(encoding, data, MAX_MESSAGE)
        except MessageTooLarge:
            return status_response(RESOURCE_EXHAUSTED, (
                f"The request is larger than {MAX_MESSAGE} bytes once decompressed, the most "
                "this server receives."))
        except zlib.error as exc:
            return status_response(INTERNAL, (
                f"{name}: the message is not valid {encoding.decode()} data ({exc})."))

    def refuse(self, headers: dict[bytes, bytes], reason: str) -> Response:
        limits = self.limits
        messages = {
            "headers": (f"The request's metadata is larger than {HEADER_LIST_LIMIT} bytes, "
                        "the most this server receives."),
            "connection": (f"This connection's unfinished requests hold over "
                           f"{limits.buffer_limit} bytes; send fewer large requests at once."),
            "server": (f"This server's unfinished requests hold over "
                       f"{limits.total_buffer_limit} bytes; send fewer large requests at once."),
            "slow": (f"The request did not arrive whole within {limits.body_timeout:g} s "
                     "(--grpc-body-timeout)."),
            "body": (f"The request is larger than {MAX_MESSAGE} bytes, the most this server "
                     "receives."),
        }
        if reason == "deadline":
            return status_response(DEADLINE_EXCEEDED, "Deadline Exceeded")
        code = DEADLINE_EXCEEDED if reason == "slow" else RESOURCE_EXHAUSTED
        return status_response(code, messages[reason])

    def time_limit(self, headers: dict[bytes, bytes]) -> float | None:
        timeout = headers.get(b"grpc-timeout")
        return None if timeout is None else parse_timeout(timeout)
