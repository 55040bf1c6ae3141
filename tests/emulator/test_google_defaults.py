"""The emulator process behaves as Google's service does where outside suites look: a task
for a queue nobody created is NOT_FOUND unless `--auto-create-queues` is given (the library's
`.delay()` creates its queue itself), and the Locations and IAM methods Google's clients
expose (gcloud calls them) answer over gRPC and REST."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from emulator_support import LOCATION, EmulatorProcess, StartEmulator, Target, http_task
from fastapi import APIRouter
from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks import DelayedRouteBuilder, emulator_client


@contextmanager
def rest_client(emulator: EmulatorProcess) -> Iterator[tasks_v2.CloudTasksClient]:
    client = emulator_client(emulator.address, transport="rest", http_port=emulator.http_port)
    try:
        yield client
    finally:
        client.transport.close()


def test_by_default_a_task_for_a_queue_nobody_created_is_not_found_and_creates_none(
    start_emulator: StartEmulator, target: Target, queue_name: str, prefix: str,
) -> None:
    emulator = start_emulator("-q")
    with rest_client(emulator) as rest:
        for client in (emulator.tasks_client(), rest):
            with pytest.raises(exceptions.NotFound, match="Queue does not exist"):
                client.create_task(parent=queue_name,
                                   task=http_task(target.url(f"{prefix}/x")))
            assert list(client.list_queues(parent=LOCATION)) == []


def test_by_default_delay_still_works_it_creates_its_queue_first(
    start_emulator: StartEmulator, target: Target, queue_name: str, prefix: str,
) -> None:
    emulator = start_emulator("-q")
    router = APIRouter(route_class=DelayedRouteBuilder(
        base_url=target.base_url, queue_path=queue_name, client=emulator.tasks_client()))

    @router.post(f"{prefix}/ping")
    def ping(n: int) -> None:
        """A task endpoint; its body runs in the worker, not here."""

    sent = ping.delay(n=1)

    assert sent.name.startswith(f"{queue_name}/tasks/")
    [delivery] = target.wait_under(prefix)
    assert delivery.query == "n=1"


def test_auto_create_queues_creates_the_queue_of_a_task(
    start_emulator: StartEmulator, target: Target, queue_name: str, prefix: str,
) -> None:
    emulator = start_emulator("--auto-create-queues", "-q")
    client = emulator.tasks_client()
    with pytest.raises(exceptions.InvalidArgument):  # refused: no queue is left behind
        client.create_task(parent=queue_name, task=http_task("ftp://worker.example.com/x"))
    assert list(client.list_queues(parent=LOCATION)) == []

    client.create_task(parent=queue_name, task=http_task(target.url(f"{prefix}/x")))

    assert client.get_queue(name=queue_name).state == tasks_v2.Queue.State.RUNNING
    target.wait_under(prefix)
