"""The Locations and IAM methods of Google's real clients (gcloud calls them) against the
engines in memory: locations in use, one IAM policy per queue with IAM's etag rule."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from fastapi_cloud_tasks.engine.clock import VirtualClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine
from fastapi_cloud_tasks.engine.transports import scheduler_client, tasks_client

PROJECT = "projects/test-project"
QUEUE = f"{PROJECT}/locations/asia-south1/queues/q"
READER = policy_pb2.Binding(role="roles/cloudtasks.viewer", members=["user:a@example.com"])
ENQUEUER = policy_pb2.Binding(role="roles/cloudtasks.enqueuer",
                              members=["serviceAccount:sa@test-project.iam.gserviceaccount.com"])


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(datetime(2026, 4, 1, tzinfo=timezone.utc))


@pytest.fixture
def tasks(clock: VirtualClock) -> tasks_v2.CloudTasksClient:
    return tasks_client(CloudTasksEngine(clock))


def make_queue(tasks: tasks_v2.CloudTasksClient, name: str = QUEUE) -> None:
    tasks.create_queue(parent=name.rsplit("/queues/", 1)[0], queue=tasks_v2.Queue(name=name))


def test_list_locations_gives_the_projects_locations_in_use(
    tasks: tasks_v2.CloudTasksClient,
) -> None:
    make_queue(tasks)
    make_queue(tasks, f"{PROJECT}/locations/europe-west1/queues/q")
    make_queue(tasks, f"{PROJECT}/locations/asia-south1/queues/other")
    make_queue(tasks, "projects/elsewhere/locations/us-east1/queues/q")

    listed = tasks.list_locations(locations_pb2.ListLocationsRequest(name=PROJECT))

    assert [(loc.name, loc.location_id) for loc in listed.locations] == [
        (f"{PROJECT}/locations/asia-south1", "asia-south1"),
        (f"{PROJECT}/locations/europe-west1", "europe-west1")]
    got = tasks.get_location(locations_pb2.GetLocationRequest(
        name=f"{PROJECT}/locations/us-central1"))
    assert got.location_id == "us-central1"


def test_scheduler_client_lists_the_locations_of_its_jobs(clock: VirtualClock) -> None:
    scheduler = scheduler_client(CloudSchedulerEngine(clock))
    scheduler.create_job(parent=f"{PROJECT}/locations/europe-west1", job=scheduler_v1.Job(
        schedule="0 * * * *", http_target=scheduler_v1.HttpTarget(uri="https://w.example/")))
    listed = scheduler.list_locations(locations_pb2.ListLocationsRequest(name=PROJECT))
    assert [loc.location_id for loc in listed.locations] == ["europe-west1"]


@pytest.mark.parametrize("request_", [
    locations_pb2.ListLocationsRequest(name="projects/p/locations/l"),
    locations_pb2.ListLocationsRequest(name=PROJECT, filter="displayName=tokyo"),
])
def test_a_bad_list_locations_request_is_invalid_argument(
    tasks: tasks_v2.CloudTasksClient, request_: locations_pb2.ListLocationsRequest,
) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        tasks.list_locations(request_)


def test_a_queues_policy_is_kept_and_its_etag_guards_concurrent_changes(
    tasks: tasks_v2.CloudTasksClient,
) -> None:
    make_queue(tasks)
    empty = tasks.get_iam_policy(request={"resource": QUEUE})
    assert list(empty.bindings) == []
    assert empty.etag

    first = tasks.set_iam_policy(request={"resource": QUEUE, "policy": policy_pb2.Policy(
        bindings=[READER], etag=empty.etag)})
    assert list(first.bindings) == [READER]
    assert first.etag != empty.etag
    assert tasks.get_iam_policy(request={"resource": QUEUE}) == first

    # A writer still holding the old etag loses: IAM answers ABORTED.
    with pytest.raises(exceptions.Aborted):
        tasks.set_iam_policy(request={"resource": QUEUE, "policy": policy_pb2.Policy(
            bindings=[ENQUEUER], etag=empty.etag)})
    # Without an etag the policy is overwritten.
    blind = tasks.set_iam_policy(request={"resource": QUEUE, "policy": policy_pb2.Policy(
        bindings=[ENQUEUER])})
    assert list(blind.bindings) == [ENQUEUER]


def test_a_deleted_queues_policy_goes_with_it(tasks: tasks_v2.CloudTasksClient) -> None:
    make_queue(tasks)
    tasks.set_iam_policy(request={"resource": QUEUE, "policy": policy_pb2.Policy(
        bindings=[READER])})
    tasks.delete_queue(name=QUEUE)
    with pytest.raises(exceptions.NotFound):
        tasks.get_iam_policy(request={"resource": QUEUE})


def test_test_iam_permissions_grants_what_is_asked(tasks: tasks_v2.CloudTasksClient) -> None:
    make_queue(tasks)
    asked = ["cloudtasks.tasks.create", "cloudtasks.queues.get"]
    answer = tasks.test_iam_permissions(request=iam_policy_pb2.TestIamPermissionsRequest(
        resource=QUEUE, permissions=asked))
    assert list(answer.permissions) == asked
    with pytest.raises(exceptions.InvalidArgument, match="wildcards"):
        tasks.test_iam_permissions(request={"resource": QUEUE, "permissions": ["cloudtasks.*"]})


def test_iam_on_a_missing_queue_is_not_found(tasks: tasks_v2.CloudTasksClient) -> None:
    for call in (lambda: tasks.get_iam_policy(request={"resource": QUEUE}),
                 lambda: tasks.set_iam_policy(request={"resource": QUEUE, "policy": {}}),
                 lambda: tasks.test_iam_permissions(request={
                     "resource": QUEUE, "permissions": ["cloudtasks.queues.get"]})):
        with pytest.raises(exceptions.NotFound):
            call()
