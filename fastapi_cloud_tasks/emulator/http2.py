"""The server side of HTTP/2 (RFC 9113), as much of it as gRPC's unary calls need.

Frames are read and written here; header blocks are HPACK-decoded by `hpack` (the
python-hyper codec h2 uses), so its dynamic table and Huffman coding stay a library's job.
Why not grpcio's server, or h2: a unary gRPC call costs ~0.6 ms of server CPU through either,
~0.22 ms through this connection, with the handler on the event loop beside the deliveries
(`benchmarks/bench_emulator.py`).

What a connection does: the server preface, SETTINGS and their acknowledgement, PING answers,
flow control both ways (receive windows refilled as data arrives, responses held back while the
client's windows are shut), CONTINUATION, RST_STREAM, a stream limit, GOAWAY on a protocol error
and on shutdown (then a half-close, reading on until the client closes). Each request whose
stream ends is answered at once by a synchronous `Application` (everything the emulator serves
is a short in-memory call); a body over `max_body` is answered by the application's
`too_large` as soon as it is seen, and the stream reset; so is a header list over the
advertised SETTINGS_MAX_HEADER_LIST_SIZE (only a block too large to decode safely ends the
connection), and the request that takes the bodies still arriving on one connection past
`buffer_limit`. Server push, priorities and the HTTP/1.1 upgrade are never used by gRPC and
not served.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, cast

import hpack

__all__ = ["Application", "Connection", "Response", "encode_headers"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM, COMPRESSION_ERROR = 0x7, 0x9
# settings
HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x1, 0x3, 0x4
MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x5, 0x6

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
# What we grant: large windows, so a client never waits for us on loopback.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 1 << 24
STREAM_LIMIT = 1_000
HEADER_LIST_LIMIT = 64 * 1024  # advertised; a request over it is refused, the connection kept
HEADER_BLOCK_LIMIT = 1024 * 1024  # a block (or its decoded list) over this ends the connection
BUFFER_LIMIT = 64 * 1024 * 1024  # unfinished request bodies one connection may make us hold
DECODED_BLOCKS = 256
DECODED_BLOCK_BYTES = 4096
LINGER_S = 10.0  # after our last frame, how long a client may take to close its side

_FRAME_HEAD = struct.Struct(">BHBBI")  # length as 8 + 16 bits, type, flags, stream id
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")


def frame(kind: int, flags: int, stream_id: int, payload: bytes | memoryview = b"") -> bytes:
    size = len(payload)
    return _FRAME_HEAD.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def _integer(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 §5.1), its prefix's other bits 0 (a string not Huffman-coded)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = [limit]
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A header block that leaves the decoder's table as it was: `:status: 200` by its
    static index, everything else as a literal never indexed. Such a block can be built once
    and sent on any connection, in any order."""
    block = bytearray()
    for name, value in headers:
        if name == b":status" and value == b"200":
            block += b"\x88"
        else:
            block += b"\x10" + _integer(len(name), 7) + name + _integer(len(value), 7) + value
    return bytes(block)


@dataclass(frozen=True)
class Response:
    head: bytes  # an `encode_headers` block
    body: bytes = b""
    trailers: bytes | None = None  # a header block; None: the stream ends with head or body


class Application(Protocol):
    def respond(self, headers: dict[bytes, bytes], body: bytes) -> Response: ...
    def too_large(self, headers: dict[bytes, bytes], part: str) -> Response:
        """The answer to a request over a limit: its "body", its "headers", or the
        "connection"'s for request bodies not yet whole."""


class _Violation(Exception):
    """A connection error (RFC 9113 §5.4.1): GOAWAY with `code`, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Request:
    __slots__ = ("body", "headers", "unacked", "window")

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        self.headers = headers
        self.body = bytearray()
        self.window = STREAM_WINDOW
        self.unacked = 0


class _Output:
    __slots__ = ("body", "request_done", "trailers")

    def __init__(self, body: memoryview, trailers: bytes | None, request_done: bool) -> None:
        self.body = body
        self.trailers = trailers
        self.request_done = request_done


class Connection(asyncio.Protocol):
    """One client connection. `closed` resolves when the transport is gone."""

    def __init__(self, app: Application, max_body: int,
                 buffer_limit: int = BUFFER_LIMIT) -> None:
        self.app = app
        self.max_body = max_body
        self.buffer_limit = buffer_limit
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface_seen = False
        self._decoder = hpack.Decoder(max_header_list_size=HEADER_BLOCK_LIMIT)
        self._decoded: dict[bytes, tuple[int, dict[bytes, bytes], int]] = {}
        self._table_version = 0
        self._out: list[bytes] = []
        self._requests: dict[int, _Request] = {}  # streams still sending their request
        self._pending: dict[int, _Output] = {}  # responses waiting for the client's windows
        self._send_windows: dict[int, int] = {}  # every open stream's window, ours to spend
        self._send_window = DEFAULT_WINDOW  # the connection's
        self._peer_stream_window = DEFAULT_WINDOW
        self._peer_frame = DEFAULT_FRAME
        self._recv_unacked = 0
        self._buffered = 0  # bytes of unfinished request bodies, all streams
        self._last_stream = 0
        self._last_accepted = 0  # the highest stream served: what a GOAWAY reports
        self._continuation: tuple[int, int, bytearray] | None = None
        self._going_away = False
        self._write_closed = False
        self._linger: asyncio.TimerHandle | None = None
        self._encoder_table_size = 4096  # the HPACK table our blocks are read against
        self._table_size_update: int | None = None  # to announce at our next block

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport whatever its class (uvloop's is no asyncio.Transport subclass).
        self._transport = cast(asyncio.Transport, transport)
        settings = b"".join(_SETTING.pack(key, value) for key, value in (
            (MAX_CONCURRENT_STREAMS, STREAM_LIMIT), (INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (MAX_HEADER_LIST_SIZE, HEADER_LIST_LIMIT)))
        self._transport.write(frame(SETTINGS, 0, 0, settings) + frame(
            WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._requests.clear()
        self._pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._write_closed:
            return  # read only so that the client's last frames never reset the connection
        buffer = self._buffer
        buffer += data
        try:
            start = self._read_frames(buffer)
        except Exception as exc:
            if isinstance(exc, _Violation):
                logger.info("HTTP/2 connection error: %s", exc)
                code = exc.code
            else:  # a bug: this connection ends, the server goes on
                logger.exception("HTTP/2 connection failed")
                code = INTERNAL_ERROR
            self._out.append(frame(GOAWAY, 0, 0, _U32.pack(self._last_accepted)
                                   + _U32.pack(code) + str(exc).encode()))
            buffer.clear()
            self._end_writing()
            return
        del buffer[:start]
        if self._recv_unacked >= CONNECTION_WINDOW // 4:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
            self._recv_unacked = 0
        self._flush()
        self._close_if_done()

    # -- shutdown --------------------------------------------------------------------------

    def go_away(self) -> None:
        """Take no new streams; close once the responses still held back are sent."""
        if self._transport is None or self._transport.is_closing():
            return
        self._going_away = True
        self._out.append(frame(GOAWAY, 0, 0, _U32.pack(self._last_accepted)
                               + _U32.pack(NO_ERROR)))
        self._flush()
        self._close_if_done()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _close_if_done(self) -> None:
        if self._going_away and not self._pending and not self._requests:
            self._end_writing()

    def _end_writing(self) -> None:
        """Send what is queued, then half-close. Closing outright would stop reading: a
        frame the client sends meanwhile (a WINDOW_UPDATE as it reads our last answer, a
        PING) would sit unread, and the kernel resets a socket closed over unread bytes,
        dropping whatever of ours it had not delivered yet. So the connection ends when
        the client closes its side, or LINGER_S later."""
        if self._transport is None or self._write_closed:
            return
        self._flush()
        self._write_closed = True
        try:
            if self._transport.can_write_eof():
                self._transport.write_eof()
                self._linger = asyncio.get_running_loop().call_later(LINGER_S, self.abort)
            else:
                self._transport.close()
        except OSError:  # the client is gone already (ENOTCONN): nothing left to send
            self._transport.abort()

    # -- reading ---------------------------------------------------------------------------

    def _read_frames(self, buffer: bytearray) -> int:
        """Handle every whole frame in `buffer`; the offset of the first byte not used."""
        position = 0
        if not self._preface_seen:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(bytes(buffer)):
                    raise _Violation(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return 0
            if buffer[:len(PREFACE)] != PREFACE:
                raise _Violation(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self._preface_seen = True
            position = len(PREFACE)
        end = len(buffer)
        while end - position >= 9:
            length = (buffer[position] << 16) | (buffer[position + 1] << 8) | buffer[position + 2]
            if length > DEFAULT_FRAME:  # we never raise SETTINGS_MAX_FRAME_SIZE
                raise _Violation(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            if end - position < 9 + length:
                break
            kind = buffer[position + 3]
            flags = buffer[position + 4]
            stream_id = _U32.unpack_from(buffer, position + 5)[0] & 0x7FFFFFFF
            payload = bytes(buffer[position + 9:position + 9 + length])
            position += 9 + length
            self._on_frame(kind, flags, stream_id, payload)
        return position

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and kind != CONTINUATION:
            raise _Violation(PROTOCOL_ERROR, "a header block left unfinished")
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == HEADERS:
            if stream_id == 0:
                raise _Violation(PROTOCOL_ERROR, "HEADERS on stream 0")
            payload = _unpad(flags, payload)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._on_headers(stream_id, flags, payload)
            else:
                self._continuation = (stream_id, flags, bytearray(payload))
        elif kind == CONTINUATION:
            if self._continuation is None or self._continuation[0] != stream_id:
                raise _Violation(PROTOCOL_ERROR, "CONTINUATION out of place")
            self._continuation[2].extend(payload)
            if len(self._continuation[2]) > HEADER_BLOCK_LIMIT:
                raise _Violation(PROTOCOL_ERROR, "a header block too large")
            if flags & END_HEADERS:
                stream_id, first_flags, block = self._continuation
                self._continuation = None
                self._on_headers(stream_id, first_flags, bytes(block))
        elif kind == SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == PING:
            if stream_id or len(payload) != 8:
                raise _Violation(PROTOCOL_ERROR, "a malformed PING")
            if not flags & ACK:
                self._out.append(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            if stream_id == 0 or len(payload) != 4 or stream_id > self._last_stream:
                raise _Violation(PROTOCOL_ERROR, "RST_STREAM malformed or on an idle stream")
            self._end_stream(stream_id)
        elif kind == PUSH_PROMISE:
            raise _Violation(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # GOAWAY (the client closes the socket itself next), PRIORITY, and frame types this
        # server does not know (§5.5) are ignored.

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id > self._last_stream:
            raise _Violation(PROTOCOL_ERROR, f"DATA on stream {stream_id}, never opened")
        self._recv_unacked += len(payload)
        request = self._requests.get(stream_id)
        if request is None:
            return  # a stream already answered and reset: its data still counted above
        request.window -= len(payload)
        if request.window < 0:
            raise _Violation(FLOW_CONTROL_ERROR, f"stream {stream_id} overran its window")
        body = _unpad(flags, payload)
        request.body += body
        self._buffered += len(body)
        if len(request.body) > self.max_body or self._buffered > self.buffer_limit:
            # Windows are refilled as bytes arrive (holding them back until requests end
            # could stall uploads that wait on each other), so memory is bounded here.
            part = "body" if len(request.body) > self.max_body else "connection"
            self._forget(stream_id)
            self._answer(stream_id, self.app.too_large(request.headers, part),
                         request_done=False)
        elif flags & END_STREAM:
            self._forget(stream_id)
            self._answer(stream_id, self.app.respond(request.headers, bytes(request.body)))
        else:
            request.unacked += len(payload)
            if request.unacked >= STREAM_WINDOW // 4:
                self._out.append(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(request.unacked)))
                request.window += request.unacked
                request.unacked = 0

    def _decode(self, block: bytes) -> tuple[dict[bytes, bytes], int]:
        """The headers in `block`, and their size as SETTINGS_MAX_HEADER_LIST_SIZE counts it.
        Every block is decoded, even one we refuse: the decoder's table depends on it. A
        client repeats the same few blocks (gRPC's clients index every header, timeouts
        included), and decoding is most of a call's cost, so a block that left the table as
        it was is remembered, valid until some block changes it."""
        cached = self._decoded.get(block)
        if cached is not None and cached[0] == self._table_version:
            return cached[1], cached[2]
        table = self._decoder.header_table
        before = (tuple(table.dynamic_entries), table.maxsize)  # all a block can change
        try:
            fields = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise _Violation(COMPRESSION_ERROR, f"a header block: {exc}") from exc
        headers: dict[bytes, bytes] = {}
        for name, value in fields:  # a repeated field is one list (RFC 9110 §5.3)
            headers[name] = headers[name] + b", " + value if name in headers else value
        size = sum(len(name) + len(value) + 32 for name, value in fields)
        if (tuple(table.dynamic_entries), table.maxsize) != before:
            self._table_version += 1
        elif len(block) <= DECODED_BLOCK_BYTES:  # a client's usual blocks, not a flood
            if len(self._decoded) >= DECODED_BLOCKS:
                self._decoded.clear()
            self._decoded[block] = (self._table_version, headers, size)
        return headers, size

    def _on_headers(self, stream_id: int, flags: int, block: bytes) -> None:
        headers, size = self._decode(block)
        request = self._requests.get(stream_id)
        if request is not None:  # trailers on a request: gRPC clients send none, but may
            if flags & END_STREAM:
                self._forget(stream_id)
                self._answer(stream_id, self.app.respond(request.headers, bytes(request.body)))
            else:  # a third header block cannot follow: a malformed request (§8.1)
                self._reset(stream_id, PROTOCOL_ERROR)
            return
        if stream_id <= self._last_stream or stream_id % 2 == 0:
            raise _Violation(PROTOCOL_ERROR, f"HEADERS opening stream {stream_id}")
        self._last_stream = stream_id
        if self._going_away or len(self._send_windows) >= STREAM_LIMIT:
            self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(REFUSED_STREAM)))
            return
        self._last_accepted = stream_id
        self._send_windows[stream_id] = self._peer_stream_window
        if size > HEADER_LIST_LIMIT:
            self._answer(stream_id, self.app.too_large(headers, "headers"),
                         request_done=bool(flags & END_STREAM))
        elif flags & END_STREAM:
            self._answer(stream_id, self.app.respond(headers, b""))
        else:
            self._requests[stream_id] = _Request(headers)

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _Violation(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _Violation(FRAME_SIZE_ERROR, "a SETTINGS acknowledgement with data")
            return
        if len(payload) % 6:
            raise _Violation(FRAME_SIZE_ERROR, "a SETTINGS frame of a partial setting")
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _Violation(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE")
                delta = value - self._peer_stream_window
                self._peer_stream_window = value
                for open_stream in self._send_windows:
                    self._send_windows[open_stream] += delta
            elif key == HEADER_TABLE_SIZE and value < self._encoder_table_size:
                # Our blocks use no table, but a decoder may insist on hearing the new size
                # at the start of the next block (RFC 7541 §4.2).
                self._encoder_table_size = value
                self._table_size_update = value
            elif key == MAX_FRAME_SIZE:
                if not DEFAULT_FRAME <= value <= 2**24 - 1:
                    raise _Violation(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE")
                self._peer_frame = value
        self._out.append(frame(SETTINGS, ACK, 0))
        self._send_held_back()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _Violation(FRAME_SIZE_ERROR, "a WINDOW_UPDATE not of 4 bytes")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise _Violation(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise _Violation(FLOW_CONTROL_ERROR, "the connection window overflowed")
        elif stream_id in self._send_windows:
            if not increment:
                self._reset(stream_id, PROTOCOL_ERROR)
                return
            self._send_windows[stream_id] += increment
            if self._send_windows[stream_id] > MAX_WINDOW:
                self._reset(stream_id, FLOW_CONTROL_ERROR)
                return
        else:
            return
        self._send_held_back()

    # -- writing ---------------------------------------------------------------------------

    def _answer(self, stream_id: int, response: Response, request_done: bool = True) -> None:
        end_with_head = not response.body and response.trailers is None
        self._header_frames(stream_id, response.head, end_with_head)
        if end_with_head:
            self._finish(stream_id, request_done)
            return
        self._pending[stream_id] = _Output(memoryview(response.body), response.trailers,
                                           request_done)
        self._send(stream_id)

    def _send(self, stream_id: int) -> None:
        """As much of a held-back response as the windows allow; its trailers once the body
        is out."""
        output = self._pending[stream_id]
        body = output.body
        while body:
            size = min(len(body), self._send_window, self._send_windows[stream_id],
                       self._peer_frame)
            if size <= 0:
                output.body = body
                return
            self._send_window -= size
            self._send_windows[stream_id] -= size
            last = size == len(body) and output.trailers is None
            self._out.append(frame(DATA, END_STREAM if last else 0, stream_id, body[:size]))
            body = body[size:]
        del self._pending[stream_id]
        if output.trailers is not None:
            self._header_frames(stream_id, output.trailers, end_stream=True)
        self._finish(stream_id, output.request_done)

    def _send_held_back(self) -> None:
        for stream_id in list(self._pending):
            self._send(stream_id)
        self._close_if_done()

    def _header_frames(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        if self._table_size_update is not None:
            update = bytearray(_integer(self._table_size_update, 5))
            update[0] |= 0x20  # a dynamic table size update
            block = bytes(update) + block
            self._table_size_update = None
        limit = self._peer_frame
        first, rest = block[:limit], block[limit:]
        flags = (END_STREAM if end_stream else 0) | (0 if rest else END_HEADERS)
        self._out.append(frame(HEADERS, flags, stream_id, first))
        while rest:
            piece, rest = rest[:limit], rest[limit:]
            self._out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream_id, piece))

    def _finish(self, stream_id: int, request_done: bool) -> None:
        if not request_done:
            # Answered before the whole request came (RFC 9113 §8.1): stop the upload.
            self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(NO_ERROR)))
        self._send_windows.pop(stream_id, None)

    def _reset(self, stream_id: int, code: int) -> None:
        """A stream error (RFC 9113 §5.4.2): RST_STREAM with `code`, the stream forgotten."""
        self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(code)))
        self._end_stream(stream_id)

    def _forget(self, stream_id: int) -> None:
        """The request is whole, or given up: its buffered body no longer counts."""
        request = self._requests.pop(stream_id, None)
        if request is not None:
            self._buffered -= len(request.body)

    def _end_stream(self, stream_id: int) -> None:
        """The client reset the stream: forget its request and any answer not yet sent."""
        self._forget(stream_id)
        self._pending.pop(stream_id, None)
        self._send_windows.pop(stream_id, None)

    def _flush(self) -> None:
        if self._out:
            if (self._transport is not None and not self._write_closed
                    and not self._transport.is_closing()):
                self._transport.write(b"".join(self._out))
            self._out.clear()


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _Violation(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1:len(payload) - payload[0]]
