"""The emulator's gRPC surface (its own HTTP/2 server, `emulator/http2.py` + `grpc_server.py`)
through real gRPC clients on a loopback channel: raw byte-level calls on a `grpc` channel where
the request must be malformed, Google's own clients everywhere else.

What a real gRPC server answers is the expectation: UNIMPLEMENTED for a method nobody serves,
INVALID_ARGUMENT for a message that does not parse, RESOURCE_EXHAUSTED over grpc's 4 MiB default
limit; and the connection keeps serving after each. Every call has a deadline; tasks go to
paused queues, so nothing is ever delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from emulator_support import LOCATION, EmulatorProcess, http_task
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from fastapi_cloud_tasks import emulator_async_client

TIMEOUT = 10.0  # seconds: the deadline of every call
TASKS_API = "/google.cloud.tasks.v2.CloudTasks"
NOWHERE = "http://127.0.0.1:9/never"  # tasks here sit on paused queues: never delivered
GRPC_LIMIT = 4 * 1024 * 1024  # grpc's default largest message a server receives
NOT_FOUND = "Requested entity was not found."
TOO_LARGE = f"The request is larger than {GRPC_LIMIT} bytes, the most this server receives."
# A client that grants the server 64 KiB windows (stream and connection) and never raises them.
# grpc's C core otherwise advertises 4 MiB windows and 4 MiB frames at once (seen in its SETTINGS
# on the wire), and a 1 MiB answer would go out whole, in one DATA frame.
SMALL_WINDOWS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65_535)]


@contextlib.contextmanager
def open_channel(address: str, **options: Any) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(address, **options)
    try:
        yield channel
    finally:
        channel.close()


@pytest.fixture
def channel(emulator: EmulatorProcess) -> Iterator[grpc.Channel]:
    """A raw channel: requests go out as the bytes given, answers come back as bytes."""
    with open_channel(emulator.address) as opened:
        yield opened


@pytest.fixture
def paused_queue(tasks: tasks_v2.CloudTasksClient, queue_name: str) -> Iterator[str]:
    """A queue of this test's, paused (its tasks stay listed); deleted with its tasks after."""
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name), timeout=TIMEOUT)
    tasks.pause_queue(name=queue_name, timeout=TIMEOUT)
    yield queue_name
    tasks.delete_queue(name=queue_name, timeout=TIMEOUT)


def call(channel: grpc.Channel, path: str, request: bytes, **options: Any) -> bytes:
    """One unary call of `path` with `request` as the message, unserialized both ways."""
    answer: bytes = channel.unary_unary(path)(request, timeout=TIMEOUT, **options)
    return answer


def failure(channel: grpc.Channel, path: str, request: bytes,
            **options: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, path, request, **options)
    error: Any = raised.value
    return error.code(), error.details()


def get_queue(name: str) -> bytes:
    message: bytes = tasks_v2.GetQueueRequest.serialize(tasks_v2.GetQueueRequest(name=name))
    return message


def create_task(queue: str, body: bytes = b"", *, size: int | None = None) -> bytes:
    """A serialized CreateTaskRequest; with `size`, its body padded so it is `size` bytes."""
    def serialized(body: bytes) -> bytes:
        request = tasks_v2.CreateTaskRequest(parent=queue, task=http_task(NOWHERE, body=body))
        message: bytes = tasks_v2.CreateTaskRequest.serialize(request)
        return message

    message = serialized(body)
    while size is not None and len(message) != size:  # length prefixes may grow a byte
        body = b"x" * (len(body) + size - len(message))
        message = serialized(body)
    return message


def gzip_shrinks(message: bytes) -> bool:
    """Whether grpc's C core sends `message` compressed on a gzip channel: only if gzip at
    zlib's default level makes it smaller (message_compress.cc); else it goes as it is."""
    packer = zlib.compressobj(wbits=31)  # 31: the gzip container
    return len(packer.compress(message) + packer.flush()) < len(message)


def names_in(tasks: tasks_v2.CloudTasksClient, queue: str) -> set[str]:
    return {task.name for task in tasks.list_tasks(parent=queue, timeout=TIMEOUT)}


# -- what the server does not serve or cannot read -------------------------------------------


def test_unknown_method_or_service_is_unimplemented_and_the_channel_keeps_serving(
    channel: grpc.Channel, paused_queue: str
) -> None:
    """A path nobody serves is UNIMPLEMENTED naming it; the same connection then answers a
    real call, and an engine error keeps its code and message."""
    for path in (f"{TASKS_API}/NoSuchMethod", "/no.such.v1.Service/GetQueue"):
        assert failure(channel, path, get_queue(paused_queue)) == (
            grpc.StatusCode.UNIMPLEMENTED, f"The emulator does not serve the method {path}."
        )

    queue = tasks_v2.Queue.deserialize(call(channel, f"{TASKS_API}/GetQueue",
                                            get_queue(paused_queue)))
    assert (queue.name, queue.state) == (paused_queue, tasks_v2.Queue.State.PAUSED)
    assert failure(channel, f"{TASKS_API}/GetQueue", get_queue(f"{paused_queue}-missing")) == (
        grpc.StatusCode.NOT_FOUND, NOT_FOUND
    )


def test_bytes_that_are_not_the_request_type_are_invalid_argument(
    channel: grpc.Channel, tasks: tasks_v2.CloudTasksClient, paused_queue: str
) -> None:
    """A message that does not parse as the RPC's request is INVALID_ARGUMENT naming the
    request type; the same connection then creates a task."""
    code, details = failure(channel, f"{TASKS_API}/CreateTask", b"\xff\xff\xff")

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("CreateTask: the request is not a CreateTaskRequest (")
    created = tasks_v2.Task.deserialize(call(channel, f"{TASKS_API}/CreateTask",
                                             create_task(paused_queue, b"after")))
    assert names_in(tasks, paused_queue) == {created.name}


# -- message size ------------------------------------------------------------------------


def test_request_over_4_mib_is_resource_exhausted_creates_nothing_and_the_client_goes_on(
    tasks: tasks_v2.CloudTasksClient, paused_queue: str
) -> None:
    """Google's client sends a 5 MiB CreateTask: RESOURCE_EXHAUSTED (before the engine sees
    it), nothing is created, and the next call on the same client succeeds."""
    huge = http_task(NOWHERE, body=b"x" * (5 * 1024 * 1024))

    with pytest.raises(exceptions.ResourceExhausted, match=TOO_LARGE):
        tasks.create_task(parent=paused_queue, task=huge, timeout=TIMEOUT)

    assert names_in(tasks, paused_queue) == set()
    created = tasks.create_task(parent=paused_queue, task=http_task(NOWHERE, body=b"small"),
                                timeout=TIMEOUT)
    assert names_in(tasks, paused_queue) == {created.name}


def test_the_size_limit_is_grpcs_4_mib_to_the_byte(
    channel: grpc.Channel, tasks: tasks_v2.CloudTasksClient, paused_queue: str
) -> None:
    """A message of exactly 4 MiB reaches the engine (which refuses a task over 1 MiB); one
    byte more is RESOURCE_EXHAUSTED, as from a grpc server with default settings."""
    path = f"{TASKS_API}/CreateTask"

    assert failure(channel, path, create_task(paused_queue, size=GRPC_LIMIT)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Task size exceeds the maximum of 1 MiB."
    )
    assert failure(channel, path, create_task(paused_queue, size=GRPC_LIMIT + 1)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, TOO_LARGE
    )
    assert names_in(tasks, paused_queue) == set()


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate],
                         ids=["gzip", "deflate"])
def test_google_client_on_a_compressing_channel_creates_and_reads_large_tasks(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, paused_queue: str,
    compression: grpc.Compression,
) -> None:
    """grpc's C core compresses a message on such a channel once compression makes it smaller
    (a 10 KB body of text does): Google's client creates the task, and reads it back whole in
    the FULL view, its answer compressed alike; one of random bytes goes uncompressed."""
    text = b"Cloud Tasks body " * 600  # ~10 KB that gzip shrinks
    noise = random.Random(0).randbytes(10_000)
    assert gzip_shrinks(create_task(paused_queue, text))
    assert not gzip_shrinks(create_task(paused_queue, noise))
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(
        channel=grpc.insecure_channel(emulator.address, compression=compression)))
    try:
        created = [client.create_task(parent=paused_queue, task=http_task(NOWHERE, body=body),
                                      timeout=TIMEOUT) for body in (text, noise)]
        got = [client.get_task(request={"name": task.name,
                                        "response_view": tasks_v2.Task.View.FULL},
                               timeout=TIMEOUT) for task in created]
    finally:
        client.transport.close()

    assert [task.http_request.body for task in got] == [text, noise]
    assert names_in(tasks, paused_queue) == {task.name for task in created}


# -- flow control, header blocks, multiplexing -------------------------------------------------


def full_listing(client: tasks_v2.CloudTasksClient, queue: str) -> dict[str, bytes]:
    """Each task's body, from ONE list_tasks page in the FULL view (asserted over 1 MiB)."""
    pager = client.list_tasks(request={"parent": queue, "page_size": 1000,
                                       "response_view": tasks_v2.Task.View.FULL},
                              timeout=TIMEOUT)
    [page] = list(pager.pages)
    assert tasks_v2.ListTasksResponse.pb(page).ByteSize() > 1024 * 1024
    return {task.name: task.http_request.body for task in page.tasks}


def test_a_page_over_1_mib_arrives_whole_through_small_and_large_windows(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, paused_queue: str
) -> None:
    """600 tasks of 2 KiB bodies, listed in the FULL view: one ~1.4 MB answer. Through a client
    granting 64 KiB windows the server must hold its DATA back ~20 times and resume on each
    WINDOW_UPDATE; every task and every byte of its body comes back, in either client."""
    bodies: dict[str, bytes] = {}
    for batch in range(6):  # BatchCreateTasks takes 1 to 100 tasks
        wanted = [random.Random(batch * 100 + i).randbytes(2048) for i in range(100)]
        operation = tasks.batch_create_tasks(parent=paused_queue, requests=[
            tasks_v2.CreateTaskRequest(parent=paused_queue, task=http_task(NOWHERE, body=body))
            for body in wanted
        ], timeout=TIMEOUT)
        created = operation.result(timeout=TIMEOUT).tasks
        bodies.update(zip((task.name for task in created), wanted, strict=True))
    assert len(bodies) == 600

    small = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(
        channel=grpc.insecure_channel(emulator.address, options=SMALL_WINDOWS)))
    try:
        assert full_listing(small, paused_queue) == bodies
        assert full_listing(small, paused_queue) == bodies  # the windows reopened after
    finally:
        small.transport.close()
    assert full_listing(tasks, paused_queue) == bodies


def test_large_metadata_is_served_and_metadata_over_the_header_list_limit_is_refused(
    emulator: EmulatorProcess, channel: grpc.Channel, paused_queue: str
) -> None:
    """A 40,000-byte metadata value (at least 25,000 bytes even Huffman-coded, so the client
    must split the block into HEADERS + CONTINUATION: the server takes no frame over 16 KiB)
    is served, again and again. A 70,000-byte one is over the 64 KiB header list the server
    advertises: grpc's client sends it anyway, and that call alone is RESOURCE_EXHAUSTED (not
    retried by Google's clients); the connection serves on."""
    path = f"{TASKS_API}/GetQueue"
    request = get_queue(paused_queue)
    for _ in range(2):  # the decoder's state is intact after such a block
        assert call(channel, path, request, metadata=[("x-padding", "a" * 40_000)])
        assert call(channel, path, request)

    code, details = failure(channel, path, request, metadata=[("x-padding", "a" * 70_000)])

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == ("The request's metadata is larger than 65536 bytes, the most this "
                       "server receives.")
    assert tasks_v2.Queue.deserialize(call(channel, path, request)).name == paused_queue
    assert emulator.alive()


CONCURRENT = 300


def test_concurrent_calls_on_one_connection_each_get_their_own_answer(
    emulator: EmulatorProcess, tasks: tasks_v2.CloudTasksClient, paused_queue: str
) -> None:
    """Google's asyncio client makes 300 calls at once (get_queue and create_task, alternating)
    on its one connection: every answer is the one for its own call."""
    async def burst() -> list[Any]:
        client = emulator_async_client(emulator.address)
        try:
            return await asyncio.gather(*(
                client.create_task(parent=paused_queue, task=http_task(f"{NOWHERE}/{i}"),
                                   timeout=TIMEOUT)
                if i % 2 else client.get_queue(name=paused_queue, timeout=TIMEOUT)
                for i in range(CONCURRENT)
            ))
        finally:
            await client.transport.close()

    answers = asyncio.run(burst())

    queues, created = answers[0::2], answers[1::2]
    assert {(queue.name, queue.state) for queue in queues} == {
        (paused_queue, tasks_v2.Queue.State.PAUSED)
    }
    assert [task.http_request.url for task in created] == [
        f"{NOWHERE}/{i}" for i in range(1, CONCURRENT, 2)
    ]
    names = {task.name for task in created}
    assert len(names) == CONCURRENT // 2
    assert names_in(tasks, paused_queue) == names
