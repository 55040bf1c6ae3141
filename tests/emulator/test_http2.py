"""The emulator's HTTP/2 layer, frame by frame, over a real loopback socket.

Google's clients only ever show the happy path of HTTP/2; these tests send the frames
themselves (built here from RFC 9113, HPACK by the `hpack` package) to check what a client
cannot easily provoke: flow control holding an answer back, padding, CONTINUATION, resets,
the stream limit, protocol errors answered with GOAWAY (the server serving on), and GOAWAY on
shutdown with the answers still owed sent first. Every read has a deadline.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import hpack
import pytest
from emulator_support import LOCATION, EmulatorProcess, StartEmulator
from google.cloud import tasks_v2

from fastapi_cloud_tasks.emulator.connection_limits import Limits

# RFC 9113's numbers (frame types, flags, error codes, settings)
from fastapi_cloud_tasks.emulator.http2 import (
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADER_TABLE_SIZE,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_HEADER_LIST_SIZE,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    Connection,
    Response,
    encode_headers,
)

GET_QUEUE = "/google.cloud.tasks.v2.CloudTasks/GetQueue"
CREATE_QUEUE = "/google.cloud.tasks.v2.CloudTasks/CreateQueue"
QUIET_S = 0.3  # how long "nothing more comes" is watched for
WAIT_S = 10.0  # how long a frame that must come may take on a loaded machine


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream_id) + payload


def header_frames(stream_id: int, block: bytes, flags: int = 0) -> bytes:
    """`block` as HEADERS (with `flags`) and the CONTINUATION frames a 16 KiB frame limit asks."""
    pieces = [block[i:i + 16_384] for i in range(0, len(block), 16_384)]
    last = len(pieces) - 1
    return b"".join(
        frame(CONTINUATION if index else HEADERS,
              (flags if not index else 0) | (END_HEADERS if index == last else 0),
              stream_id, piece)
        for index, piece in enumerate(pieces))


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def grpc_message(message: bytes) -> bytes:
    return b"\x00" + u32(len(message)) + message


def get_queue(name: str) -> bytes:
    return grpc_message(tasks_v2.GetQueueRequest.serialize(tasks_v2.GetQueueRequest(name=name)))


@dataclass(frozen=True)
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes


@dataclass
class Answer:
    headers: dict[str, str]
    data: bytes
    trailers: dict[str, str]

    @property
    def status(self) -> int:
        return int((self.trailers or self.headers)["grpc-status"])

    @property
    def message(self) -> str:
        return unquote((self.trailers or self.headers).get("grpc-message", ""))


class RawClient:
    """One HTTP/2 connection to the emulator, spoken by hand."""

    def __init__(self, address: str, settings: dict[int, int] | None = None) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.server_settings: dict[int, int] = {}
        try:
            self._handshake(settings or {})
        except BaseException:  # refused (e.g. over a connection cap): no socket left open
            self.sock.close()
            raise

    def _handshake(self, settings: dict[int, int]) -> None:
        payload = b"".join(struct.pack(">HI", k, v) for k, v in settings.items())
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, payload))
        first = self.read()
        assert first is not None
        assert first.kind == SETTINGS
        assert not first.flags & ACK
        for offset in range(0, len(first.payload), 6):
            key, value = struct.unpack_from(">HI", first.payload, offset)
            self.server_settings[key] = value
        self.connection_window_update = self.expect(WINDOW_UPDATE)
        self.expect(SETTINGS, flags=ACK)

    def close(self) -> None:
        self.sock.close()

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def headers_block(self, path: str, content_type: str = "application/grpc",
                      method: str = "POST", **extra: str) -> bytes:
        return self.encoder.encode([(":method", method), (":scheme", "http"), (":path", path),
                                    (":authority", "emulator"), ("content-type", content_type),
                                    ("te", "trailers"), *extra.items()])

    def call(self, stream_id: int, path: str, body: bytes, **extra: str) -> None:
        self.send(frame(HEADERS, END_HEADERS, stream_id, self.headers_block(path, **extra)),
                  frame(DATA, END_STREAM, stream_id, body))

    def read(self, timeout: float = WAIT_S) -> Frame | None:
        """The next frame; None when the server closed the connection."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    head, self.buffer = self.buffer[:9 + length], self.buffer[9 + length:]
                    return Frame(head[3], head[4], int.from_bytes(head[5:9], "big"), head[9:])
            chunk = self.sock.recv(65536)
            if not chunk:
                assert not self.buffer, "the connection closed in the middle of a frame"
                return None
            self.buffer += chunk

    def expect(self, kind: int, flags: int | None = None) -> Frame:
        received = self.read()
        assert received is not None, f"connection closed; expected frame type {kind}"
        assert received.kind == kind, received
        if flags is not None:
            assert received.flags & flags == flags, received
        return received

    def quiet(self) -> bool:
        """True if nothing arrives for QUIET_S seconds."""
        try:
            received = self.read(QUIET_S)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected {received}")

    def decode(self, block: bytes) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.decoder.decode(block)}

    def answer(self, stream_id: int, limit: int = 50) -> Answer:
        """Headers, data and trailers of `stream_id`, until its END_STREAM."""
        found = Answer({}, b"", {})
        for _ in range(limit):
            received = self.read()
            assert received is not None, "the connection closed before the answer ended"
            if received.stream_id != stream_id:
                continue
            if received.kind == HEADERS:
                block = self.decode(received.payload)
                if found.headers:
                    found.trailers = block
                else:
                    found.headers = block
            elif received.kind == DATA:
                found.data += received.payload
            else:
                raise AssertionError(f"unexpected {received}")
            if received.flags & END_STREAM:
                return found
        raise AssertionError(f"no END_STREAM on stream {stream_id} within {limit} frames")

    def goaway(self) -> tuple[int, int]:
        """The GOAWAY that must come next, after any answers owed: (last stream id, error
        code); then the close."""
        for _ in range(10):
            received = self.read()
            assert received is not None, "connection closed; expected GOAWAY"
            if received.kind == GOAWAY:
                break
            assert received.stream_id, received
            assert received.kind in (HEADERS, DATA), received
        else:
            raise AssertionError("no GOAWAY within 10 frames")
        last, code = struct.unpack_from(">II", received.payload)
        return last, code

    def closed(self) -> bool:
        return self.read() is None


Connect = Callable[..., RawClient]  # the `connect` fixture: (**client settings)


@pytest.fixture
def connect(emulator: EmulatorProcess) -> Iterator[Connect]:
    """Open raw connections to the shared emulator (settings by number); all closed after."""
    clients: list[RawClient] = []

    def open_one(settings: dict[int, int] | None = None) -> RawClient:
        clients.append(RawClient(emulator.address, settings))
        return clients[-1]

    yield open_one
    for client in clients:
        client.close()


@pytest.fixture
def raw(connect: Connect) -> RawClient:
    return connect()


@pytest.fixture
def queue(emulator: EmulatorProcess, ident: str) -> str:
    name = f"{LOCATION}/queues/{ident}"
    emulator.tasks_client().create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    return name


def held_back_call(raw: RawClient, stream_id: int, queue: str) -> bytes:
    """GetQueue on a connection whose stream window is too small for the answer: its headers,
    then as much of the body as fits (returned), then nothing."""
    raw.call(stream_id, GET_QUEUE, get_queue(queue))
    raw.expect(HEADERS)
    data = b""
    while True:
        try:
            received = raw.read(QUIET_S)
        except TimeoutError:
            return data
        assert received is not None
        assert received.kind == DATA
        assert not received.flags & END_STREAM
        data += received.payload


def assert_serving(connect: Connect, queue: str) -> None:
    """A new connection is served: one bad client never stops the server."""
    client = connect()
    client.call(1, GET_QUEUE, get_queue(queue))
    assert client.answer(1).status == 0


def test_the_server_settings_grant_wide_windows_and_pings_are_answered(raw: RawClient) -> None:
    assert raw.server_settings[INITIAL_WINDOW_SIZE] >= 1 << 20
    assert raw.server_settings[MAX_CONCURRENT_STREAMS] >= 100
    increment = struct.unpack(">I", raw.connection_window_update.payload)[0]
    assert raw.connection_window_update.stream_id == 0
    assert increment >= 1 << 20

    raw.send(frame(PING, 0, 0, b"12345678"))

    pong = raw.expect(PING, flags=ACK)
    assert pong.payload == b"12345678"


def test_a_call_gets_its_message_and_trailers(raw: RawClient, queue: str) -> None:
    raw.call(1, GET_QUEUE, get_queue(queue))

    answer = raw.answer(1)

    assert answer.headers == {":status": "200", "content-type": "application/grpc"}
    assert answer.trailers == {"grpc-status": "0"}
    assert answer.data[0] == 0
    assert int.from_bytes(answer.data[1:5], "big") == len(answer.data) - 5
    assert tasks_v2.Queue.deserialize(answer.data[5:]).name == queue


def test_an_engine_error_is_a_trailers_only_answer_with_a_percent_encoded_message(
    raw: RawClient,
) -> None:
    queue = tasks_v2.Queue(name=f"{LOCATION}/queues/caf\u00e9")
    raw.call(1, CREATE_QUEUE, grpc_message(tasks_v2.CreateQueueRequest.serialize(
        tasks_v2.CreateQueueRequest(parent=LOCATION, queue=queue))))

    answer = raw.answer(1)

    assert not answer.data
    assert not answer.trailers
    assert answer.headers[":status"] == "200"
    assert answer.status == 3  # INVALID_ARGUMENT
    assert "%C3%A9" in answer.headers["grpc-message"]
    assert "caf\u00e9" in answer.message


@pytest.mark.parametrize(("headers", "body", "status", "grpc_status", "says"), [
    ({"method": "GET"}, get_queue("x"), "405", None, None),
    ({"content_type": "application/json"}, get_queue("x"), "415", None, None),
    ({}, b"\x00\x00\x00\x00\x09abc", "200", 13, "not one gRPC message"),
    ({}, b"\x00\x00", "200", 13, "not one gRPC message"),
    ({}, b"\x01" + u32(3) + b"abc", "200", 13, "grpc-encoding names no compression"),
    ({}, grpc_message(b"\xff\xff\xff"), "200", 3, "GetQueueRequest"),
], ids=["not-post", "not-grpc", "length-mismatch", "short-prefix", "compressed", "not-proto"])
def test_requests_that_are_not_one_grpc_call_are_refused_and_the_connection_serves_on(
    raw: RawClient, queue: str, headers: dict[str, str], body: bytes, status: str,
    grpc_status: int | None, says: str | None,
) -> None:
    raw.send(frame(HEADERS, END_HEADERS, 1, raw.headers_block(GET_QUEUE, **headers)),
             frame(DATA, END_STREAM, 1, body))

    answer = raw.answer(1)

    assert answer.headers[":status"] == status
    if grpc_status is not None:
        assert answer.status == grpc_status
        assert says is not None
        assert says in answer.message
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


def test_an_unknown_method_is_unimplemented(raw: RawClient) -> None:
    raw.call(1, "/google.cloud.tasks.v2.CloudTasks/Teleport", grpc_message(b""))

    answer = raw.answer(1)

    assert answer.status == 12
    assert "/google.cloud.tasks.v2.CloudTasks/Teleport" in answer.message


def test_an_answer_waits_for_the_stream_window_and_goes_on_when_it_opens(
    connect: Connect, queue: str,
) -> None:
    raw = connect({INITIAL_WINDOW_SIZE: 8})
    first = held_back_call(raw, 1, queue)
    assert len(first) == 8  # the window is spent: nothing more until it opens

    raw.send(frame(WINDOW_UPDATE, 0, 1, u32(10_000)))
    rest = raw.answer(1)

    message = first + rest.data
    assert tasks_v2.Queue.deserialize(message[5:]).name == queue
    assert rest.headers == {"grpc-status": "0"}  # the trailers, after the whole body


def test_a_larger_initial_window_releases_answers_already_held_back(
    connect: Connect, queue: str,
) -> None:
    raw = connect({INITIAL_WINDOW_SIZE: 0})
    assert held_back_call(raw, 1, queue) == b""

    raw.send(frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 65_535)))

    raw.expect(SETTINGS, flags=ACK)
    answer = raw.answer(1)
    assert tasks_v2.Queue.deserialize(answer.data[5:]).name == queue


def test_padding_priority_and_continuation_frames_are_understood(
    raw: RawClient, queue: str,
) -> None:
    block = raw.headers_block(GET_QUEUE)
    body = get_queue(queue)
    head = bytes([3]) + u32(0) + bytes([15]) + block[:10] + b"\x00" * 3  # padded, priority
    raw.send(frame(HEADERS, PADDED | PRIORITY_FLAG, 1, head),
             frame(CONTINUATION, 0, 1, block[10:20]),
             frame(CONTINUATION, END_HEADERS, 1, block[20:]),
             frame(PRIORITY, 0, 1, u32(0) + b"\x07"),
             frame(DATA, PADDED, 1, bytes([4]) + body[:6] + b"\x00" * 4),
             frame(DATA, END_STREAM, 1, body[6:]))

    answer = raw.answer(1)

    assert answer.trailers == {"grpc-status": "0"}
    assert tasks_v2.Queue.deserialize(answer.data[5:]).name == queue


def test_a_request_over_the_header_list_limit_is_refused_before_its_body_and_reset(
    raw: RawClient, queue: str,
) -> None:
    limit = raw.server_settings[MAX_HEADER_LIST_SIZE]
    raw.send(header_frames(1, raw.headers_block(GET_QUEUE, **{"x-padding": "a" * limit})))

    answer = raw.answer(1)  # before any DATA was sent
    reset = raw.expect(RST_STREAM)

    assert answer.status == 8  # RESOURCE_EXHAUSTED
    assert f"larger than {limit} bytes" in answer.message
    assert reset.stream_id == 1
    assert reset.payload == u32(NO_ERROR)
    raw.send(frame(DATA, END_STREAM, 1, get_queue(queue)))  # late: ignored
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


def test_a_reset_stream_gets_nothing_more_and_the_others_go_on(
    connect: Connect, queue: str,
) -> None:
    raw = connect({INITIAL_WINDOW_SIZE: 8})
    held_back_call(raw, 1, queue)

    raw.send(frame(RST_STREAM, 0, 1, u32(0x8)),  # CANCEL
             frame(WINDOW_UPDATE, 0, 1, u32(10_000)))
    assert raw.quiet()

    first = held_back_call(raw, 3, queue)
    raw.send(frame(WINDOW_UPDATE, 0, 3, u32(10_000)))
    rest = raw.answer(3)
    assert rest.headers == {"grpc-status": "0"}  # the trailers, after the rest
    assert tasks_v2.Queue.deserialize((first + rest.data)[5:]).name == queue


def test_streams_beyond_the_advertised_limit_are_refused(raw: RawClient, queue: str) -> None:
    limit = raw.server_settings[MAX_CONCURRENT_STREAMS]
    block = raw.headers_block(GET_QUEUE)
    opened = [frame(HEADERS, END_HEADERS, 1 + 2 * i, block) for i in range(limit)]
    over = 1 + 2 * limit

    raw.send(*opened, frame(HEADERS, END_HEADERS, over, block))

    reset = raw.expect(RST_STREAM)
    assert reset.stream_id == over
    assert reset.payload == u32(REFUSED_STREAM)
    raw.send(frame(DATA, END_STREAM, 1, get_queue(queue)))  # one ends: room again
    assert raw.answer(1).status == 0
    raw.call(over + 2, GET_QUEUE, get_queue(queue))
    assert raw.answer(over + 2).status == 0


def test_a_goaway_names_the_last_stream_served_not_one_refused(raw: RawClient) -> None:
    limit = raw.server_settings[MAX_CONCURRENT_STREAMS]
    block = raw.headers_block(GET_QUEUE)
    raw.send(*(frame(HEADERS, END_HEADERS, 1 + 2 * i, block) for i in range(limit + 1)))
    assert raw.expect(RST_STREAM).stream_id == 1 + 2 * limit  # refused: never served

    raw.send(frame(PING, 0, 0, b"1234"))

    assert raw.goaway() == (1 + 2 * (limit - 1), FRAME_SIZE_ERROR)


def test_a_stream_window_update_of_zero_resets_that_stream_only(
    connect: Connect, queue: str,
) -> None:
    raw = connect({INITIAL_WINDOW_SIZE: 8})
    held_back_call(raw, 1, queue)

    raw.send(frame(WINDOW_UPDATE, 0, 1, u32(0)))

    reset = raw.expect(RST_STREAM)
    assert (reset.stream_id, reset.payload) == (1, u32(PROTOCOL_ERROR))
    raw.send(frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 65_535)))
    raw.expect(SETTINGS, flags=ACK)
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


def test_request_headers_then_more_headers_without_end_stream_reset_the_stream(
    raw: RawClient, queue: str,
) -> None:
    raw.send(frame(HEADERS, END_HEADERS, 1, raw.headers_block(GET_QUEUE)),
             frame(HEADERS, END_HEADERS, 1, raw.encoder.encode([("x-late", "1")])))

    reset = raw.expect(RST_STREAM)

    assert (reset.stream_id, reset.payload) == (1, u32(PROTOCOL_ERROR))
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


def test_blocks_that_resize_the_table_are_decoded_again_not_remembered(
    raw: RawClient, queue: str,
) -> None:
    """A block that only changes the HPACK table's size leaves its entries alone, yet must be
    applied again when it comes again: else the server's table drifts from the client's."""
    fields = [(":method", "POST", True), (":scheme", "http", True), (":path", GET_QUEUE, True),
              (":authority", "emulator", True), ("content-type", "application/grpc", True)]
    blocks = []
    for size in (2048, 4096, 0, 4096):  # never-indexed fields: only the sizes change
        raw.encoder.header_table_size = size
        blocks.append(raw.encoder.encode(fields))
    assert blocks[1] == blocks[3]
    blocks.append(raw.encoder.encode([*fields, ("x-a", "1")]))  # x-a enters the table...
    blocks.append(raw.encoder.encode([*fields, ("x-a", "1")]))  # ...and is referred to

    for index, block in enumerate(blocks):
        stream_id = 1 + 2 * index
        raw.send(frame(HEADERS, END_HEADERS, stream_id, block),
                 frame(DATA, END_STREAM, stream_id, get_queue(queue)))
        assert raw.answer(stream_id).status == 0


def test_a_smaller_header_table_setting_is_announced_in_the_next_block(
    raw: RawClient, queue: str,
) -> None:
    """Our blocks use no HPACK table, but a decoder told a smaller size may insist on hearing
    the update at the start of the next block (RFC 7541 §4.2): once."""
    raw.send(frame(SETTINGS, 0, 0, struct.pack(">HI", HEADER_TABLE_SIZE, 0)))
    raw.expect(SETTINGS, flags=ACK)

    raw.call(1, GET_QUEUE, get_queue(queue))
    head = raw.expect(HEADERS)
    assert raw.decode(head.payload) == {":status": "200", "content-type": "application/grpc"}
    assert raw.answer(1).headers == {"grpc-status": "0"}  # the rest: data, then trailers
    raw.call(3, GET_QUEUE, get_queue(queue))
    again = raw.expect(HEADERS)

    assert head.payload[0] == 0x20  # a dynamic table size update to 0, then the fields
    assert again.payload == head.payload[1:]


@pytest.mark.parametrize(("frames", "code"), [
    ([frame(HEADERS, END_HEADERS, 0, b"\x82")], PROTOCOL_ERROR),
    ([frame(HEADERS, END_HEADERS, 2, b"\x82")], PROTOCOL_ERROR),
    ([frame(DATA, 0, 0, b"x")], PROTOCOL_ERROR),
    ([frame(CONTINUATION, END_HEADERS, 1, b"\x82")], PROTOCOL_ERROR),
    ([frame(HEADERS, 0, 1, b"\x82"), frame(PING, 0, 0, b"12345678")], PROTOCOL_ERROR),
    ([frame(HEADERS, END_HEADERS, 1, b"\xff\x7f")], COMPRESSION_ERROR),  # no such index
    ([frame(DATA, 0, 1, b"x" * 16_385)], FRAME_SIZE_ERROR),
    ([frame(PING, 0, 0, b"1234")], FRAME_SIZE_ERROR),
    ([frame(WINDOW_UPDATE, 0, 0, u32(0))], PROTOCOL_ERROR),
    ([frame(WINDOW_UPDATE, 0, 0, u32(2**31 - 1))], FLOW_CONTROL_ERROR),
    ([frame(SETTINGS, 0, 0, b"\x00\x04\x00")], FRAME_SIZE_ERROR),
    ([frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 2**31))],
     FLOW_CONTROL_ERROR),
    ([frame(PUSH_PROMISE, END_HEADERS, 1, u32(2) + b"\x82")], PROTOCOL_ERROR),
    ([frame(HEADERS, END_HEADERS | PADDED, 1, b"\x09\x82")], PROTOCOL_ERROR),
    ([frame(DATA, 0, 5, b"x")], PROTOCOL_ERROR),
    ([frame(RST_STREAM, 0, 7, u32(0x8))], PROTOCOL_ERROR),
    ([frame(WINDOW_UPDATE, 0, 1, u32(1))], PROTOCOL_ERROR),
    ([frame(PRIORITY, 0, 0, u32(1) + b"\x07")], PROTOCOL_ERROR),
    ([frame(GOAWAY, 0, 1, u32(0) + u32(0))], PROTOCOL_ERROR),
    ([frame(SETTINGS, 0, 0, struct.pack(">HI", ENABLE_PUSH, 2))], PROTOCOL_ERROR),
    ([frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, b"\x00\x00\x00")], FRAME_SIZE_ERROR),
    ([frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00")], PROTOCOL_ERROR),  # idle first
    ([frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x84"),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x84")], STREAM_CLOSED),
], ids=["headers-on-0", "even-stream", "data-on-0", "lone-continuation",
        "interrupted-header-block", "bad-hpack", "oversized-frame", "short-ping",
        "zero-window-update", "window-overflow", "partial-setting", "window-setting-too-big",
        "push-promise", "padding-overrun", "data-on-idle-stream", "reset-of-idle-stream",
        "window-update-on-idle-stream", "priority-on-0", "goaway-on-a-stream", "enable-push-2",
        "priority-headers-too-short", "reset-too-long-on-idle", "headers-on-closed-stream"])
def test_a_protocol_error_is_a_goaway_and_a_close_and_the_server_serves_on(
    connect: Connect, raw: RawClient, queue: str, frames: list[bytes], code: int,
) -> None:
    raw.send(*frames)

    assert raw.goaway()[1] == code
    assert raw.closed()
    assert_serving(connect, queue)


def open_half_closed(connect: Connect, queue: str) -> RawClient:
    """A connection whose stream 1 is half-closed (remote): the request whole, the answer
    held back by a stream window of 0."""
    raw = connect({INITIAL_WINDOW_SIZE: 0})
    assert held_back_call(raw, 1, queue) == b""
    return raw


def expect_reset(raw: RawClient, stream_id: int, code: int) -> None:
    """The next frame of `stream_id` is RST_STREAM with `code`; the connection serves on."""
    for _ in range(10):
        received = raw.read()
        assert received is not None, "the connection closed; expected RST_STREAM"
        if received.stream_id == stream_id:
            assert (received.kind, received.payload) == (RST_STREAM, u32(code)), received
            break
    else:
        raise AssertionError(f"no RST_STREAM on stream {stream_id}")
    raw.send(frame(PING, 0, 0, b"still-on"))
    assert raw.expect(PING, flags=ACK).payload == b"still-on"


@pytest.mark.parametrize(("extra", "code"), [
    (frame(DATA, END_STREAM, 1, b"late"), STREAM_CLOSED),
    (frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x84"), STREAM_CLOSED),
    (frame(PRIORITY, 0, 1, u32(1) + b"\x07"), PROTOCOL_ERROR),  # depends on itself
    (frame(PRIORITY, 0, 1, u32(0)), FRAME_SIZE_ERROR),  # 4 bytes, not 5
], ids=["data", "headers", "self-dependency", "short-priority"])
def test_frames_a_half_closed_stream_may_not_get_are_stream_errors(
    connect: Connect, queue: str, extra: bytes, code: int,
) -> None:
    """RFC 9113 §5.1, half-closed (remote): only WINDOW_UPDATE, PRIORITY and RST_STREAM may
    come, and a PRIORITY must be well formed (§6.3, §5.3.1): anything else resets the stream."""
    raw = open_half_closed(connect, queue)

    raw.send(extra)

    expect_reset(raw, 1, code)
    raw.send(frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 65_535)))
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


def test_data_on_a_stream_closed_by_its_answer_or_by_the_client_is_stream_closed(
    raw: RawClient, queue: str,
) -> None:
    raw.call(1, GET_QUEUE, get_queue(queue))
    assert raw.answer(1).status == 0
    raw.send(frame(DATA, END_STREAM, 1, b"late"))
    expect_reset(raw, 1, STREAM_CLOSED)

    raw.send(frame(HEADERS, END_HEADERS, 3, raw.headers_block(GET_QUEUE)),
             frame(RST_STREAM, 0, 3, u32(CANCEL)), frame(DATA, END_STREAM, 3, b"late"))
    expect_reset(raw, 3, STREAM_CLOSED)


def test_data_past_our_own_reset_is_ignored(raw: RawClient, queue: str) -> None:
    """A stream we reset may still have DATA in flight: that is no error (RFC 9113 §5.1)."""
    raw.send(header_frames(1, raw.headers_block(GET_QUEUE, **{
        "x-padding": "a" * raw.server_settings[MAX_HEADER_LIST_SIZE]})))
    assert raw.answer(1).status == 8
    raw.expect(RST_STREAM)

    raw.send(frame(DATA, 0, 1, b"in flight"), frame(DATA, END_STREAM, 1, b"too"))

    assert raw.quiet()


def test_a_headers_frame_depending_on_itself_is_reset_and_its_block_still_decoded(
    raw: RawClient, queue: str,
) -> None:
    block = raw.headers_block(GET_QUEUE, **{"x-indexed": "kept in the table"})
    raw.send(frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, u32(1) + b"\x10" + block))

    expect_reset(raw, 1, PROTOCOL_ERROR)
    raw.call(3, GET_QUEUE, get_queue(queue), **{"x-indexed": "kept in the table"})
    assert raw.answer(3).status == 0  # the table saw the first block's entries


MALFORMED = {  # RFC 9113 §8.2-8.3, each as h2spec sends it
    "uppercase-name": [("x-Test", "1")],
    "unknown-pseudo": [(":foo", "bar")],
    "response-pseudo": [(":status", "200")],
    "connection-field": [("connection", "keep-alive")],
    "te-not-trailers": [("te", "trailers, deflate")],
    "bad-content-length": [("content-length", "1e3")],
    "nul-in-value": [("x-test", "a\x00b")],
}
MISSING = [":method", ":scheme", ":path"]


def request_fields(*, drop: str = "", twice: str = "", path: str = GET_QUEUE,
                   extra: list[tuple[str, str]] | None = None,
                   pseudo_last: bool = False) -> list[tuple[str, str]]:
    pseudo = [(":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", "emulator")]
    pseudo = [field for field in pseudo if field[0] != drop]
    pseudo += [field for field in pseudo if field[0] == twice]
    regular = [("content-type", "application/grpc"), *(extra or [])]
    return regular + pseudo if pseudo_last else pseudo + regular


@pytest.mark.parametrize("fields", [
    *(request_fields(extra=extra) for extra in MALFORMED.values()),
    *(request_fields(drop=name) for name in MISSING),
    *(request_fields(twice=name) for name in MISSING),
    request_fields(path=""),
    request_fields(pseudo_last=True),
], ids=[*MALFORMED, *(f"no{name}" for name in MISSING), *(f"twice{name}" for name in MISSING),
        "empty-path", "pseudo-after-regular"])
def test_a_malformed_request_is_reset_and_never_answered(
    raw: RawClient, queue: str, fields: list[tuple[str, str]],
) -> None:
    raw.send(frame(HEADERS, END_HEADERS, 1, raw.encoder.encode(fields)),
             frame(DATA, END_STREAM, 1, get_queue(queue)))

    expect_reset(raw, 1, PROTOCOL_ERROR)
    assert raw.quiet()  # no answer, not even to the DATA after the reset
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


@pytest.mark.parametrize("pieces", [[b"abc"], [b"ab", b"c"], [b"ab", b"c", b"de"], []],
                         ids=["short", "short-in-two", "long", "none-but-declared"])
def test_a_body_other_than_its_content_length_is_malformed(
    raw: RawClient, queue: str, pieces: list[bytes],
) -> None:
    block = raw.encoder.encode(request_fields(extra=[("content-length", "4")]))
    if pieces:
        data = [frame(DATA, END_STREAM if i == len(pieces) - 1 else 0, 1, piece)
                for i, piece in enumerate(pieces)]
        raw.send(frame(HEADERS, END_HEADERS, 1, block), *data)
    else:
        raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))

    expect_reset(raw, 1, PROTOCOL_ERROR)
    raw.call(3, GET_QUEUE, get_queue(queue))
    assert raw.answer(3).status == 0


def test_not_http2_at_all_is_closed_and_the_server_serves_on(
    emulator: EmulatorProcess, connect: Connect, queue: str,
) -> None:
    host, port = emulator.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    kinds, offset = [], 0
    while offset + 9 <= len(received):
        kinds.append(received[offset + 3])
        offset += 9 + int.from_bytes(received[offset:offset + 3], "big")
    assert kinds == [SETTINGS, WINDOW_UPDATE, GOAWAY]
    assert_serving(connect, queue)


def test_shutdown_sends_goaway_refuses_new_streams_and_finishes_owed_answers(
    start_emulator: StartEmulator, ident: str,
) -> None:
    emulator = start_emulator("-q")
    name = f"{LOCATION}/queues/{ident}"
    emulator.tasks_client().create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    emulator.close_clients()
    raw = RawClient(emulator.address, {INITIAL_WINDOW_SIZE: 8})
    try:
        held_back_call(raw, 1, name)

        emulator.popen.send_signal(signal.SIGTERM)

        assert raw.goaway() == (1, NO_ERROR)
        raw.call(3, GET_QUEUE, get_queue(name))
        reset = raw.expect(RST_STREAM)
        assert reset.stream_id == 3
        assert reset.payload == u32(REFUSED_STREAM)
        raw.send(frame(WINDOW_UPDATE, 0, 1, u32(10_000)))
        assert raw.answer(1).headers == {"grpc-status": "0"}
        assert raw.closed()
        assert emulator.popen.wait(timeout=10) == 0
    finally:
        raw.close()


def test_shutdown_delivers_a_large_answer_whole_while_the_client_keeps_talking(
    start_emulator: StartEmulator, ident: str,
) -> None:
    """SIGTERM while ~1.2 MB of an answer still waits to be written; the client then reads it,
    returning window and pinging as it goes. Those frames reach a server that has stopped
    serving: were they left unread, the kernel would reset the connection and drop the end
    of the answer, its trailers and the GOAWAY."""
    emulator = start_emulator("-q")
    name = f"{LOCATION}/queues/{ident}"
    client = emulator.tasks_client()
    client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    client.pause_queue(name=name)
    for batch in range(6):
        client.batch_create_tasks(parent=name, requests=[tasks_v2.CreateTaskRequest(
            parent=name, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(
                url="http://127.0.0.1:9/x", body=bytes([batch, i]) * 1024)))
            for i in range(100)])
    emulator.close_clients()
    raw = RawClient(emulator.address, {INITIAL_WINDOW_SIZE: 2**31 - 1})
    try:
        raw.send(frame(WINDOW_UPDATE, 0, 0, u32(2**31 - 1 - 65_535)))
        request = tasks_v2.ListTasksRequest(parent=name, page_size=1000,
                                            response_view=tasks_v2.Task.View.FULL)
        raw.call(1, "/google.cloud.tasks.v2.CloudTasks/ListTasks",
                 grpc_message(tasks_v2.ListTasksRequest.serialize(request)))
        time.sleep(0.3)  # not reading: the answer fills the socket buffers, the rest waits
        emulator.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)

        data, trailers, goaway, unacked = b"", {}, None, 0
        while (received := raw.read()) is not None:
            if received.kind == DATA:
                data += received.payload
                unacked += len(received.payload)
                if unacked >= 65_536:
                    raw.send(frame(WINDOW_UPDATE, 0, 0, u32(unacked)), frame(PING, 0, 0, b"8" * 8))
                    unacked = 0
            elif received.kind == HEADERS:
                block = raw.decode(received.payload)
                trailers = block if received.flags & END_STREAM else trailers
            elif received.kind == GOAWAY:
                goaway = struct.unpack_from(">II", received.payload)

        listed = tasks_v2.ListTasksResponse.deserialize(data[5:])
        assert len(listed.tasks) == 600
        assert int.from_bytes(data[1:5], "big") == len(data) - 5
        assert trailers == {"grpc-status": "0"}
        assert goaway == (1, NO_ERROR)
        assert emulator.popen.wait(timeout=10) == 0
    finally:
        raw.close()


# -- in process: what a socket cannot show ------------------------------------------------


class Recorder:
    """An `http2.Application` that notes what it was asked: `("respond", body)` or
    `("refuse", reason)`, answering 200 or 431 with no body; `limit` is its time limit."""

    def __init__(self, limit: float | None = None) -> None:
        self.asked: list[tuple[str, object]] = []
        self.limit = limit

    def respond(self, headers: dict[bytes, bytes], body: bytes, opened: float) -> Response:
        self.asked.append(("respond", body))
        return Response(encode_headers([(b":status", b"200")]))

    def refuse(self, headers: dict[bytes, bytes], reason: str) -> Response:
        self.asked.append(("refuse", reason))
        return Response(encode_headers([(b":status", b"431")]))

    def time_limit(self, headers: dict[bytes, bytes]) -> float | None:
        return self.limit


class Discard(asyncio.Transport):
    """A transport that drops what the connection writes: these tests look elsewhere."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False


REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/x")]


def open_in_process(app: Recorder, max_body: int = 1024, **limits: Any) -> Connection:
    connection = Connection(app, max_body, Limits(**limits))
    connection.connection_made(Discard())
    connection.data_received(PREFACE + frame(SETTINGS, 0, 0))
    return connection


def test_large_header_blocks_are_not_remembered() -> None:
    """Decoded blocks are remembered so the few a client repeats cost nothing; large distinct
    ones (here each refused as over the header list limit) must not pile up in memory."""

    async def held_after(blocks: int) -> int:
        connection = open_in_process(Recorder())
        encoder = hpack.Encoder()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(blocks):
                block = encoder.encode([*REQUEST, ("x-big", f"{index:070000d}", True)])
                connection.data_received(header_frames(1 + 2 * index, block, END_STREAM))
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    held = asyncio.run(held_after(20))

    assert held < 20 * 70_000 // 4  # remembering them would hold 20 x 70 KB at least


def test_unfinished_bodies_past_the_connection_limit_are_refused_and_freed() -> None:
    """Windows are refilled as bytes arrive, so the bytes of requests not yet whole are
    bounded per connection instead: the request that crosses the bound is refused, and what
    it held is free again for the others."""
    app = Recorder()

    async def scenario() -> None:
        connection = open_in_process(app, max_body=100, buffer_limit=250)
        block = hpack.Encoder().encode(REQUEST)
        for stream_id in (1, 3, 5):  # 3 x 90 bytes: the third crosses 250
            connection.data_received(frame(HEADERS, END_HEADERS, stream_id, block)
                                     + frame(DATA, 0, stream_id, b"x" * 90))
        connection.data_received(frame(DATA, END_STREAM, 1, b"y" * 10)
                                 + frame(HEADERS, END_HEADERS, 7, block)
                                 + frame(DATA, 0, 7, b"z" * 90))
        connection.data_received(frame(DATA, END_STREAM, 7, b"!"))

    asyncio.run(scenario())

    assert app.asked == [("refuse", "connection"), ("respond", b"x" * 90 + b"y" * 10),
                         ("respond", b"z" * 90 + b"!")]


def test_going_away_from_a_client_already_gone_aborts_quietly() -> None:
    """At shutdown a client may have disconnected without the loop having heard yet: the
    half-close then fails with ENOTCONN, which must not stop the server's shutdown."""

    class Gone(Discard):
        aborted = False

        def can_write_eof(self) -> bool:
            return True

        def write_eof(self) -> None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

        def abort(self) -> None:
            self.aborted = True

    async def scenario() -> Gone:
        connection = Connection(Recorder(), 1024)
        transport = Gone()
        connection.connection_made(transport)
        connection.go_away()
        return transport

    assert asyncio.run(scenario()).aborted
