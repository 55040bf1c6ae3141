"""The emulator on a virtual clock: proving that nothing is sent, without sleeping.

An in-process `Emulator` built on a `VirtualClock` serves Google's real clients over gRPC and
REST from its own event-loop thread and delivers over real HTTP to a recording worker. Time
moves only when a test calls `settle(advance)`, which then waits (real time, bounded) until the
dispatcher has looked at the new time and every attempt it started has been answered. "Nothing
more arrives" is then a fact about the emulator's decisions, not a bet on a sleep being long
enough. The real-clock end-to-end check stays in test_emulator.py (a paused queue).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from emulator_support import LOCATION, Target, ThreadedServer, http_task
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks import emulator_client, emulator_scheduler_client
from fastapi_cloud_tasks.emulator.server import Emulator
from fastapi_cloud_tasks.engine.clock import VirtualClock

T = TypeVar("T")
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)  # a Monday, far from Jan 1
FAR_FUTURE = "0 0 1 1 *"
SETTLE_ROUNDS = 50  # dispatcher looks per settle() at most: a task keeps retrying at once?


class VirtualEmulator:
    """An `Emulator` on a `VirtualClock`, serving from a daemon thread's event loop."""

    def __init__(self) -> None:
        self.clock = VirtualClock(START)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="virtual-emulator")
        self._thread.start()
        self.emulator = Emulator("127.0.0.1", 0, clock=self.clock)
        self.call(self.emulator.start())

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def settle(self, advance: timedelta = timedelta(0)) -> None:
        """Move the clock by `advance`, then return once a look of the dispatcher's, begun
        after the move and after every answer, started nothing."""
        self.clock.advance(advance)
        for _ in range(SETTLE_ROUNDS):
            if self.call(self._quiet_look()):
                return
        raise AssertionError(f"still delivering after {SETTLE_ROUNDS} looks")

    async def _quiet_look(self) -> bool:
        dispatcher = self.emulator.dispatcher
        delivered, looked = dispatcher.delivered, dispatcher.rounds
        dispatcher.wake()
        deadline = time.monotonic() + 10.0
        while dispatcher.rounds == looked or dispatcher.in_flight:
            if time.monotonic() > deadline:
                raise AssertionError("the dispatcher did not look, or an attempt hung, in 10 s")
            await asyncio.sleep(0.002)
        return dispatcher.delivered == delivered

    def tasks_client(self, transport: str) -> tasks_v2.CloudTasksClient:
        address = f"127.0.0.1:{self.emulator.port}"
        if transport == "rest":
            return emulator_client(address, transport="rest", http_port=self.emulator.http_port)
        return emulator_client(address)

    def stop(self) -> None:
        self.call(self.emulator.stop(grace=1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[Target]:
    target = Target(certs_url="http://127.0.0.1:9/unused")
    server = ThreadedServer(target)
    server.start()
    yield target
    server.stop()


@pytest.fixture
def virtual() -> Iterator[VirtualEmulator]:
    emulator = VirtualEmulator()
    yield emulator
    emulator.stop()


@pytest.fixture(params=["grpc", "rest"])
def tasks(request: pytest.FixtureRequest, virtual: VirtualEmulator,
          ) -> Iterator[tasks_v2.CloudTasksClient]:
    client = virtual.tasks_client(request.param)
    yield client
    client.transport.close()


def make_queue(tasks: tasks_v2.CloudTasksClient, name: str, **settings: Any) -> tasks_v2.Queue:
    return tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name, **settings))


def test_task_is_retried_at_its_backoff_and_dropped_after_max_attempts(
    virtual: VirtualEmulator, tasks: tasks_v2.CloudTasksClient, worker: Target,
    queue_name: str, prefix: str,
) -> None:
    make_queue(tasks, queue_name, retry_config=tasks_v2.RetryConfig(
        max_attempts=3, min_backoff=timedelta(seconds=0.1), max_backoff=timedelta(seconds=1)))
    created = tasks.create_task(parent=queue_name,
                                task=http_task(worker.url(f"{prefix}/broken?status=500")))
    attempts = []
    # Backoff 0.1 s after the first failure, then doubled: nothing a moment before it.
    for step in (0, 0.099, 0.001, 0.199, 0.001):
        virtual.settle(timedelta(seconds=step))
        attempts.append(len(worker.under(prefix)))

    virtual.settle(timedelta(hours=1))  # a fourth attempt would be due long before

    assert attempts == [1, 1, 2, 2, 3]
    deliveries = worker.under(prefix)
    assert [d.retry_count for d in deliveries] == [0, 1, 2]
    with pytest.raises(exceptions.NotFound):
        tasks.get_task(name=created.name)


def test_paused_queue_sends_nothing_however_long_it_waits(
    virtual: VirtualEmulator, tasks: tasks_v2.CloudTasksClient, worker: Target,
    queue_name: str, prefix: str,
) -> None:
    make_queue(tasks, queue_name)
    tasks.pause_queue(name=queue_name)
    tasks.create_task(parent=queue_name, task=http_task(worker.url(f"{prefix}/held")))

    virtual.settle(timedelta(days=2))

    assert worker.under(prefix) == []
    assert len(list(tasks.list_tasks(parent=queue_name))) == 1
    tasks.resume_queue(name=queue_name)
    virtual.settle()
    assert [d.path for d in worker.under(prefix)] == [f"{prefix}/held"]


def test_purged_and_deleted_tasks_are_never_sent(
    virtual: VirtualEmulator, tasks: tasks_v2.CloudTasksClient, worker: Target,
    queue_name: str, prefix: str,
) -> None:
    make_queue(tasks, queue_name)
    tasks.pause_queue(name=queue_name)
    for i in range(3):
        tasks.create_task(parent=queue_name, task=http_task(worker.url(f"{prefix}/purged/{i}")))
    tasks.purge_queue(name=queue_name)
    kept = tasks.create_task(parent=queue_name, task=http_task(worker.url(f"{prefix}/kept")))
    deleted = tasks.create_task(parent=queue_name,
                                task=http_task(worker.url(f"{prefix}/deleted")))
    tasks.delete_task(name=deleted.name)

    tasks.resume_queue(name=queue_name)
    virtual.settle(timedelta(hours=1))

    assert [d.task_name for d in worker.under(prefix)] == [kept.name.rsplit("/", 1)[1]]


def test_a_failed_job_run_is_retried_at_its_backoff_with_the_same_schedule_time(
    virtual: VirtualEmulator, worker: Target, ident: str, prefix: str,
) -> None:
    scheduler = emulator_scheduler_client(f"127.0.0.1:{virtual.emulator.port}")
    name = f"{LOCATION}/jobs/{ident}"
    scheduler.create_job(parent=LOCATION, job=scheduler_v1.Job(
        name=name, schedule=FAR_FUTURE,
        http_target=scheduler_v1.HttpTarget(uri=worker.url(f"{prefix}/flaky?status=503,500,200")),
        retry_config=scheduler_v1.RetryConfig(
            retry_count=2, min_backoff_duration=timedelta(seconds=0.2),
            max_backoff_duration=timedelta(seconds=5))))

    scheduler.run_job(name=name)
    attempts = []
    for step in (0, 0.199, 0.001, 0.399, 0.001):
        virtual.settle(timedelta(seconds=step))
        attempts.append(len(worker.under(prefix)))
    virtual.settle(timedelta(days=1))  # no fourth attempt: the run succeeded

    assert attempts == [1, 1, 2, 2, 3]
    deliveries = worker.under(prefix)
    assert [d.status for d in deliveries] == [503, 500, 200]
    assert {d.headers["x-cloudscheduler-scheduletime"] for d in deliveries} == {
        START.isoformat()
    }
    assert scheduler.get_job(name=name).status.code == 0
    scheduler.transport.close()
