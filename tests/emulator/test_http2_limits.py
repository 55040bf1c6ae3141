"""What a hostile peer can make one emulator connection hold, in process: HPACK amplification,
time (on an injected clock: nothing sleeps), unfinished bytes across connections, and the
connection's receive window. Frames are built as in test_http2; the transport records what
the server writes so its GOAWAY and RST_STREAM frames can be read."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import hpack
import pytest
from test_http2 import REQUEST, Recorder, frame, u32

from fastapi_cloud_tasks.emulator.connection_limits import Budget, Limits
from fastapi_cloud_tasks.emulator.http2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    Connection,
)
from fastapi_cloud_tasks.emulator.http2_fields import CACHE_BYTES, DECODE_LIMIT


class Capture(asyncio.Transport):
    """A transport keeping what the connection writes, frame by frame."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.half_closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.half_closed = True

    def abort(self) -> None:
        pass

    def frames(self) -> list[tuple[int, int, bytes]]:
        """(type, stream id, payload) of each frame written so far."""
        found, offset = [], 0
        while offset + 9 <= len(self.written):
            length = int.from_bytes(self.written[offset:offset + 3], "big")
            stream_id = int.from_bytes(self.written[offset + 5:offset + 9], "big")
            found.append((self.written[offset + 3], stream_id,
                          bytes(self.written[offset + 9:offset + 9 + length])))
            offset += 9 + length
        return found

    def goaway_code(self) -> int | None:
        for kind, _, payload in self.frames():
            if kind == GOAWAY:
                code: int = struct.unpack_from(">I", payload, 4)[0]
                return code
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(app: Recorder, clock: Clock | None = None, budget: Budget | None = None,
           preface: bool = True, max_body: int = 1 << 24,
           **limits: Any) -> tuple[Connection, Capture]:
    connection = Connection(app, max_body, Limits(**limits), budget, clock or Clock())
    transport = Capture()
    connection.connection_made(transport)
    if preface:
        connection.data_received(PREFACE + frame(SETTINGS, 0, 0))
    return connection, transport


def run(scenario: Callable[[], Any]) -> Any:
    async def inside() -> Any:
        return scenario()
    return asyncio.run(inside())


# -- HPACK amplification ------------------------------------------------------------------------

ENTRY = ("x-big", "b" * 4000)  # one ~4 KB field, put in the table once


def referring(times: int, tag: int) -> bytes:
    """A block of the request's fields (never indexed) plus `times` references to ENTRY, the
    newest table entry (index 62), and a distinct tag so every block differs."""
    encoder = hpack.Encoder()
    head = encoder.encode([*((name, value, True) for name, value in REQUEST),
                           ("x-tag", str(tag), True)])
    return head + b"\xbe" * times


def test_a_block_of_references_past_the_decode_bound_ends_the_connection_cheaply() -> None:
    """255 references to a 4 KB entry (a ~1 MiB list from ~300 bytes): decoding stops at the
    bound (ENHANCE_YOUR_CALM), with memory near the bound, not the list's megabyte and the
    quadratic joins of its repeats."""
    app = Recorder()
    assert DECODE_LIMIT < 255 * 4000

    def scenario() -> tuple[int, int | None]:
        connection, transport = opened(app)
        connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                       hpack.Encoder().encode([*REQUEST, ENTRY])))
        tracemalloc.start()
        try:
            connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM, 3,
                                           referring(255, 0)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak, transport.goaway_code()

    peak, code = run(scenario)

    assert code == ENHANCE_YOUR_CALM
    assert peak < 2 * DECODE_LIMIT
    assert app.asked == [("respond", b"")]  # the first request only


def test_distinct_blocks_of_references_are_refused_and_not_remembered() -> None:
    """256 distinct blocks of 60 references each (240 KB decoded, over the 64 KiB header
    list, under the decode bound) are each refused as too large; what the connection keeps
    after them stays within the block cache's byte bound."""
    app = Recorder()

    def scenario() -> int:
        connection, _ = opened(app)
        connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                       hpack.Encoder().encode([*REQUEST, ENTRY])))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(256):
                stream_id = 3 + 2 * index
                connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM, stream_id,
                                               referring(60, index)))
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    held = run(scenario)

    assert app.asked[1:] == [("refuse", "headers")] * 256
    assert held < 2 * CACHE_BYTES


def test_small_distinct_blocks_are_remembered_within_the_cache_bound() -> None:
    """Blocks under 4 KiB that decode to 16 KB (4 references) would be remembered, each: 256
    of them held 4 MB before; the cache is bounded in bytes."""
    app = Recorder()

    def scenario() -> int:
        connection, _ = opened(app)
        connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                       hpack.Encoder().encode([*REQUEST, ENTRY])))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(256):
                connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM,
                                               3 + 2 * index, referring(4, index)))
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    held = run(scenario)

    assert len(app.asked) == 257
    assert held < 2 * CACHE_BYTES


# -- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dribbled", [b"", PREFACE[:12], b"\x00\x00\x08\x06\x00"],
                         ids=["no-preface", "dribbled-preface", "dribbled-frame"])
def test_a_missing_preface_or_a_dribbled_frame_ends_the_connection_after_head_timeout(
    dribbled: bytes,
) -> None:
    """A byte every half second never makes the preface (or a frame) whole: the connection
    ends head_timeout after it began, however steadily bytes arrive."""

    def scenario() -> tuple[int | None, int | None]:
        clock = Clock()
        connection, transport = opened(Recorder(), clock, preface=False, head_timeout=2.0)
        if dribbled[:1] == b"\x00":  # a frame after a whole preface
            connection.data_received(PREFACE + frame(SETTINGS, 0, 0))
        for index in range(len(dribbled)):
            connection.data_received(dribbled[index:index + 1])
            clock.now += 0.5 if index < 3 else 0.0
        clock.now = 1001.9  # 1.9 s after the start
        connection.check(clock.now)
        before = transport.goaway_code()
        clock.now = 1002.1
        connection.check(clock.now)
        return before, transport.goaway_code()

    assert run(scenario) == (None, ENHANCE_YOUR_CALM)


def test_frames_arriving_whole_keep_resetting_the_head_timeout() -> None:
    """A long upload whose reads each end mid-frame is not a dribble: each frame completed
    starts the clock again."""
    app = Recorder()

    def scenario() -> int | None:
        clock = Clock()
        connection, transport = opened(app, clock, head_timeout=2.0, body_timeout=100.0)
        block = hpack.Encoder().encode(REQUEST)
        stream = frame(HEADERS, END_HEADERS, 1, block) + b"".join(
            frame(DATA, 0, 1, b"x" * 1000) for _ in range(20)) + frame(DATA, END_STREAM, 1, b"!")
        for start in range(0, len(stream), 1100):  # each ends one frame, and inside the next
            connection.data_received(stream[start:start + 1100])
            clock.now += 1.5
            connection.check(clock.now)
        return transport.goaway_code()

    assert run(scenario) is None
    assert app.asked == [("respond", b"x" * 20_000 + b"!")]


def test_an_unfinished_header_block_has_head_timeout_as_a_whole() -> None:
    def scenario() -> int | None:
        clock = Clock()
        connection, transport = opened(Recorder(), clock, head_timeout=2.0)
        block = hpack.Encoder().encode([*REQUEST, ("x-a", "a" * 100)])
        connection.data_received(frame(HEADERS, END_STREAM, 1, block[:10]))
        for piece in range(10, 40, 10):  # CONTINUATIONs, each whole, none the last
            clock.now += 0.9
            connection.data_received(frame(9, 0, 1, block[piece:piece + 10]))
            connection.check(clock.now)
        return transport.goaway_code()

    assert run(scenario) == ENHANCE_YOUR_CALM


@pytest.mark.parametrize(("limit", "reason"), [(None, "slow"), (1.0, "deadline")])
def test_a_body_not_whole_in_time_is_refused_and_freed(limit: float | None,
                                                       reason: str) -> None:
    """A request not whole within body_timeout (or its own time limit, gRPC's grpc-timeout)
    is refused, its stream reset and its bytes no longer counted; the connection serves on."""
    app = Recorder(limit)

    def scenario() -> tuple[int, list[tuple[int, int, bytes]], int | None]:
        clock = Clock()
        budget = Budget(1 << 20)
        connection, transport = opened(app, clock, budget, body_timeout=5.0)
        block = hpack.Encoder().encode(REQUEST)
        connection.data_received(frame(HEADERS, END_HEADERS, 1, block)
                                 + frame(DATA, 0, 1, b"x" * 100))
        clock.now += 0.9
        connection.check(clock.now)
        assert app.asked == []
        clock.now += 4.2
        connection.check(clock.now)
        held = budget.held
        connection.data_received(frame(HEADERS, END_HEADERS | END_STREAM, 3, block))
        return held, transport.frames(), transport.goaway_code()

    held, frames, code = run(scenario)

    assert app.asked == [("refuse", reason), ("respond", b"")]
    assert held == 0
    assert (RST_STREAM, 1, u32(NO_ERROR)) in frames
    assert code is None


def test_an_idle_connection_goes_away_and_a_busy_one_does_not() -> None:
    def scenario() -> tuple[int | None, int | None, bool]:
        clock = Clock()
        idle, idle_transport = opened(Recorder(), clock, idle_timeout=30.0)
        busy, busy_transport = opened(Recorder(), clock, idle_timeout=30.0)
        busy.data_received(frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(REQUEST)))
        clock.now += 29.0
        idle.check(clock.now)
        early = idle_transport.goaway_code()
        clock.now += 2.0
        idle.check(clock.now)
        busy.check(clock.now)
        return early, idle_transport.goaway_code(), busy_transport.half_closed

    early, code, busy_closed = run(scenario)

    assert early is None
    assert code == NO_ERROR
    assert not busy_closed


# -- bytes ---------------------------------------------------------------------------------------


def test_unfinished_bodies_are_bounded_across_connections() -> None:
    """Each connection under its own bound, together over the server's: the request that
    crosses it is refused ("server") and its bytes freed for the others."""
    app = Recorder()

    def scenario() -> int:
        budget = Budget(250)
        block = hpack.Encoder().encode(REQUEST)
        connections = [opened(app, budget=budget, buffer_limit=1000)[0] for _ in range(3)]
        for connection in connections:  # 3 x 90: the third crosses 250
            connection.data_received(frame(HEADERS, END_HEADERS, 1, block)
                                     + frame(DATA, 0, 1, b"x" * 90))
        connections[0].data_received(frame(DATA, END_STREAM, 1, b"!"))
        return budget.held

    held = run(scenario)

    assert app.asked == [("refuse", "server"), ("respond", b"x" * 90 + b"!")]
    assert held == 90  # the second connection's, still unfinished


def test_data_past_the_connection_receive_window_is_a_flow_control_error() -> None:
    """17 streams each sending their 1 MiB window at once overrun the 16 MiB the connection
    granted (before any WINDOW_UPDATE of ours could have reached the client)."""

    def scenario() -> int | None:
        connection, transport = opened(Recorder(), buffer_limit=1 << 30,
                                       total_buffer_limit=1 << 30)
        block = hpack.Encoder().encode([(name, value, True) for name, value in REQUEST])
        frames = []
        for index in range(17):
            stream_id = 1 + 2 * index
            frames.append(frame(HEADERS, END_HEADERS, stream_id, block))
            frames += [frame(DATA, 0, stream_id, b"x" * 16_384)] * 64  # 1 MiB
        connection.data_received(b"".join(frames))
        return transport.goaway_code()

    assert run(scenario) == FLOW_CONTROL_ERROR

