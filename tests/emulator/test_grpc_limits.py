"""The gRPC port's bounds and the gRPC features external clients rely on, where Google's
clients cannot show them: grpc-timeout, compression refusals and bombs (raw frames, as in
test_http2), the connection cap and idle timeout (an emulator started with small limits),
rate-limited log lines, and h2spec's conformance suite when its binary is on PATH."""

from __future__ import annotations

import asyncio
import gzip
import logging
import shutil
import socket
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import hpack
import pytest
from emulator_support import LOCATION, EmulatorProcess, StartEmulator
from google.cloud import tasks_v2
from test_http2 import GET_QUEUE, RawClient, frame, get_queue, u32

from fastapi_cloud_tasks.emulator.grpc_compression import MessageTooLarge, decompress
from fastapi_cloud_tasks.emulator.grpc_server import GrpcServer, parse_timeout
from fastapi_cloud_tasks.emulator.http2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PREFACE,
    SETTINGS,
)
from fastapi_cloud_tasks.emulator.quiet_log import RepeatLimiter, install_loop_handler
from fastapi_cloud_tasks.emulator.rpcs import TASKS
from fastapi_cloud_tasks.engine.clock import SystemClock
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine

MIB = 1024 * 1024


@pytest.fixture
def raw(emulator: EmulatorProcess) -> Iterator[RawClient]:
    client = RawClient(emulator.address)
    yield client
    client.close()


@pytest.fixture
def queue(emulator: EmulatorProcess, ident: str) -> str:
    name = f"{LOCATION}/queues/{ident}"
    emulator.tasks_client().create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    return name


def compressed(message: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    packed = packer.compress(message) + packer.flush()
    return b"\x01" + u32(len(packed)) + packed


# -- grpc-timeout --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    (b"2H", 7200.0), (b"3M", 180.0), (b"4S", 4.0), (b"5m", 0.005), (b"6u", 6e-6),
    (b"99999999n", 0.099999999), (b"1x", None), (b"", None), (b"S", None), (b"-1S", None),
    (b"123456789S", None), (b"1.5S", None),
])
def test_grpc_timeout_is_parsed_in_every_unit_and_malformed_ones_are_none(
    value: bytes, seconds: float | None,
) -> None:
    assert parse_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_a_call_past_its_grpc_timeout_is_deadline_exceeded(raw: RawClient, queue: str) -> None:
    raw.call(1, GET_QUEUE, get_queue(queue), **{"grpc-timeout": "1n"})
    raw.call(3, GET_QUEUE, get_queue(queue), **{"grpc-timeout": "1x"})
    raw.call(5, GET_QUEUE, get_queue(queue), **{"grpc-timeout": "30S"})

    late, malformed, in_time = raw.answer(1), raw.answer(3), raw.answer(5)

    assert (late.status, late.message) == (4, "Deadline Exceeded")
    assert malformed.status == 13
    assert "grpc-timeout: '1x' is malformed" in malformed.message
    assert in_time.status == 0


def test_a_handler_running_past_the_deadline_is_deadline_exceeded() -> None:
    """The clock is read before the handler and after it: 2 s pass during it."""
    readings = iter([100.0, 102.0, 100.0, 102.0])
    server = GrpcServer([(TASKS, CloudTasksEngine(SystemClock()))],
                        clock=lambda: next(readings))
    request = tasks_v2.ListQueuesRequest.serialize(tasks_v2.ListQueuesRequest(parent=LOCATION))
    headers = {b":method": b"POST", b"content-type": b"application/grpc",
               b":path": b"/google.cloud.tasks.v2.CloudTasks/ListQueues"}
    body = b"\x00" + u32(len(request)) + request

    past = server.respond({**headers, b"grpc-timeout": b"1S"}, body, opened=100.0)
    within = server.respond({**headers, b"grpc-timeout": b"3S"}, body, opened=100.0)

    assert (b"grpc-status", b"4") in hpack.Decoder().decode(past.head, raw=True)
    assert past.trailers is None  # trailers-only: the handler's answer is not sent
    assert within.trailers is not None
    assert tasks_v2.ListQueuesResponse.deserialize(within.body[5:]) is not None


# -- compression -----------------------------------------------------------------------------


def test_an_unknown_compression_is_unimplemented_with_the_encodings_accepted(
    raw: RawClient, queue: str,
) -> None:
    raw.call(1, GET_QUEUE, compressed(get_queue(queue), 31), **{"grpc-encoding": "br"})

    answer = raw.answer(1)

    assert answer.status == 12
    # Exactly grpc's spelling: grpc-js splits on "," without trimming (test_node_clients).
    assert answer.headers["grpc-accept-encoding"] == "identity,deflate,gzip"
    assert "'br' is not supported; use one of identity, deflate, gzip." in answer.message


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15)])
def test_a_compressed_call_gets_a_compressed_answer(
    raw: RawClient, queue: str, encoding: str, wbits: int,
) -> None:
    request = tasks_v2.CreateTaskRequest.serialize(tasks_v2.CreateTaskRequest(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(
            url="http://127.0.0.1:9/x", body=b"compressible " * 500)),
        response_view=tasks_v2.Task.View.FULL))
    emulator_paused = {"grpc-encoding": encoding, "grpc-accept-encoding": "identity,deflate,gzip"}
    raw.call(1, "/google.cloud.tasks.v2.CloudTasks/PauseQueue", compressed(
        tasks_v2.PauseQueueRequest.serialize(tasks_v2.PauseQueueRequest(name=queue)), wbits),
        **emulator_paused)
    assert raw.answer(1).status == 0

    raw.call(3, "/google.cloud.tasks.v2.CloudTasks/CreateTask", compressed(request, wbits),
             **emulator_paused)
    answer = raw.answer(3)

    assert answer.headers["grpc-encoding"] == encoding
    assert answer.data[0] == 1
    task = tasks_v2.Task.deserialize(zlib.decompress(answer.data[5:], wbits))
    assert task.http_request.body == b"compressible " * 500


def test_a_decompression_bomb_is_resource_exhausted_and_the_connection_serves_on(
    raw: RawClient, queue: str,
) -> None:
    bomb = compressed(b"\x00" * (64 * MIB), 31)  # ~65 KB on the wire
    assert len(bomb) < 100_000
    pieces = [bomb[i:i + 16_384] for i in range(0, len(bomb), 16_384)]
    raw.send(frame(HEADERS, END_HEADERS, 1, raw.headers_block(GET_QUEUE, **{
        "grpc-encoding": "gzip"})),
        *(frame(DATA, END_STREAM if i == len(pieces) - 1 else 0, 1, piece)
          for i, piece in enumerate(pieces)))
    raw.call(3, GET_QUEUE, compressed(b"\xff\xff not gzip", 15)[:9] + b"junk",
             **{"grpc-encoding": "deflate"})

    refused, corrupt = raw.answer(1), raw.answer(3)

    assert refused.status == 8
    assert "once decompressed" in refused.message
    assert corrupt.status == 13
    raw.call(5, GET_QUEUE, get_queue(queue))
    assert raw.answer(5).status == 0


def test_decompressing_a_bomb_holds_no_more_than_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (256 * MIB), compresslevel=1)
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge):
            decompress(b"gzip", bomb, 4 * MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 4 * MIB


# -- connections -------------------------------------------------------------------------------


def test_connections_over_the_cap_are_refused_at_once_and_idle_ones_closed(
    start_emulator: StartEmulator,
) -> None:
    """With --grpc-max-connections 2, connections are opened until one is refused: at most two
    are served, the next gets SETTINGS and GOAWAY(ENHANCE_YOUR_CALM) at once. The served ones,
    idle past --grpc-idle-timeout, go away; then a new connection is served."""
    emulator = start_emulator("-q", "--grpc-max-connections", "2", "--grpc-idle-timeout", "0.4")
    emulator.close_clients()  # its connection may still count a moment: hence the loop
    host, port = emulator.address.rsplit(":", 1)
    served: list[socket.socket] = []
    try:
        for _ in range(3):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
            received = sock.recv(65536)
            length = int.from_bytes(received[:3], "big")
            if received[3] == SETTINGS and received[9 + length + 3:9 + length + 4] == bytes(
                    [GOAWAY]):
                sock.close()
                goaway = received[9 + length:]
                break
            served.append(sock)
        else:
            raise AssertionError("three connections served; the cap is 2")
        assert 1 <= len(served) <= 2
        assert int.from_bytes(goaway[13:17], "big") == ENHANCE_YOUR_CALM
        assert b"at most 2 connections" in goaway[17:]

        for sock in served:  # idle: GOAWAY(NO_ERROR), then the server's half-close
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert bytes([GOAWAY]) + b"\x00" + u32(0) + u32(0) + u32(NO_ERROR) in data
    finally:
        for sock in served:
            sock.close()
    deadline = time.monotonic() + 10  # until the server has seen those closes: a moment
    while time.monotonic() < deadline:
        try:
            client = RawClient(emulator.address)
        except AssertionError:  # refused: SETTINGS, then GOAWAY for WINDOW_UPDATE
            time.sleep(0.02)
            continue
        try:
            client.call(1, GET_QUEUE, get_queue(f"{LOCATION}/queues/none"))
            assert client.answer(1).status == 5  # NOT_FOUND: served
        finally:
            client.close()
        break
    else:
        raise AssertionError("still refused 10 s after the others closed")


# -- log lines ---------------------------------------------------------------------------------


def test_repeated_lines_are_logged_once_then_counted_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limiter = RepeatLimiter(interval=10.0, clock=lambda: now[0])
    log = logging.getLogger("test.quiet")
    with caplog.at_level(logging.WARNING, "test.quiet"):
        for step in range(1_000):  # 1,000 lines over 25 s
            now[0] = step * 0.025
            limiter.log(log, logging.WARNING, "accept", "accept failed")
    assert [record.getMessage() for record in caplog.records] == [
        "accept failed",
        "accept failed (399 more like it in the last 10 s not logged)",
        "accept failed (399 more like it in the last 10 s not logged)",
    ]


def test_the_loop_handler_rate_limits_asyncios_own_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flood() -> None:
        loop = asyncio.get_running_loop()
        install_loop_handler(loop, RepeatLimiter(interval=60.0))
        error = OSError(24, "Too many open files")
        for _ in range(1_000):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": error})

    with caplog.at_level(logging.ERROR, "asyncio"):
        asyncio.run(flood())
    assert [record.getMessage() for record in caplog.records] == [
        "socket.accept() out of system resource"]


# -- h2spec ----------------------------------------------------------------------------------


def test_h2spec_passes_every_case(emulator: EmulatorProcess) -> None:
    """github.com/summerwind/h2spec, strict mode, against the gRPC port (build it with Go and
    put it on PATH to run this)."""
    binary = shutil.which("h2spec")
    if binary is None:
        pytest.skip("h2spec is not on PATH: build github.com/summerwind/h2spec to run this")
    host, port = emulator.address.rsplit(":", 1)
    result: Any = subprocess.run([binary, "-h", host, "-p", port, "--strict", "-o", "2"],
                                 capture_output=True, text=True, timeout=300, check=False)
    summary = result.stdout.strip().splitlines()[-1]
    assert ", 0 failed" in summary, result.stdout[-4000:]
