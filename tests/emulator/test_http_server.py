"""The emulator's HTTP/1.1 server, in process, driven by raw bytes over loopback sockets.

What goes over the wire is checked, not what a client library makes of it: keep-alive,
request bodies framed by Content-Length or chunks, closing when asked (or HTTP/1.0), 404 and
405, a failing handler, malformed and oversized requests. Every read has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from fastapi_cloud_tasks.emulator import http_server
from fastapi_cloud_tasks.emulator.http_server import HttpRequest, HttpResponse, HttpServer, Router

pytestmark = pytest.mark.asyncio

WAIT = 2.0  # the longest any read waits for something that should come at once


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def echo(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
    document = {"method": request.method, "id": match.group(1), "query": request.query,
                "body": request.body.decode(), "type": request.headers.get("content-type")}
    return HttpResponse(200, json.dumps(document).encode())


def broken(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
    raise RuntimeError("a bug in a handler")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[HttpServer]:
    router = Router()
    router.add("GET", r"/items/([^/]+)", echo)
    router.add("POST", r"/items/([^/]+)", echo)
    router.add("GET", r"/broken", broken)
    served = HttpServer(router)
    await served.start("127.0.0.1", 0)
    yield served
    await asyncio.wait_for(served.stop(), WAIT * 3)


class Peer:
    """One client connection sending raw bytes and reading whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, head_only: bool = False) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = 0 if head_only else int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), WAIT)
        return Reply(int(status_line.split()[1]), headers, body)

    async def closed_by_server(self) -> bool:
        """True once the server closes (EOF within WAIT), False if it keeps the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(1), WAIT) == b""
        except asyncio.TimeoutError:  # the builtin only from Python 3.11
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Connect = Callable[[], Awaitable[Peer]]


@pytest_asyncio.fixture
async def connect(server: HttpServer) -> AsyncIterator[Connect]:
    """Open a connection to `server`; every one is closed in teardown."""
    peers: list[Peer] = []

    async def open_peer() -> Peer:
        peers.append(Peer(*await asyncio.open_connection("127.0.0.1", server.port)))
        return peers[-1]

    yield open_peer
    for peer in peers:
        await peer.close()


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: test", *extra, "", ""]).encode()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra]
    return "\r\n".join([*head, "", ""]).encode() + body


async def test_a_kept_alive_connection_serves_request_after_request(connect: Connect) -> None:
    peer = await connect()

    await peer.send(get("/items/1?a=b%20c"))
    first = await peer.reply()
    await peer.send(post("/items/2", b'{"x": 1}', "Content-Type: application/json"))
    second = await peer.reply()

    assert first.status == second.status == 200
    assert first.json() == {"method": "GET", "id": "1", "query": "a=b%20c", "body": "",
                            "type": None}
    assert second.json() == {"method": "POST", "id": "2", "query": "", "body": '{"x": 1}',
                             "type": "application/json"}
    assert first.headers["content-type"] == "application/json; charset=UTF-8"
    assert "date" in first.headers
    assert not await peer.closed_by_server()


async def test_pipelined_requests_are_answered_in_order(connect: Connect) -> None:
    peer = await connect()

    await peer.send(get("/items/a") + post("/items/b", b"xyz") + get("/items/c"))

    replies = [await peer.reply() for _ in range(3)]
    assert [r.json()["id"] for r in replies] == ["a", "b", "c"]  # type: ignore[index]
    assert replies[1].json()["body"] == "xyz"  # type: ignore[index]


async def test_a_chunked_request_body_arrives_whole(connect: Connect) -> None:
    peer = await connect()

    await peer.send(b"POST /items/c HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    assert (await peer.reply()).json()["body"] == "hello world"  # type: ignore[index]


async def test_a_body_split_across_packets_is_waited_for(connect: Connect) -> None:
    peer = await connect()
    request = post("/items/s", b"0123456789")

    await peer.send(request[:-6])
    await asyncio.sleep(0.05)
    await peer.send(request[-6:])

    assert (await peer.reply()).json()["body"] == "0123456789"  # type: ignore[index]


async def test_expect_100_continue_is_answered_before_the_body(connect: Connect) -> None:
    peer = await connect()

    await peer.send(b"POST /items/e HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n"
                    b"Expect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(peer.reader.readuntil(b"\r\n\r\n"), WAIT)
    await peer.send(b"ok")

    assert interim.startswith(b"HTTP/1.1 100 ")
    assert (await peer.reply()).json()["body"] == "ok"  # type: ignore[index]


@pytest.mark.parametrize("request_bytes", [
    pytest.param(get("/items/1", "Connection: close"), id="connection-close"),
    pytest.param(b"GET /items/1 HTTP/1.0\r\n\r\n", id="http-1.0"),
])
async def test_the_connection_closes_after_the_answer_when_asked(
    connect: Connect, request_bytes: bytes
) -> None:
    peer = await connect()

    await peer.send(request_bytes)

    assert (await peer.reply()).status == 200
    assert await peer.closed_by_server()


async def test_unknown_path_is_404_and_wrong_method_405_with_allow(connect: Connect) -> None:
    peer = await connect()

    await peer.send(get("/nothing/here"))
    missing = await peer.reply()
    await peer.send(b"DELETE /items/1 HTTP/1.1\r\nHost: test\r\n\r\n")
    wrong = await peer.reply()
    await peer.send(get("/items/still-served"))
    after = await peer.reply()

    assert missing.status == 404
    assert missing.json() == {"error": {
        "code": 404, "status": "NOT_FOUND",
        "message": "The emulator serves nothing at GET /nothing/here."}}
    assert wrong.status == 405
    assert wrong.headers["allow"] == "GET, POST"
    assert wrong.json()["error"]["code"] == 405  # type: ignore[index]
    assert after.status == 200


async def test_head_is_get_without_the_body(connect: Connect) -> None:
    peer = await connect()

    await peer.send(b"HEAD /items/h HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await peer.reply(head_only=True)
    await peer.send(get("/items/h"))
    full = await peer.reply()

    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(full.body))


async def test_a_failing_handler_is_a_500_and_the_connection_serves_on(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    peer = await connect()

    await peer.send(get("/broken"))
    failed = await peer.reply()
    await peer.send(get("/items/after"))
    after = await peer.reply()

    assert failed.status == 500
    assert failed.json() == {"error": {
        "code": 500, "status": "INTERNAL",
        "message": "The emulator failed to answer this request."}}
    assert "a bug in a handler" in caplog.text
    assert after.status == 200


@pytest.mark.parametrize("garbage", [
    pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="bad-request-line"),
    pytest.param(b"GET /items/1 HTTP/1.1\r\nBad Header\r\n\r\n", id="bad-header"),
    pytest.param(b"POST /items/1 HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
                 id="bad-content-length"),
])
async def test_a_malformed_request_gets_400_and_a_close_and_others_are_served(
    connect: Connect, garbage: bytes
) -> None:
    peer = await connect()

    await peer.send(garbage)
    reply = await peer.reply()

    assert reply.status == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"  # type: ignore[index]
    assert reply.headers["connection"] == "close"
    assert await peer.closed_by_server()
    other = await connect()
    await other.send(get("/items/next"))
    assert (await other.reply()).status == 200


async def test_an_oversized_body_gets_413_without_being_read(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "MAX_BODY", 10)
    peer = await connect()

    await peer.send(b"POST /items/big HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
    declared = await peer.reply()
    chunked = await connect()
    await chunked.send(b"POST /items/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"6\r\nabcdef\r\n6\r\nghijkl\r\n")
    streamed = await chunked.reply()

    assert declared.status == streamed.status == 413
    assert await peer.closed_by_server()
    assert await chunked.closed_by_server()


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "IDLE_TIMEOUT", 0.2)
    peer = await connect()
    await peer.send(get("/items/1"))
    await peer.reply()

    assert await peer.closed_by_server()


async def test_a_request_cut_off_midway_only_closes_its_connection(connect: Connect) -> None:
    peer = await connect()
    await peer.send(post("/items/cut", b"0123456789")[:-4])
    peer.writer.write_eof()

    assert (await peer.reply()).status == 400
    assert await peer.closed_by_server()
    other = await connect()
    await other.send(get("/items/next"))
    assert (await other.reply()).status == 200


async def test_stop_closes_idle_kept_alive_connections(
    server: HttpServer, connect: Connect
) -> None:
    peer = await connect()
    await peer.send(get("/items/1"))
    await peer.reply()

    await asyncio.wait_for(server.stop(), WAIT)

    assert await peer.closed_by_server()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), WAIT)
