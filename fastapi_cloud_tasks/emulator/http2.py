"""The server side of HTTP/2 (RFC 9113), as much of it as gRPC's unary calls need.

Frames are read and written here; header blocks are HPACK-decoded by `http2_fields` (on the
python-hyper `hpack` codec h2 uses), so its dynamic table and Huffman coding stay a library's
job. Why not grpcio's server, or h2: a unary gRPC call costs ~0.6 ms of server CPU through
either, ~0.22 ms through this connection, with the handler on the event loop beside the
deliveries (`benchmarks/bench_emulator.py`).

What a connection does: the server preface, SETTINGS and their acknowledgement, PING answers,
flow control both ways (receive windows refilled as data arrives and enforced, responses held
back while the client's windows are shut), CONTINUATION, RST_STREAM, a stream limit, the
stream states of RFC 9113 §5.1 (a frame a state does not allow is the stream or connection
error the RFC names), malformed requests (§8.1.1) reset, GOAWAY on a protocol error and on
shutdown (then a half-close, reading on until the client closes). Each request whose stream
ends is answered at once by a synchronous `Application` (everything the emulator serves is a
short in-memory call); a request over a bound is answered by the application's `refuse` as
soon as it is seen, and the stream reset: a body over `max_body`, a header list over the
advertised SETTINGS_MAX_HEADER_LIST_SIZE, the request that takes the unfinished bodies past
`Limits.buffer_limit` (this connection) or the `Budget` (all of them), one not whole within
`Limits.body_timeout` or the application's own time limit. `check` enforces the timeouts: a
frame, header block or preface begun and not ended within `head_timeout`, and a connection
idle past `idle_timeout`, end the connection. Only a block too large to decode safely ends
it otherwise. Server push, priorities and the HTTP/1.1 upgrade are never used by gRPC and not
served.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from fastapi_cloud_tasks.emulator.connection_limits import Budget, Limits
from fastapi_cloud_tasks.emulator.http2_fields import (
    DECODE_LIMIT,
    HEADER_LIST_LIMIT,
    BlockDecoder,
    UndecodableBlock,
)
from fastapi_cloud_tasks.emulator.quiet_log import RepeatLimiter

__all__ = ["Application", "Connection", "Refusal", "Response", "encode_headers"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")
_quiet = RepeatLimiter()

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR = 0x5, 0x6
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB
# settings
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x1, 0x2, 0x3, 0x4
MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x5, 0x6

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
# What we grant: large windows, so a client never waits for us on loopback.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 1 << 24
STREAM_LIMIT = 1_000
HEADER_BLOCK_LIMIT = DECODE_LIMIT  # bytes of one block as sent, CONTINUATIONs included
RESETS_KEPT = 1_024  # streams we reset whose late frames are ignored (RFC 9113 §5.1, closed)
LINGER_S = 10.0  # after our last frame, how long a client may take to close its side
REFUSAL_LINGER_S = 1.0  # the same for a connection refused at once

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
    def respond(self, headers: dict[bytes, bytes], body: bytes, opened: float) -> Response:
        """The answer to a whole request, whose headers arrived at `opened` (the clock's)."""

    def refuse(self, headers: dict[bytes, bytes], reason: str) -> Response:
        """The answer to a request refused before it is whole: its "body" is over
        `max_body`, its "headers" over the header list limit, the unfinished bodies of its
        "connection" or of the "server" over their bound, it came too "slow" (not whole
        within `Limits.body_timeout`), or its "deadline" (`time_limit`) passed."""

    def time_limit(self, headers: dict[bytes, bytes]) -> float | None:
        """Seconds the request may take to arrive whole, by its own headers; None: no limit."""


class _Violation(Exception):
    """A connection error (RFC 9113 §5.4.1): GOAWAY with `code`, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Request:
    __slots__ = ("body", "deadline", "expected", "headers", "late", "opened", "unacked",
                 "window")

    def __init__(self, headers: dict[bytes, bytes], opened: float,
                 expected: int | None) -> None:
        self.headers = headers
        self.body = bytearray()
        self.window = STREAM_WINDOW
        self.unacked = 0
        self.opened = opened
        self.expected = expected  # content-length, if the client sent one
        # Worked out by the first sweep that finds the request unfinished (most end within
        # the read that began them): when it is late, and the refusal's reason then.
        self.deadline: float | None = None
        self.late = "slow"


class _Output:
    __slots__ = ("body", "request_done", "since", "trailers")

    def __init__(self, body: memoryview, trailers: bytes | None, request_done: bool,
                 since: float) -> None:
        self.body = body
        self.trailers = trailers
        self.request_done = request_done
        self.since = since


class Connection(asyncio.Protocol):
    """One client connection. `closed` resolves when the transport is gone; `check(now)`,
    called every `Limits.tick` seconds, enforces the timeouts."""

    def __init__(self, app: Application, max_body: int, limits: Limits | None = None,
                 budget: Budget | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.max_body = max_body
        self.limits = limits = limits or Limits()
        self.budget = budget or Budget(limits.total_buffer_limit)
        self._clock = clock
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface_seen = False
        self._fields = BlockDecoder()
        self._out: list[bytes] = []
        self._requests: dict[int, _Request] = {}  # streams still sending their request
        self._pending: dict[int, _Output] = {}  # responses waiting for the client's windows
        self._send_windows: dict[int, int] = {}  # every open stream's window, ours to spend
        self._reset_here: dict[int, None] = {}  # streams we reset, oldest first
        self._send_window = DEFAULT_WINDOW  # the connection's
        self._peer_stream_window = DEFAULT_WINDOW
        self._peer_frame = DEFAULT_FRAME
        self._recv_window = CONNECTION_WINDOW  # what the client may still send us
        self._recv_unacked = 0
        self._buffered = 0  # bytes of unfinished request bodies, all streams
        self._last_stream = 0
        self._last_accepted = 0  # the highest stream served: what a GOAWAY reports
        self._continuation: tuple[int, int, bytearray, bool] | None = None
        self._now = self._last_active = clock()
        self._partial_since: float | None = self._now  # the preface is owed
        self._block_since = 0.0  # when the unfinished header block began
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
        for stream_id in list(self._requests):
            self._forget(stream_id)
        self._pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._write_closed:
            return  # read only so that the client's last frames never reset the connection
        self._now = self._last_active = now = self._clock()
        buffer = self._buffer
        buffer += data
        try:
            start = self._read_frames(buffer)
        except Exception as exc:
            self._fail(exc)
            return
        del buffer[:start]
        if buffer:  # a frame begun: it has head_timeout to arrive whole
            if start or self._partial_since is None:
                self._partial_since = now
        elif self._preface_seen:
            self._partial_since = None
        if self._recv_unacked >= CONNECTION_WINDOW // 4:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
            self._recv_window += self._recv_unacked
            self._recv_unacked = 0
        self._flush()
        self._close_if_done()

    # -- timeouts and shutdown -------------------------------------------------------------

    def check(self, now: float) -> None:
        """End what has taken too long by `now` (the clock's)."""
        if self._transport is None or self._write_closed:
            return
        self._now = now
        limits = self.limits
        begun = self._block_since if self._continuation is not None else self._partial_since
        if begun is not None and now - begun > limits.head_timeout:
            what = "the connection preface" if not self._preface_seen else (
                "a header block" if self._continuation is not None else "a frame")
            self._fail(_Violation(ENHANCE_YOUR_CALM, f"{what} was not whole "
                                                     f"{limits.head_timeout:g} s after it began"))
            return
        for stream_id, request in list(self._requests.items()):
            if request.deadline is None:
                limit = self.app.time_limit(request.headers)
                if limit is not None and limit < limits.body_timeout:
                    request.late, request.deadline = "deadline", request.opened + limit
                else:
                    request.deadline = request.opened + limits.body_timeout
            if now > request.deadline:
                self._forget(stream_id)
                self._answer(stream_id, self.app.refuse(request.headers, request.late),
                             request_done=False)
        for stream_id, output in list(self._pending.items()):
            if now - output.since > limits.body_timeout:  # a client that stopped reading
                self._reset(stream_id, CANCEL)
        if (not self._send_windows and not self._going_away
                and now - self._last_active > limits.idle_timeout):
            self.go_away()
        self._flush()
        self._close_if_done()

    def go_away(self) -> None:
        """Take no new streams; close once the responses still held back are sent."""
        if self._transport is None or self._transport.is_closing() or self._going_away:
            return
        self._going_away = True
        self._out.append(frame(GOAWAY, 0, 0, _U32.pack(self._last_accepted)
                               + _U32.pack(NO_ERROR)))
        self._flush()
        self._close_if_done()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        if isinstance(exc, _Violation):
            _quiet.log(logger, logging.INFO, exc.code, "HTTP/2 connection error: %s", exc)
            code = exc.code
        else:  # a bug: this connection ends, the server goes on
            logger.exception("HTTP/2 connection failed")
            code = INTERNAL_ERROR
        self._out.append(frame(GOAWAY, 0, 0, _U32.pack(self._last_accepted)
                               + _U32.pack(code) + str(exc).encode()))
        self._buffer.clear()
        self._end_writing()

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
        for stream_id in list(self._requests):
            self._forget(stream_id)  # their bytes no longer count against the budget
        self._linger = _half_close(self._transport, LINGER_S)

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
        unpack = _FRAME_HEAD.unpack_from  # one C call per frame head: this loop is hot
        while end - position >= 9:
            high, low, kind, flags, stream_id = unpack(buffer, position)
            length = high << 16 | low
            if length > DEFAULT_FRAME:  # we never raise SETTINGS_MAX_FRAME_SIZE
                raise _Violation(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            start = position + 9
            position = start + length
            if position > end:
                return start - 9
            self._on_frame(kind, flags, stream_id & 0x7FFFFFFF, bytes(buffer[start:position]))
            if self._write_closed:
                break
        return position

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and kind != CONTINUATION:
            raise _Violation(PROTOCOL_ERROR, "a header block left unfinished")
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == HEADERS:
            if flags & (END_HEADERS | PADDED | PRIORITY_FLAG) == END_HEADERS and stream_id:
                self._on_headers(stream_id, flags, payload, False)  # what clients send
            else:
                self._on_headers_frame(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:  # two per unary call
            self._on_window_update(stream_id, payload)
        elif kind == CONTINUATION:
            if self._continuation is None or self._continuation[0] != stream_id:
                raise _Violation(PROTOCOL_ERROR, "CONTINUATION out of place")
            block = self._continuation[2]
            block.extend(payload)
            if len(block) > HEADER_BLOCK_LIMIT:
                raise _Violation(ENHANCE_YOUR_CALM, "a header block over "
                                                    f"{HEADER_BLOCK_LIMIT} bytes")
            if flags & END_HEADERS:
                stream_id, first_flags, _, self_dependent = self._continuation
                self._continuation = None
                self._on_headers(stream_id, first_flags, bytes(block), self_dependent)
        elif kind == SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == PING:
            if stream_id:
                raise _Violation(PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise _Violation(FRAME_SIZE_ERROR, "a PING not of 8 bytes")
            if not flags & ACK:
                self._out.append(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            if stream_id == 0 or stream_id > self._last_stream:
                raise _Violation(PROTOCOL_ERROR, f"RST_STREAM on stream {stream_id}, idle")
            if len(payload) != 4:
                raise _Violation(FRAME_SIZE_ERROR, "a RST_STREAM not of 4 bytes")
            self._end_stream(stream_id)
        elif kind == PRIORITY:
            self._on_priority(stream_id, payload)
        elif kind == GOAWAY:  # the client closes the socket itself next
            if stream_id:
                raise _Violation(PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise _Violation(FRAME_SIZE_ERROR, "a GOAWAY under 8 bytes")
        elif kind == PUSH_PROMISE:
            raise _Violation(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Frame types this server does not know are ignored (RFC 9113 §5.5).

    def _on_priority(self, stream_id: int, payload: bytes) -> None:
        """Priorities are not served, but a malformed one is an error (RFC 9113 §6.3)."""
        if stream_id == 0:
            raise _Violation(PROTOCOL_ERROR, "PRIORITY on stream 0")
        idle = stream_id > self._last_stream
        if len(payload) != 5:
            if idle:
                raise _Violation(FRAME_SIZE_ERROR, "a PRIORITY not of 5 bytes")
            self._reset(stream_id, FRAME_SIZE_ERROR)
        elif _U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
            if idle:
                raise _Violation(PROTOCOL_ERROR, f"stream {stream_id} depends on itself")
            self._reset(stream_id, PROTOCOL_ERROR)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id > self._last_stream:
            raise _Violation(PROTOCOL_ERROR, f"DATA on stream {stream_id}, never opened")
        self._recv_window -= len(payload)
        if self._recv_window < 0:
            raise _Violation(FLOW_CONTROL_ERROR, "the connection window overrun")
        self._recv_unacked += len(payload)
        request = self._requests.get(stream_id)
        if request is None:  # half-closed (remote) or closed (RFC 9113 §5.1)
            if stream_id not in self._reset_here:  # data still in flight when we reset
                self._reset(stream_id, STREAM_CLOSED)
            return
        request.window -= len(payload)
        if request.window < 0:
            raise _Violation(FLOW_CONTROL_ERROR, f"stream {stream_id} overran its window")
        body = _unpad(flags, payload)
        request.body += body
        self._buffered += len(body)
        budget = self.budget
        budget.held += len(body)
        size = len(request.body)
        if request.expected is not None and (
                size > request.expected or (flags & END_STREAM and size != request.expected)):
            self._forget(stream_id)
            self._reset(stream_id, PROTOCOL_ERROR)  # malformed: content-length (§8.1.1)
        elif (size > self.max_body or self._buffered > self.limits.buffer_limit
              or budget.held > budget.limit):
            # Windows are refilled as bytes arrive (holding them back until requests end
            # could stall uploads that wait on each other), so memory is bounded here.
            reason = ("body" if size > self.max_body else "connection"
                      if self._buffered > self.limits.buffer_limit else "server")
            self._forget(stream_id)
            self._answer(stream_id, self.app.refuse(request.headers, reason),
                         request_done=False)
        elif flags & END_STREAM:
            self._forget(stream_id)
            self._answer(stream_id, self.app.respond(request.headers, bytes(request.body),
                                                     request.opened))
        else:
            request.unacked += len(payload)
            if request.unacked >= STREAM_WINDOW // 4:
                self._out.append(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(request.unacked)))
                request.window += request.unacked
                request.unacked = 0

    def _on_headers_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _Violation(PROTOCOL_ERROR, "HEADERS on stream 0")
        needed = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY_FLAG else 0)
        if len(payload) < needed:
            raise _Violation(FRAME_SIZE_ERROR, f"a HEADERS frame of {len(payload)} bytes")
        payload = _unpad(flags, payload, needed)
        self_dependent = False
        if flags & PRIORITY_FLAG:
            self_dependent = _U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id
            payload = payload[5:]
        if flags & END_HEADERS:
            self._on_headers(stream_id, flags, payload, self_dependent)
        else:
            self._continuation = (stream_id, flags, bytearray(payload), self_dependent)
            self._block_since = self._now

    def _on_headers(self, stream_id: int, flags: int, block: bytes,
                    self_dependent: bool) -> None:
        request = self._requests.get(stream_id)
        try:
            fields = self._fields.decode(block, request is not None)
        except UndecodableBlock as exc:
            raise _Violation(ENHANCE_YOUR_CALM if exc.too_large else COMPRESSION_ERROR,
                             str(exc)) from exc
        headers, malformed = fields.headers, fields.malformed
        if request is not None:  # trailers on a request: gRPC clients send none, but may
            if not flags & END_STREAM or malformed or self_dependent:
                self._reset(stream_id, PROTOCOL_ERROR)  # a malformed request (§8.1)
            elif request.expected is not None and len(request.body) != request.expected:
                self._reset(stream_id, PROTOCOL_ERROR)
            else:
                self._forget(stream_id)
                self._answer(stream_id, self.app.respond(request.headers, bytes(request.body),
                                                         request.opened))
            return
        if stream_id % 2 == 0:
            raise _Violation(PROTOCOL_ERROR, f"HEADERS opening stream {stream_id}, even")
        if stream_id <= self._last_stream:
            if stream_id in self._send_windows:  # half-closed (remote)
                self._reset(stream_id, STREAM_CLOSED)
            elif stream_id not in self._reset_here:
                raise _Violation(STREAM_CLOSED, f"HEADERS on stream {stream_id}, closed")
            return
        self._last_stream = stream_id
        if self._going_away or len(self._send_windows) >= STREAM_LIMIT:
            self._reset(stream_id, REFUSED_STREAM)
            return
        if self_dependent or malformed:
            self._reset(stream_id, PROTOCOL_ERROR)
            if malformed:
                _quiet.log(logger, logging.INFO, "malformed", "HTTP/2 request refused: %s",
                           malformed)
            return
        self._last_accepted = stream_id
        self._send_windows[stream_id] = self._peer_stream_window
        length = headers.get(b"content-length")
        expected = None if length is None else int(length)
        if fields.size > HEADER_LIST_LIMIT:
            self._answer(stream_id, self.app.refuse(headers, "headers"),
                         request_done=bool(flags & END_STREAM))
        elif flags & END_STREAM:
            if expected:
                self._reset(stream_id, PROTOCOL_ERROR)  # content-length, but no body
            else:
                self._answer(stream_id, self.app.respond(headers, b"", self._now))
        else:
            self._requests[stream_id] = _Request(headers, self._now, expected)

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
            elif key == ENABLE_PUSH and value > 1:
                raise _Violation(PROTOCOL_ERROR, f"SETTINGS_ENABLE_PUSH of {value}")
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
        elif stream_id > self._last_stream:
            raise _Violation(PROTOCOL_ERROR, f"WINDOW_UPDATE on stream {stream_id}, idle")
        else:
            return  # closed: allowed a while after its end (RFC 9113 §5.1)
        if self._pending:  # most updates refill windows no answer waits on
            self._send_held_back()

# -- writing ---------------------------------------------------------------------------

    def _answer(self, stream_id: int, response: Response, request_done: bool = True) -> None:
        body, trailers = response.body, response.trailers
        if (trailers is not None and self._table_size_update is None
                and 0 < len(body) <= min(self._send_window, self._send_windows[stream_id])
                and max(len(body), len(response.head), len(trailers)) <= self._peer_frame):
            # The usual gRPC answer, whole within the windows and one frame each: what
            # `_header_frames` and `_send` would write, without holding it back first.
            self._send_window -= len(body)
            self._out += (frame(HEADERS, END_HEADERS, stream_id, response.head),
                          frame(DATA, 0, stream_id, body),
                          frame(HEADERS, END_STREAM | END_HEADERS, stream_id, trailers))
            self._finish(stream_id, request_done)
            return
        end_with_head = not body and trailers is None
        self._header_frames(stream_id, response.head, end_with_head)
        if end_with_head:
            self._finish(stream_id, request_done)
            return
        self._pending[stream_id] = _Output(memoryview(response.body), response.trailers,
                                           request_done, self._now)
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
            self._note_reset(stream_id)
        self._send_windows.pop(stream_id, None)

    def _reset(self, stream_id: int, code: int) -> None:
        """A stream error (RFC 9113 §5.4.2): RST_STREAM with `code`, the stream forgotten."""
        self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(code)))
        self._note_reset(stream_id)
        self._end_stream(stream_id)

    def _note_reset(self, stream_id: int) -> None:
        """Frames the client sent before it saw our RST_STREAM are ignored, not errors."""
        reset = self._reset_here
        reset[stream_id] = None
        if len(reset) > RESETS_KEPT:
            del reset[next(iter(reset))]

    def _forget(self, stream_id: int) -> None:
        """The request is whole, or given up: its buffered body no longer counts."""
        request = self._requests.pop(stream_id, None)
        if request is not None:
            self._buffered -= len(request.body)
            self.budget.held -= len(request.body)

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


def _unpad(flags: int, payload: bytes, needed: int = 1) -> bytes:
    """`payload` without its padding; `needed`: the bytes before the data, pad length included."""
    if not flags & PADDED:
        return payload
    if not payload or payload[0] > len(payload) - needed:
        raise _Violation(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1:len(payload) - payload[0]]


def _half_close(transport: asyncio.Transport, linger: float) -> asyncio.TimerHandle | None:
    """Half-close `transport` (see `Connection._end_writing`), aborting it `linger` s later."""
    try:
        if transport.can_write_eof():
            transport.write_eof()
            return asyncio.get_running_loop().call_later(linger, transport.abort)
        transport.close()
    except OSError:  # the client is gone already (ENOTCONN): nothing left to send
        transport.abort()
    return None


class Refusal(asyncio.Protocol):
    """A connection over `Limits.max_connections`: our SETTINGS, then GOAWAY saying why, at
    once; nothing it sends is read beyond that."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.write(frame(SETTINGS, 0, 0) + frame(GOAWAY, 0, 0, _U32.pack(0) + _U32.pack(
            ENHANCE_YOUR_CALM) + self.reason.encode()))
        self._linger = _half_close(stream, REFUSAL_LINGER_S)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
