"""The gRPC surface: unary calls of the services in `rpcs`, over `http2` on the event loop.

Each call's path names the RPC; its one length-prefixed message is parsed into the request
type, run on the engine (`rpcs.bind`) and answered in Google's wire format. Errors are gRPC
statuses in the trailers, as the real service sends them: the engine's own errors keep their
code and message; a path nobody serves is UNIMPLEMENTED, a message that does not parse
INVALID_ARGUMENT, one over 4 MiB (grpc's default limit), with over 64 KiB of metadata, or
arriving while a connection's unfinished requests hold 64 MiB, RESOURCE_EXHAUSTED. A
connection that breaks HTTP/2 is closed; the server keeps serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import quote

from google.api_core import exceptions
from google.protobuf.message import DecodeError

from fastapi_cloud_tasks.emulator.http2 import (
    BUFFER_LIMIT,
    HEADER_LIST_LIMIT,
    Connection,
    Response,
    encode_headers,
)
from fastapi_cloud_tasks.emulator.rpcs import Service, bind

__all__ = ["GrpcServer"]

MAX_MESSAGE = 4 * 1024 * 1024
# Bytes a grpc-message may hold as they are (gRPC's HTTP/2 protocol spec): printable ASCII but
# the percent sign. urllib's quote keeps letters, digits and "_.-~" whatever `safe` says.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_HEAD = encode_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
_OK = encode_headers([(b"grpc-status", b"0")])

# grpc status codes, as numbered in google/rpc/code.proto
UNKNOWN, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 2, 3, 8, 12, 13


def status_response(code: int, message: str) -> Response:
    """A trailers-only answer: the call failed with `code`."""
    return Response(_HEAD + encode_headers([
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", quote(message, safe=_MESSAGE_SAFE).encode("ascii")),
    ]))


def _http_error(status: int) -> Response:
    """Not a gRPC call at all: a plain HTTP status, as grpc servers answer one."""
    return Response(encode_headers([(b":status", str(status).encode())]))


class GrpcServer:
    def __init__(self, services: list[tuple[Service, Any]]) -> None:
        self._calls = {
            f"/{service.name}/{rpc.name}".encode(): (rpc, bind(service, rpc, engine))
            for service, engine in services for rpc in service.rpcs
        }
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connect, host, port)
        port = self._server.sockets[0].getsockname()[1]
        return int(port)

    async def stop(self, grace: float) -> None:
        """Stop listening; tell each client to go away, and close its connection once the
        answers it is owed are sent, or after `grace` seconds."""
        if self._server is None:
            return
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

    def _connect(self) -> Connection:
        connection = Connection(self, MAX_MESSAGE + 5)
        self._connections.add(connection)
        connection.closed.add_done_callback(lambda _: self._connections.discard(connection))
        return connection

    # -- http2.Application -----------------------------------------------------------------

    def respond(self, headers: dict[bytes, bytes], body: bytes) -> Response:
        if headers.get(b":method") != b"POST":
            return _http_error(405)
        if not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            return _http_error(415)
        path = headers.get(b":path", b"")
        found = self._calls.get(path)
        if found is None:
            return status_response(UNIMPLEMENTED, f"The emulator does not serve the method "
                                                  f"{path.decode('latin-1')}.")
        rpc, call = found
        if len(body) < 5 or len(body) != 5 + int.from_bytes(body[1:5], "big"):
            return status_response(INTERNAL, f"{rpc.name}: the request is not one gRPC message.")
        if body[0]:
            return status_response(UNIMPLEMENTED, f"{rpc.name}: compressed messages are not "
                                                  "supported; send without compression.")
        try:
            request = rpc.request_type.deserialize(body[5:])
        except DecodeError as exc:
            return status_response(INVALID_ARGUMENT,
                                   f"{rpc.name}: the request is not a {rpc.request_type.__name__}"
                                   f" ({exc}).")
        try:
            answer = call(request).SerializeToString()
        except exceptions.GoogleAPICallError as exc:
            code = exc.grpc_status_code.value[0] if exc.grpc_status_code else UNKNOWN
            return status_response(code, exc.message)
        return Response(_HEAD, b"\x00" + len(answer).to_bytes(4, "big") + answer, _OK)

    def too_large(self, headers: dict[bytes, bytes], part: str) -> Response:
        if part == "headers":
            return status_response(RESOURCE_EXHAUSTED, (
                f"The request's metadata is larger than {HEADER_LIST_LIMIT} bytes, the most "
                "this server receives."))
        if part == "connection":
            return status_response(RESOURCE_EXHAUSTED, (
                f"This connection's unfinished requests hold over {BUFFER_LIMIT} bytes; "
                "send fewer large requests at once."))
        return status_response(RESOURCE_EXHAUSTED,
                               f"The request is larger than {MAX_MESSAGE} bytes, the most this "
                               "server receives.")
