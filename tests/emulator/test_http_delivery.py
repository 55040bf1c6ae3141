"""The emulator's keep-alive HTTP/1.1 client against a raw asyncio server on loopback.

The server is scripted per test (answer, hold, close, split or garble the reply) and records
the exact bytes of every request and whether the client closed each connection, so the tests
see what goes over the wire and which connections are reused, not what the client believes.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from google.cloud import tasks_v2

from fastapi_cloud_tasks.emulator.dispatcher import Dispatcher
from fastapi_cloud_tasks.emulator.http_delivery import DeliveryError, HttpDelivery, Response
from fastapi_cloud_tasks.engine.clock import SystemClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine

pytestmark = pytest.mark.asyncio

LOCATION = "projects/p/locations/l"
WAIT = 10.0  # the longest any test waits for something that should happen at once (a bound
# for a loaded machine: only a failing test waits that long)
LATE = 3.0  # how late a 0.3 s timeout may end on a loaded machine and still be "on time"


# -- the scripted server ---------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the server does with one request: wait `delay`, write `parts` one by one (a short
    pause apart, so the client gets them in separate reads), then keep or close the
    connection. No parts and no close: the request is never answered."""

    parts: tuple[bytes, ...] = ()
    close: bool = False
    delay: float = 0.0


def http(status: int = 200, reason: str = "OK", headers: tuple[tuple[str, str], ...] = (),
         body: bytes = b"", length: bool = True) -> bytes:
    """A response head and body; a Content-Length matching the body unless `length` is off."""
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


OK = Reply((http(),))
SILENT = Reply()
DROP = Reply(close=True)  # read the request, close without a byte of answer


@dataclass
class Peer:
    """One accepted connection: the requests read on it, and whether the client closed it."""

    index: int
    requests: list[bytes] = field(default_factory=list)
    eof: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[Peer, bytes], Reply]


def target_of(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode("ascii")


class RawServer:
    """`asyncio.start_server` on 127.0.0.1 port 0; `handler` picks each request's `Reply`."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.port = 0
        self.peers: list[Peer] = []
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=WAIT)
        await asyncio.wait_for(self._server.wait_closed(), WAIT)

    def url(self, target: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{target}"

    @property
    def closed_by_client(self) -> int:
        return sum(peer.eof.is_set() for peer in self.peers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        peer = Peer(len(self.peers))
        self.peers.append(peer)
        try:
            while (request := await self._read_request(reader)) is not None:
                peer.requests.append(request)
                self.requests.append(request)
                reply = self.handler(peer, request)
                await asyncio.sleep(reply.delay)
                for index, part in enumerate(reply.parts):
                    if index:
                        await asyncio.sleep(0.01)
                    writer.write(part)
                    await writer.drain()
                if reply.close:
                    return
            peer.eof.set()
        except ConnectionError:
            peer.eof.set()
        finally:
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
        """One request's bytes as received (the client sends no chunked bodies); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise AssertionError(f"the client closed mid-request: {exc.partial!r}") from exc
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + await reader.readexactly(length)


def answer(*parts: bytes, close: bool = False, delay: float = 0.0) -> Handler:
    """The same reply to every request."""
    return lambda peer, request: Reply(parts, close, delay)


@contextlib.asynccontextmanager
async def serving(handler: Handler = lambda peer, request: OK, max_idle: int = 64,
                  host: str = "127.0.0.1") -> AsyncIterator[tuple[RawServer, HttpDelivery]]:
    """A server and a client; the client is closed before the server stops."""
    async with RawServer(handler, host) as server:
        delivery = HttpDelivery(max_idle=max_idle)
        try:
            yield server, delivery
        finally:
            delivery.close()
            await asyncio.sleep(0)


async def send(delivery: HttpDelivery, method: str, url: str, headers: dict[str, str],
               body: bytes, timeout: float) -> Response:
    """`delivery.request` under the test's own deadline, a little past the request's: a client
    that ignores its timeout fails here as an assertion, not as the TimeoutError expected."""
    task = asyncio.ensure_future(delivery.request(method, url, headers, body, timeout))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout + WAIT)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=WAIT)
        raise AssertionError(f"no result {WAIT} s past the {timeout} s timeout")
    return task.result()


async def get(delivery: HttpDelivery, url: str, timeout: float = WAIT) -> Response:
    return await send(delivery, "GET", url, {}, b"", timeout)


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait (bounded) for something the other end of the socket does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.005)


# -- what is sent and what comes back --------------------------------------------------


async def test_status_and_headers_come_back_with_lower_case_names() -> None:
    reply = http(503, "Service Unavailable", (("Retry-After", "7"), ("X-Mixed-Case", "A b")),
                 b"busy")
    async with serving(answer(reply)) as (server, delivery):
        response = await get(delivery, server.url())

    assert response.status_code == 503
    assert response.headers == {"retry-after": "7", "x-mixed-case": "A b",
                                "content-length": "4"}


async def test_field_values_lose_the_blanks_around_them_and_keep_those_inside() -> None:
    """RFC 9112 §5: optional whitespace around a value is not part of it; a repeated field is
    one comma-separated list; bytes past ASCII arrive as latin-1, as h11 gives them."""
    reply = (b"HTTP/1.1 200 OK\r\n"
             b"X-Spaced: \t a  b\tc \t \r\n"
             b"X-Empty:\r\n"
             b"X-Blank:   \r\n"
             b"X-Tight:v\r\n"
             b"Set-Cookie: a=1\r\n"
             b"set-cookie:  b=2 \r\n"
             b"X-Latin: caf\xe9\r\n"
             b"Content-Length: 0\r\n\r\n")
    async with serving(answer(reply)) as (server, delivery):
        response = await get(delivery, server.url())

    assert response.headers == {
        "x-spaced": "a  b\tc", "x-empty": "", "x-blank": "", "x-tight": "v",
        "set-cookie": "a=1, b=2", "x-latin": "caf\u00e9", "content-length": "0",
    }


async def test_blank_runs_in_a_hostile_head_are_read_in_one_pass() -> None:
    """A 60 KB value of blanks with one visible byte at each end, and the same ending in a
    control byte (refused): both answered, the regular expressions do not backtrack on it.
    (A quadratic match here would take minutes, not the test's few milliseconds.)"""
    blanks = b" \t" * 30_000
    good = b"HTTP/1.1 200 OK\r\nX-Pad: a" + blanks + b"b\r\nContent-Length: 0\r\n\r\n"
    async with serving(answer(good)) as (server, delivery):
        response = await get(delivery, server.url())
    assert response.headers["x-pad"] == "a" + (" \t" * 30_000) + "b"

    bad = b"HTTP/1.1 200 OK\r\nX-Pad: a" + blanks + b"\x01\r\nContent-Length: 0\r\n\r\n"
    async with serving(answer(bad)) as (server, delivery):
        with pytest.raises(DeliveryError):
            await get(delivery, server.url())


async def test_a_post_goes_out_byte_for_byte_with_its_target_as_written() -> None:
    """The target keeps its escapes (`%2F` is not a slash to the app) and its query order."""
    async with serving() as (server, delivery):
        target = "/tasks/a%2Fb/c?x=1&y=%20z&x=2"
        response = await send(
            delivery, "POST", server.url(target),
            {"Content-Type": "application/json", "X-CloudTasks-TaskName": "t-1"},
            b'{"a": 1}', WAIT)

    assert response.status_code == 200
    assert server.requests == [
        f"POST {target} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/json\r\n"
        "X-CloudTasks-TaskName: t-1\r\n"
        "Content-Length: 8\r\n"
        "\r\n"
        '{"a": 1}'.encode()
    ]


async def test_the_senders_framing_and_connection_fields_are_not_forwarded() -> None:
    """A task's `Transfer-Encoding: chunked` beside our Content-Length would let its body be
    read as a second request: hop-by-hop fields (RFC 9110 §7.6.1) are the client's own."""
    smuggled = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    headers = {"Transfer-Encoding": "chunked", "Connection": "close", "Keep-Alive": "5",
               "TE": "trailers", "Trailer": "X-T", "Upgrade": "h2c", "Proxy-Connection": "x",
               "host": "elsewhere", "content-length": "1", "X-Kept": "yes"}
    async with serving() as (server, delivery):
        response = await send(delivery, "POST", server.url("/p"), headers, smuggled, WAIT)
        assert (await get(delivery, server.url("/next"))).status_code == 200

    assert response.status_code == 200
    assert server.requests[0] == (
        f"POST /p HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Kept: yes\r\n"
        f"Content-Length: {len(smuggled)}\r\n\r\n".encode() + smuggled)
    assert [target_of(r) for r in server.requests] == ["/p", "/next"]


@pytest.mark.parametrize(("method", "body", "length"), [
    ("POST", b"", b"0"),
    ("PUT", b"", b"0"),
    ("PATCH", b"", b"0"),
    ("POST", b"x" * 70_000, b"70000"),
    ("GET", b"", None),
    ("DELETE", b"", None),
    ("HEAD", b"", None),
    ("OPTIONS", b"", None),
    ("GET", b"body", b"4"),
    ("DELETE", b"body", b"4"),
])
async def test_content_length_only_when_there_is_a_body_or_the_method_expects_one(
    method: str, body: bytes, length: bytes | None
) -> None:
    async with serving() as (server, delivery):
        response = await send(delivery, method, server.url("/p"), {"X-A": "1"}, body, WAIT)

    assert response.status_code == 200
    [request] = server.requests
    head, _, sent_body = request.partition(b"\r\n\r\n")
    expected = [f"{method} /p HTTP/1.1".encode(), f"Host: 127.0.0.1:{server.port}".encode(),
                b"X-A: 1"]
    if length is not None:
        expected.append(b"Content-Length: " + length)
    assert head.split(b"\r\n") == expected
    assert sent_body == body


@pytest.mark.parametrize(("path", "target"), [
    ("", "/"),
    ("?x=1", "/?x=1"),
    ("/p#fragment", "/p"),
    ("/t\u00e2che/\u00fc?name=\u00e9&x=%2F", "/t%C3%A2che/%C3%BC?name=%C3%A9&x=%2F"),
    ("/\u4efb\u52d9", "/%E4%BB%BB%E5%8B%99"),
    ("/a b?c d", "/a%20b?c%20d"),
    ("/p\r\nX-Injected: yes", "/pX-Injected:%20yes"),
])
async def test_the_request_target_is_ascii_with_non_ascii_percent_encoded_as_utf8(
    path: str, target: str
) -> None:
    async with serving() as (server, delivery):
        await get(delivery, server.url(path))

    [request] = server.requests
    assert request.split(b"\r\n")[:2] == [f"GET {target} HTTP/1.1".encode(),
                                          f"Host: 127.0.0.1:{server.port}".encode()]


async def test_host_header_names_the_authority_without_userinfo() -> None:
    """Credentials in the URL are not the worker's business, and must not leak into Host."""
    async with serving() as (server, delivery):
        await get(delivery, f"http://user:secret@127.0.0.1:{server.port}/x")
        await get(delivery, f"http://localhost:{server.port}/y")

    assert [request.split(b"\r\n")[1] for request in server.requests] == [
        f"Host: 127.0.0.1:{server.port}".encode(), f"Host: localhost:{server.port}".encode()]
    assert b"secret" not in b"".join(server.requests)


async def test_ipv6_loopback_host_is_bracketed_in_the_host_header() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    async with serving(host="::1") as (server, delivery):
        response = await get(delivery, server.url("/v6"))

    assert response.status_code == 200
    assert server.requests[0].split(b"\r\n")[1] == f"Host: [::1]:{server.port}".encode()


# -- connections: reuse, concurrency, closing -------------------------------------------


async def test_sequential_requests_reuse_one_connection() -> None:
    async with serving() as (server, delivery):
        for index in range(3):
            response = await get(delivery, server.url(f"/{index}"))
            assert response.status_code == 200

        assert len(server.peers) == 1
        assert [target_of(r) for r in server.peers[0].requests] == ["/0", "/1", "/2"]
        assert server.closed_by_client == 0


async def test_concurrent_requests_get_their_own_connections_and_their_own_answers() -> None:
    """Each response must be the one to its request: echo the target back and compare."""
    def echo(peer: Peer, request: bytes) -> Reply:
        return Reply((http(headers=(("X-Target", target_of(request)),)),), delay=0.05)

    async with serving(echo) as (server, delivery):
        first = await asyncio.gather(*(get(delivery, server.url(f"/a{i}")) for i in range(5)))
        second = await asyncio.gather(*(get(delivery, server.url(f"/b{i}")) for i in range(5)))

        assert [r.headers["x-target"] for r in first] == [f"/a{i}" for i in range(5)]
        assert [r.headers["x-target"] for r in second] == [f"/b{i}" for i in range(5)]
        assert len(server.peers) == 5  # the second burst found five idle connections
        assert [len(peer.requests) for peer in server.peers] == [2] * 5


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async with serving(answer(http(), close=True)) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        await asyncio.sleep(0.05)
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert len(server.peers) == 2
    assert [target_of(r) for r in server.requests] == ["/1", "/2"]


async def test_an_idle_connection_closed_with_a_stray_408_is_replaced() -> None:
    """Some servers say 408 on an idle connection before closing it: not an answer to us."""
    stray = http(408, "Request Timeout", (("Connection", "close"),))
    async with serving(answer(http(), stray, close=True)) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        await asyncio.sleep(0.05)
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert len(server.peers) == 2


async def test_a_reused_connection_closed_as_the_request_arrives_is_not_sent_again() -> None:
    """The race of a keep-alive timeout: the server closes without a byte of answer. Whether
    the app saw the request is unknown, so the client does not resend it behind the engine's
    back: it is a failed attempt (DeliveryError), which the engine counts and retries."""
    def drop_second_on_first(peer: Peer, request: bytes) -> Reply:
        return DROP if peer.index == 0 and len(peer.requests) == 2 else OK

    async with serving(drop_second_on_first) as (server, delivery):
        await get(delivery, server.url("/1"))
        with pytest.raises(DeliveryError, match="connection closed before the response"):
            await send(delivery, "POST", server.url("/2"), {}, b"once", WAIT)
        after = await get(delivery, server.url("/3"))

    assert after.status_code == 200
    assert [target_of(r) for r in server.requests] == ["/1", "/2", "/3"]
    assert len(server.peers) == 2  # the dropped connection was not reused either


async def test_the_engine_counts_the_dropped_request_as_an_attempt_and_retries_it() -> None:
    """Through the dispatcher and the real engine: the retry is visible to the worker (one
    higher retry count, previous response 504) and in the task's dispatch count."""
    def drop_second_on_first(peer: Peer, request: bytes) -> Reply:
        return DROP if peer.index == 0 and len(peer.requests) == 2 else OK

    engine = CloudTasksEngine(SystemClock())
    queue = f"{LOCATION}/queues/dropped"
    engine.create_queue(tasks_v2.CreateQueueRequest(parent=LOCATION, queue=tasks_v2.Queue(
        name=queue, retry_config=tasks_v2.RetryConfig(min_backoff=timedelta(seconds=0.01))),
    ))
    dispatcher = Dispatcher([engine])
    engine.on_ready = dispatcher.wake
    async with RawServer(drop_second_on_first) as server:
        running = asyncio.ensure_future(dispatcher.run())
        try:
            for name in ("first", "second"):
                engine.create_task(tasks_v2.CreateTaskRequest(parent=queue, task=tasks_v2.Task(
                    name=f"{queue}/tasks/{name}",
                    http_request=tasks_v2.HttpRequest(url=server.url(f"/{name}")))))
                await eventually(lambda: not engine.list_tasks(
                    tasks_v2.ListTasksRequest(parent=queue)).tasks)  # delivered: gone
        finally:
            await dispatcher.stop(WAIT)
            running.cancel()

    sent = [(target_of(r), header_of(r, b"x-cloudtasks-taskretrycount"),
             header_of(r, b"x-cloudtasks-taskpreviousresponse")) for r in server.requests]
    assert sent == [("/first", "0", None), ("/second", "0", None), ("/second", "1", "504")]


def header_of(request: bytes, name: bytes) -> str | None:
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


async def test_a_connection_idle_past_max_idle_time_is_closed_not_reused() -> None:
    """Reusing it would race the server's own keep-alive timeout."""
    async with RawServer(lambda peer, request: OK) as server:
        delivery = HttpDelivery(max_idle_time=0.05)
        try:
            await get(delivery, server.url("/1"))
            await get(delivery, server.url("/2"))  # at once: the same connection
            await asyncio.sleep(0.1)
            await get(delivery, server.url("/3"))
            await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        finally:
            delivery.close()

    assert [[target_of(r) for r in peer.requests] for peer in server.peers] == [
        ["/1", "/2"], ["/3"]]


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried() -> None:
    """The server had the request and a new connection: sending it again could run it twice."""
    async with serving(answer(close=True)) as (server, delivery):
        with pytest.raises(DeliveryError):
            await send(delivery, "POST", server.url("/once"), {}, b"x", WAIT)

    assert len(server.requests) == 1
    assert len(server.peers) == 1


@pytest.mark.parametrize("partial", [
    http(body=b"0123456789")[:-7],
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Le",
])
async def test_a_reused_connection_that_began_answering_is_not_retried(partial: bytes) -> None:
    """A byte of answer means the app had the request: no second send."""
    def cut_second(peer: Peer, request: bytes) -> Reply:
        return Reply((partial,), close=True) if len(peer.requests) == 2 else OK

    async with serving(cut_second) as (server, delivery):
        await get(delivery, server.url("/1"))
        with pytest.raises(DeliveryError):
            await get(delivery, server.url("/2"))

    assert [target_of(r) for r in server.requests] == ["/1", "/2"]


async def test_connection_close_in_the_response_ends_that_connection() -> None:
    async with serving(answer(http(headers=(("Connection", "close"),)))) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        assert (await get(delivery, server.url("/2"))).status_code == 200

        assert len(server.peers) == 2
        assert [len(peer.requests) for peer in server.peers] == [1, 1]


@pytest.mark.parametrize("fields", [
    (("Connection", "close"), ("Connection", "x-other")),
    (("Connection", "x-other"), ("Connection", "close")),
    (("Connection", "x-other, Close"),),
])
async def test_close_anywhere_in_the_connection_fields_ends_that_connection(
    fields: tuple[tuple[str, str], ...],
) -> None:
    async with serving(answer(http(headers=fields))) as (server, delivery):
        response = await get(delivery, server.url("/1"))
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert response.headers["connection"] == ", ".join(value for _, value in fields)
    assert len(server.peers) == 2


async def test_an_http_1_0_body_ending_at_close_is_read_to_the_end() -> None:
    reply = b"HTTP/1.0 200 OK\r\nX-Old: yes\r\n\r\nbody until the connection closes"
    async with serving(answer(reply, close=True)) as (server, delivery):
        response = await get(delivery, server.url("/1"))
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert response.status_code == 200
    assert response.headers == {"x-old": "yes"}
    assert len(server.peers) == 2


async def test_max_idle_bounds_the_connections_kept() -> None:
    async with serving(answer(http(), delay=0.05), max_idle=2) as (server, delivery):
        responses = await asyncio.gather(*(get(delivery, server.url()) for _ in range(4)))
        assert [r.status_code for r in responses] == [200] * 4
        assert len(server.peers) == 4
        await eventually(lambda: server.closed_by_client == 2)
        await asyncio.sleep(0.05)
        assert server.closed_by_client == 2

        await asyncio.gather(*(get(delivery, server.url()) for _ in range(2)))
        assert len(server.peers) == 4  # both kept connections were reused

        delivery.close()
        await eventually(lambda: server.closed_by_client == 4)


async def test_max_idle_zero_keeps_nothing() -> None:
    async with serving(max_idle=0) as (server, delivery):
        await get(delivery, server.url("/1"))
        await eventually(lambda: server.closed_by_client == 1)
        await get(delivery, server.url("/2"))
        await eventually(lambda: server.closed_by_client == 2)

    assert len(server.peers) == 2


async def test_close_closes_idle_connections_and_the_client_still_works_after() -> None:
    async with serving() as (server, delivery):
        await asyncio.gather(get(delivery, server.url()), get(delivery, server.url()))
        assert server.closed_by_client == 0

        delivery.close()
        await eventually(lambda: server.closed_by_client == 2)
        assert (await get(delivery, server.url())).status_code == 200
        assert len(server.peers) == 3


# -- bodies and interim responses -------------------------------------------------------


async def test_a_chunked_body_in_pieces_is_drained_and_the_connection_reused() -> None:
    reply = (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
        b"5\r\nhello\r\n",
        b"6\r\n wor",
        b"ld\r\n",
        b"0\r\nX-Trailer: t\r\n\r\n",
    )
    async with serving(answer(*reply)) as (server, delivery):
        response = await get(delivery, server.url("/1"))
        assert (await get(delivery, server.url("/2"))).status_code == 202

    assert response.status_code == 202
    assert response.headers == {"transfer-encoding": "chunked", "x-a": "1"}
    assert len(server.peers) == 1


async def test_chunk_extensions_and_upper_case_sizes_are_read() -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
             b"A;name=value\r\n0123456789\r\n0;last\r\n\r\n")
    async with serving(answer(reply)) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert len(server.peers) == 1


async def test_bytes_past_the_response_end_its_connection() -> None:
    """They would be read as the next request's answer: that connection is not kept."""
    async with serving(answer(http() + b"HTTP/1.1 418 Stray\r\n\r\n")) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert len(server.peers) == 2


async def test_an_http_1_0_response_with_a_length_is_read_and_its_connection_not_kept() -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with serving(answer(reply)) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert len(server.peers) == 2


async def test_a_large_body_in_pieces_is_drained_and_the_connection_reused() -> None:
    full = http(body=b"z" * 300_000)
    parts = (full[:10], full[10:100_000], full[100_000:])
    async with serving(answer(*parts)) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == 200
        assert (await get(delivery, server.url("/2"))).status_code == 200

    assert len(server.peers) == 1


async def test_informational_responses_before_the_final_one_are_skipped() -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n",
        http(201, "Created", (("Location", "/done"),)),
    )
    async with serving(answer(*reply)) as (server, delivery):
        response = await send(delivery, "POST", server.url(), {}, b"x", WAIT)
        assert (await get(delivery, server.url())).status_code == 201

    assert response.status_code == 201
    assert response.headers == {"location": "/done", "content-length": "0"}
    assert len(server.peers) == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_responses_without_a_body_do_not_wait_for_one(status: int) -> None:
    """No Content-Length: a 204 or 304 still ends at its head (else a timeout, or no reuse)."""
    async with serving(answer(http(status, "X", length=False))) as (server, delivery):
        assert (await get(delivery, server.url("/1"))).status_code == status
        assert (await get(delivery, server.url("/2"))).status_code == status

    assert len(server.peers) == 1


async def test_a_head_response_announces_a_length_but_has_no_body() -> None:
    """Waiting for the announced 1234 bytes would time out; the reuse shows none were expected."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    async with serving(answer(reply)) as (server, delivery):
        first = await send(delivery, "HEAD", server.url("/1"), {}, b"", WAIT)
        second = await send(delivery, "HEAD", server.url("/2"), {}, b"", WAIT)

    assert first.status_code == second.status_code == 200
    assert first.headers["content-length"] == "1234"
    assert len(server.peers) == 1


# -- no response: timeouts, refusals, garbage, cancellation -----------------------------


async def test_no_answer_times_out_on_time_and_closes_the_connection() -> None:
    def silent_first(peer: Peer, request: bytes) -> Reply:
        return SILENT if peer.index == 0 else OK

    async with serving(silent_first) as (server, delivery):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await send(delivery, "POST", server.url("/slow"), {}, b"x", 0.3)
        elapsed = loop.time() - started

        assert 0.25 <= elapsed < LATE
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        assert (await get(delivery, server.url("/next"))).status_code == 200
        assert len(server.peers) == 2


async def test_an_answer_slower_than_the_timeout_is_a_timeout() -> None:
    async with serving(answer(http(), delay=0.5)) as (server, delivery):
        with pytest.raises(TimeoutError):
            await get(delivery, server.url(), timeout=0.2)
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)


async def test_a_timeout_on_a_reused_connection_is_not_retried() -> None:
    def silent_second(peer: Peer, request: bytes) -> Reply:
        return SILENT if len(peer.requests) == 2 else OK

    async with serving(silent_second) as (server, delivery):
        await get(delivery, server.url("/1"))
        with pytest.raises(TimeoutError):
            await get(delivery, server.url("/2"), timeout=0.2)
        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)

    assert [target_of(r) for r in server.requests] == ["/1", "/2"]


@contextlib.contextmanager
def full_listener() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a connect hangs (the SYN is dropped)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(16):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            filler.connect_ex(("127.0.0.1", port))
            if not select.select([], [filler], [], 0.2)[1]:
                break
        else:
            pytest.skip("this system completes every loopback connect")
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


async def test_the_timeout_includes_connecting() -> None:
    with full_listener() as port:
        delivery = HttpDelivery()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await get(delivery, f"http://127.0.0.1:{port}/", timeout=0.3)
        elapsed = time.monotonic() - started
        delivery.close()

    assert 0.25 <= elapsed < LATE


async def test_a_refused_connection_is_a_delivery_error() -> None:
    """A bound port that is not listening refuses at once (and no one else can take it)."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        delivery = HttpDelivery()
        with pytest.raises(DeliveryError, match=f"127.0.0.1:{port}"):
            await get(delivery, f"http://127.0.0.1:{port}/")
        delivery.close()


async def test_port_zero_is_not_taken_for_the_default_port() -> None:
    """`:0` is the port written; connecting to 80 instead would reach some other server."""
    delivery = HttpDelivery()
    with pytest.raises((DeliveryError, ValueError), match=r"127\.0\.0\.1:0\b"):
        await get(delivery, "http://127.0.0.1:0/")
    delivery.close()


@pytest.mark.parametrize(("reply", "close"), [
    (b"garbage\r\n\r\n", False),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nNo Colon Here\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", True),
    (b"HTTP/1.1 200 OK\r\n", True),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
     False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70_000, False),
])
async def test_an_invalid_or_cut_response_is_a_delivery_error(reply: bytes, close: bool) -> None:
    async with serving(answer(reply, close=close)) as (server, delivery):
        with pytest.raises(DeliveryError):
            await get(delivery, server.url())
        if not close:
            await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)

    assert len(server.requests) == 1


MAX_HEAD = 64 * 1024
LONG_LINE = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"1;" + b"e" * 70_000 + b"\r\nx\r\n0\r\n\r\n")
_PREFIX = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "
LONGEST_HEAD = _PREFIX + b"a" * (MAX_HEAD - len(_PREFIX)) + b"\r\n\r\n"  # the most allowed


@pytest.mark.parametrize("split", [None, 1, 3, 4096], ids=["whole", "1", "3", "4096"])
async def test_the_size_limits_hold_however_the_bytes_arrive(split: int | None) -> None:
    """A 70 KB chunk line is refused, a head of exactly 64 KiB read, whether each arrives
    whole, in pieces, or with its last byte(s) apart."""
    def pieces(reply: bytes) -> tuple[bytes, ...]:
        if split is None:
            return (reply,)
        if split < 10:  # all but the last `split` bytes, then those
            return (reply[:-split], reply[-split:])
        return tuple(reply[i:i + split] for i in range(0, len(reply), split))

    async with serving(answer(*pieces(LONGEST_HEAD))) as (server, delivery):
        assert (await get(delivery, server.url("/head"))).status_code == 200
    async with serving(answer(*pieces(LONG_LINE))) as (server, delivery):
        with pytest.raises(DeliveryError, match="a line over 65536 bytes"):
            await get(delivery, server.url("/line"))


async def test_cancelling_a_request_closes_its_connection() -> None:
    """The emulator cancels deliveries when it stops: the worker must see the client go."""
    def silent_first(peer: Peer, request: bytes) -> Reply:
        return SILENT if peer.index == 0 else OK

    async with serving(silent_first) as (server, delivery):
        pending = asyncio.create_task(
            delivery.request("POST", server.url("/held"), {}, b"x", 5.0))
        await eventually(lambda: len(server.requests) == 1)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(pending, WAIT)

        await asyncio.wait_for(server.peers[0].eof.wait(), WAIT)
        assert (await get(delivery, server.url("/next"))).status_code == 200
        assert len(server.peers) == 2


# -- requests that cannot be written ----------------------------------------------------


@pytest.mark.parametrize(("url", "headers"), [
    ("ftp://127.0.0.1:{port}/", {}),
    ("127.0.0.1:{port}/x", {}),
    ("http:///no-host", {}),
    ("http://127.0.0.1:70000/", {}),
    ("http://127.0.0.1:port/", {}),
    ("http://127.0.0.1:{port}/", {"X-Name": "caf\u00e9"}),
    ("http://127.0.0.1:{port}/", {"X-N\u00e4me": "v"}),
    ("http://127.0.0.1:{port}/", {"X-Evil": "a\r\nInjected: yes"}),
    ("http://127.0.0.1:{port}/", {"X-Evil": "a\nb"}),
    ("http://127.0.0.1:{port}/", {"Bad Name": "v"}),
    ("http://127.0.0.1:{port}/", {"": "v"}),
])
async def test_a_request_that_cannot_be_written_is_a_value_error(
    url: str, headers: dict[str, str]
) -> None:
    async with serving() as (server, delivery):
        await get(delivery, server.url("/warm"))
        with pytest.raises(ValueError, match=r"cannot send|Port"):
            await send(delivery, "POST", url.format(port=server.port), headers, b"x", WAIT)
        assert (await get(delivery, server.url("/after"))).status_code == 200

    assert [target_of(r) for r in server.requests] == ["/warm", "/after"]
