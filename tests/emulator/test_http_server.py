"""The emulator's HTTP/1.1 server, in process, driven by raw bytes over loopback sockets.

What goes over the wire is checked, not what a client library makes of it: keep-alive,
request bodies framed by Content-Length or chunks, closing when asked (or HTTP/1.0), 404 and
405, a failing handler, malformed and oversized requests; requests a web page could send
(refused); connection limits and deadlines, with limits small enough that no test sleeps long.
Every read has a deadline.
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

from fastapi_cloud_tasks.emulator.connection_limits import Limits
from fastapi_cloud_tasks.emulator.http_server import HttpRequest, HttpResponse, HttpServer, Router

pytestmark = pytest.mark.asyncio

WAIT = 10.0  # the longest any read waits for something that should come at once (a bound for
# a loaded machine: only a failing test waits that long)
LATE = 3.0  # how late a 0.3 s timeout may end on a loaded machine and still be "on time"


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


def routes(calls: list[HttpRequest] | None = None) -> Router:
    def recorded(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        if calls is not None:
            calls.append(request)
        return echo(request, match)

    router = Router()
    router.add("GET", r"/items/([^/]+)", recorded)
    router.add("POST", r"/items/([^/]+)", recorded)
    router.add("GET", r"/broken", broken)
    router.add("GET", r"/big", lambda request, match: HttpResponse(200, b"x" * 8_000_000))
    return router


Start = Callable[..., Awaitable[HttpServer]]


@pytest_asyncio.fixture
async def start() -> AsyncIterator[Start]:
    """Start an HttpServer on 127.0.0.1 (keywords: `HttpServer`'s, and `calls` to record the
    requests its handlers get); every one is stopped in teardown."""
    servers: list[HttpServer] = []

    async def start_server(calls: list[HttpRequest] | None = None,
                           **settings: object) -> HttpServer:
        servers.append(HttpServer(routes(calls), **settings))  # type: ignore[arg-type]
        await servers[-1].start("127.0.0.1", 0)
        return servers[-1]

    yield start_server
    for served in servers:
        await asyncio.wait_for(served.stop(), WAIT * 3)


@pytest_asyncio.fixture
async def server(start: Start) -> HttpServer:
    return await start()


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

    async def closed_by_server(self, within: float = WAIT) -> bool:
        """True once the server closes (EOF within `within` s), False if it keeps the
        connection."""
        try:
            return await asyncio.wait_for(self.reader.read(1), within) == b""
        except asyncio.TimeoutError:  # the builtin only from Python 3.11
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Connect = Callable[[], Awaitable[Peer]]
Dial = Callable[[HttpServer], Awaitable[Peer]]


@pytest_asyncio.fixture
async def dial() -> AsyncIterator[Dial]:
    """Open a connection to a server; every one is closed in teardown."""
    peers: list[Peer] = []

    async def open_peer(served: HttpServer) -> Peer:
        peers.append(Peer(*await asyncio.open_connection("127.0.0.1", served.port)))
        return peers[-1]

    yield open_peer
    for peer in peers:
        await peer.close()


@pytest.fixture
def connect(server: HttpServer, dial: Dial) -> Connect:
    """Open a connection to `server`."""
    return lambda: dial(server)


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: localhost", *extra, "", ""]).encode()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}", *extra]
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
    assert not await peer.closed_by_server(within=2.0)


async def test_pipelined_requests_are_answered_in_order(connect: Connect) -> None:
    peer = await connect()

    await peer.send(get("/items/a") + post("/items/b", b"xyz") + get("/items/c"))

    replies = [await peer.reply() for _ in range(3)]
    assert [r.json()["id"] for r in replies] == ["a", "b", "c"]  # type: ignore[index]
    assert replies[1].json()["body"] == "xyz"  # type: ignore[index]


async def test_a_chunked_request_body_arrives_whole(connect: Connect) -> None:
    peer = await connect()

    await peer.send(b"POST /items/c HTTP/1.1\r\nHost: localhost\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

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

    await peer.send(b"POST /items/e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
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
    await peer.send(b"DELETE /items/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
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

    await peer.send(b"HEAD /items/h HTTP/1.1\r\nHost: localhost\r\n\r\n")
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
    pytest.param(b"POST /items/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n",
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


async def test_an_oversized_body_gets_413_without_being_read(start: Start, dial: Dial) -> None:
    server = await start(limits=Limits(buffer_limit=10))
    connect: Connect = lambda: dial(server)  # noqa: E731
    peer = await connect()

    await peer.send(b"POST /items/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n")
    declared = await peer.reply()
    chunked = await connect()
    await chunked.send(b"POST /items/big HTTP/1.1\r\nHost: localhost\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n")
    streamed = await chunked.reply()

    assert declared.status == streamed.status == 413
    assert await peer.closed_by_server()
    assert await chunked.closed_by_server()


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    start: Start, dial: Dial
) -> None:
    peer = await dial(await start(limits=Limits(idle_timeout=0.2)))
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


async def test_status_lines_carry_the_standard_reason_phrase(connect: Connect) -> None:
    """h2load and some proxies count `HTTP/1.1 200 ` (no phrase) as a failure."""
    peer = await connect()

    await peer.send(b"POST /items/e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                    b"Expect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(peer.reader.readuntil(b"\r\n"), WAIT)
    await asyncio.wait_for(peer.reader.readuntil(b"\r\n"), WAIT)
    await peer.send(b"ok")
    ok = await asyncio.wait_for(peer.reader.readuntil(b"\r\n"), WAIT)
    await peer.reader.readuntil(b"\r\n\r\n")
    await peer.reader.readexactly(len(json.dumps({"method": "POST", "id": "e", "query": "",
                                                   "body": "ok", "type": None})))
    await peer.send(get("/nothing"))
    missing = await asyncio.wait_for(peer.reader.readuntil(b"\r\n"), WAIT)

    assert interim == b"HTTP/1.1 100 Continue\r\n"
    assert ok == b"HTTP/1.1 200 OK\r\n"
    assert missing == b"HTTP/1.1 404 Not Found\r\n"


# -- requests a web page could send: refused (SameOrigin) ----------------------------------


def browser_post(port: int, *, host: str | None = None, origin: str | None = None,
                 fetch_site: str | None = None) -> bytes:
    """What a page's `fetch(url, {method: "POST", body})` sends: text/plain needs no preflight."""
    extra = [f"Origin: {origin}"] if origin is not None else []
    if fetch_site is not None:
        extra.append(f"Sec-Fetch-Site: {fetch_site}")
    body = b'{"task": {"httpRequest": {"url": "http://169.254.169.254/"}}}'
    head = ["POST /items/attack HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}",
            "Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(body)}", *extra]
    return "\r\n".join([*head, "", ""]).encode() + body


@pytest.mark.parametrize(("kind", "header", "flag"), [
    pytest.param({"origin": "http://attacker.example"}, "Origin 'http://attacker.example'",
                 "--allow-host NAME", id="foreign-origin"),
    pytest.param({"origin": "null"}, "Origin 'null'", "--allow-host NAME", id="null-origin"),
    pytest.param({"origin": "http://localhost:3000"}, "Origin 'http://localhost:3000'",
                 "--allow-host NAME", id="another-local-port"),
    pytest.param({"host": "attacker.example:8124", "origin": "http://attacker.example:8124"},
                 "Host 'attacker.example:8124'", "--allow-host attacker.example",
                 id="dns-rebinding"),
    pytest.param({"host": "attacker.example"}, "Host 'attacker.example'",
                 "--allow-host attacker.example", id="foreign-host-no-origin"),
    pytest.param({"fetch_site": "cross-site"}, "Sec-Fetch-Site 'cross-site'",
                 "--allow-host NAME", id="cross-site-fetch"),
])
async def test_a_request_a_web_page_could_send_is_403_and_never_reaches_a_handler(
    start: Start, dial: Dial, kind: dict[str, str], header: str, flag: str
) -> None:
    calls: list[HttpRequest] = []
    server = await start(calls)
    peer = await dial(server)

    await peer.send(browser_post(server.port, **kind))
    reply = await peer.reply()

    assert reply.status == 403
    error = reply.json()["error"]  # type: ignore[index]
    assert error["code"] == 403
    assert error["status"] == "PERMISSION_DENIED"
    assert f"refuses requests with {header}" in error["message"]
    assert flag in error["message"]
    assert calls == []
    assert await peer.closed_by_server()


@pytest.mark.parametrize("kind", [
    pytest.param({}, id="no-origin"),  # Google's REST transport, curl
    pytest.param({"host": "localhost"}, id="localhost"),
    pytest.param({"host": "LocalHost.:1"}, id="localhost-any-case-trailing-dot"),
    pytest.param({"host": "tasks.localhost:8124"}, id="subdomain-of-localhost"),
    pytest.param({"host": "127.0.0.2"}, id="any-loopback-ipv4"),
    pytest.param({"host": "[::1]:8124"}, id="ipv6-loopback"),
    pytest.param({"host": "emulator:1", "origin": "http://emulator:{port}"}, id="allowed-host"),
    pytest.param({"origin": "http://127.0.0.1:{port}", "fetch_site": "same-origin"},
                 id="own-origin"),
    pytest.param({"host": "localhost", "origin": "http://localhost:{port}"},
                 id="own-origin-by-name"),
    pytest.param({"fetch_site": "none"}, id="typed-into-the-address-bar"),
])
async def test_clients_and_the_emulators_own_pages_are_answered(
    start: Start, dial: Dial, kind: dict[str, str]
) -> None:
    calls: list[HttpRequest] = []
    server = await start(calls, allowed_hosts=["Emulator"])
    peer = await dial(server)
    settings = {key: value.format(port=server.port) for key, value in kind.items()}

    await peer.send(browser_post(server.port, **settings))

    assert (await peer.reply()).status == 200
    assert len(calls) == 1


async def test_a_refused_request_gets_no_100_continue_and_its_body_is_not_read(
    start: Start, dial: Dial
) -> None:
    server = await start()
    peer = await dial(server)

    await peer.send(b"POST /items/e HTTP/1.1\r\nHost: attacker.example\r\n"
                    b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")

    assert (await peer.reply()).status == 403
    assert await peer.closed_by_server()


# -- connections: capped, timed out, bounded (connection_limits.Limits) -------------------


async def busy_peers(server: HttpServer, dial: Dial, count: int) -> list[Peer]:
    """`count` connections mid-request (head sent, body not): neither idle nor timed out soon."""
    peers = [await dial(server) for _ in range(count)]
    for peer in peers:
        await peer.send(post("/items/1", b"12345")[:-5])
    await asyncio.sleep(0.05)  # let the server read them
    return peers


async def test_past_max_connections_as_many_wait_as_are_served_and_one_more_gets_503_at_once(
    start: Start, dial: Dial
) -> None:
    server = await start(limits=Limits(max_connections=2))
    busy = await busy_peers(server, dial, 2)
    waiting = [await dial(server) for _ in range(2)]
    for peer in waiting:
        await peer.send(get("/items/2"))

    extra = await dial(server)
    refused = await extra.reply()
    for peer in busy:
        await peer.send(b"12345")

    assert refused.status == 503
    assert refused.headers["connection"] == "close"
    assert "--http-max-connections" in refused.json()["error"]["message"]  # type: ignore[index]
    assert await extra.closed_by_server()
    assert [(await peer.reply()).status for peer in busy] == [200, 200]
    assert [(await peer.reply()).status for peer in waiting] == [200, 200]  # room was made


async def test_past_max_connections_a_newcomer_gets_503_once_no_room_came_in_the_head_timeout(
    start: Start, dial: Dial
) -> None:
    server = await start(limits=Limits(max_connections=1, head_timeout=0.3))
    [busy] = await busy_peers(server, dial, 1)
    loop = asyncio.get_running_loop()
    started = loop.time()

    newcomer = await dial(server)
    await newcomer.send(get("/items/2"))
    refused = await newcomer.reply()

    assert refused.status == 503
    assert 0.25 < loop.time() - started < LATE
    await busy.send(b"12345")
    assert (await busy.reply()).status == 200


async def test_at_max_connections_the_longest_idle_one_makes_room(
    start: Start, dial: Dial
) -> None:
    server = await start(limits=Limits(max_connections=2))
    oldest, newer = await dial(server), await dial(server)
    for peer in (oldest, newer):
        await peer.send(get("/items/1"))
        await peer.reply()

    newest = await dial(server)
    await newest.send(get("/items/2"))

    assert (await newest.reply()).status == 200
    assert await oldest.closed_by_server()
    await newer.send(get("/items/3"))
    assert (await newer.reply()).status == 200


async def test_a_burst_past_max_connections_is_served_whole(start: Start, dial: Dial) -> None:
    """Node's REST transport opens a connection per concurrent call and writes its request at
    once: a connection that has not been read yet must not be closed as idle (its request is
    on the way), and the excess waits for room instead of being cut off."""
    server = await start(limits=Limits(max_connections=4))
    peers = [await dial(server) for _ in range(8)]  # 4 served at once, 4 waiting
    for number, peer in enumerate(peers):
        peer.writer.write(post(f"/items/{number}", b"burst"))

    replies = await asyncio.gather(*(peer.reply() for peer in peers), return_exceptions=True)

    assert [getattr(reply, "status", reply) for reply in replies] == [200] * 8


async def test_a_new_connection_silent_past_the_grace_makes_room(start: Start, dial: Dial) -> None:
    """Silent sockets cannot hold the cap: past IDLE_GRACE (1 s, well before the idle timeout)
    the oldest makes room."""
    server = await start(limits=Limits(max_connections=1, idle_timeout=10.0))
    silent = await dial(server)
    loop = asyncio.get_running_loop()
    started = loop.time()

    newcomer = await dial(server)
    await newcomer.send(get("/items/2"))

    assert (await newcomer.reply()).status == 200
    assert await silent.closed_by_server()
    assert 0.9 < loop.time() - started < 5.0  # the grace, not the idle timeout


async def dribble(peer: Peer, data: bytes) -> None:
    """Send `data` a byte every 0.05 s (5 s for 100 bytes), until the server closes."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            await peer.send(bytes([byte]))
            await asyncio.sleep(0.05)


async def timed_out(peer: Peer) -> str | None:
    """The 408's message once the server closes; None if the close reset the connection first
    (bytes the client was still sending reached a closed socket, which drops the answer)."""
    try:
        reply = await peer.reply()
    except ConnectionResetError:
        return None
    assert reply.status == 408
    assert await peer.closed_by_server()
    return str(reply.json()["error"]["message"])  # type: ignore[index]


async def test_a_head_dribbled_byte_by_byte_is_closed_after_the_head_timeout(
    start: Start, dial: Dial
) -> None:
    """Each byte would reset a per-read timeout; the head's deadline runs from its first."""
    server = await start(limits=Limits(head_timeout=0.3))
    peer = await dial(server)
    loop = asyncio.get_running_loop()
    started = loop.time()

    head = get("/items/slow", "X-Pad: " + "p" * 100)
    dribbling = asyncio.ensure_future(dribble(peer, head[:100]))
    message = await timed_out(peer)
    dribbling.cancel()

    assert message is None or "--http-head-timeout" in message
    assert loop.time() - started < LATE  # a per-read timeout: the whole 5 s


async def test_a_body_dribbled_byte_by_byte_is_closed_after_the_body_timeout(
    start: Start, dial: Dial
) -> None:
    server = await start(limits=Limits(body_timeout=0.3))
    peer = await dial(server)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await peer.send(b"POST /items/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n"
                    b"\r\n")
    dribbling = asyncio.ensure_future(dribble(peer, b"x" * 100))
    message = await timed_out(peer)
    dribbling.cancel()

    assert message is None or "--http-body-timeout" in message
    assert loop.time() - started < LATE  # a per-read timeout: the whole 5 s


async def test_a_connection_that_never_sends_is_closed_after_the_idle_timeout(
    start: Start, dial: Dial
) -> None:
    peer = await dial(await start(limits=Limits(idle_timeout=0.2)))

    assert await peer.closed_by_server()


async def test_unfinished_bodies_are_bounded_across_connections_and_freed_when_done(
    start: Start, dial: Dial
) -> None:
    server = await start(limits=Limits(total_buffer_limit=10))
    first, second = await dial(server), await dial(server)
    await first.send(post("/items/1", b"12345678")[:-1])  # 7 of its 8 body bytes held
    await asyncio.sleep(0.05)

    await second.send(post("/items/2", b"12345"))  # 7 + 5 > 10
    refused = await second.reply()
    await first.send(b"8")
    finished = await first.reply()
    third = await dial(server)
    await third.send(post("/items/3", b"12345678"))  # the first's bytes were freed

    assert refused.status == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"  # type: ignore[index]
    assert "unfinished request bodies" in refused.json()["error"]["message"]  # type: ignore[index]
    assert finished.status == 200
    assert (await third.reply()).status == 200


async def test_a_client_that_never_reads_its_answer_is_cut_off_after_the_body_timeout(
    start: Start, dial: Dial
) -> None:
    server = await start(limits=Limits(body_timeout=0.3))
    peer = await dial(server)

    await peer.send(get("/big"))  # 8 MB: more than the socket buffers hold
    await asyncio.sleep(0.6)

    received = 0
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(peer.reader.read(1 << 20), WAIT):
            received += len(chunk)
    assert received < 8_000_000
