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
from google.cloud import scheduler_v1, tasks_v2
from google.cloud.location import locations_pb2
from google.iam.v1 import policy_pb2

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


# -- Locations and IAM, over gRPC and REST -----------------------------------------------------


def test_locations_answer_both_clients_over_grpc_and_rest(
    emulator: EmulatorProcess, target: Target, queue_name: str, ident: str,
    tasks_over: tasks_v2.CloudTasksClient, scheduler_over: scheduler_v1.CloudSchedulerClient,
) -> None:
    project = LOCATION.rsplit("/locations/", 1)[0]
    other = f"{project}/locations/{ident[-8:]}-west1"
    tasks_over.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    job = scheduler_over.create_job(parent=other, job=scheduler_v1.Job(
        schedule="0 0 1 1 *", http_target=scheduler_v1.HttpTarget(uri=target.url("/never"))))
    try:
        for client in (tasks_over, scheduler_over):
            listed = client.list_locations(locations_pb2.ListLocationsRequest(name=project))
            names = [location.name for location in listed.locations]
            assert LOCATION in names  # the queue's
            assert other in names  # the job's
            got = client.get_location(locations_pb2.GetLocationRequest(name=other))
            assert (got.name, got.location_id) == (other, other.rsplit("/", 1)[1])
        with pytest.raises(exceptions.BadRequest):  # InvalidArgument over gRPC
            tasks_over.list_locations(locations_pb2.ListLocationsRequest(
                name=project, filter="displayName=tokyo"))
    finally:
        scheduler_over.delete_job(name=job.name)


def test_iam_policy_is_stored_per_queue_over_grpc_and_rest(
    tasks_over: tasks_v2.CloudTasksClient, queue_name: str,
) -> None:
    tasks_over.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=queue_name))
    empty = tasks_over.get_iam_policy(request={"resource": queue_name})
    binding = policy_pb2.Binding(role="roles/cloudtasks.enqueuer", members=["user:a@example.com"])

    stored = tasks_over.set_iam_policy(request={"resource": queue_name, "policy": policy_pb2.Policy(
        bindings=[binding], etag=empty.etag)})

    assert list(stored.bindings) == [binding]
    assert tasks_over.get_iam_policy(request={"resource": queue_name}) == stored
    with pytest.raises(exceptions.Conflict):  # ABORTED over gRPC, 409 over REST
        tasks_over.set_iam_policy(request={"resource": queue_name, "policy": policy_pb2.Policy(
            bindings=[], etag=empty.etag)})
    asked = ["cloudtasks.tasks.create", "cloudtasks.queues.update"]
    granted = tasks_over.test_iam_permissions(request={"resource": queue_name,
                                                       "permissions": asked})
    assert list(granted.permissions) == asked
    with pytest.raises(exceptions.NotFound):
        tasks_over.get_iam_policy(request={"resource": f"{queue_name}-missing"})
