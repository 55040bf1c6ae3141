"""The in-memory transports, exercised through Google's real client classes and proto types."""

from __future__ import annotations

import asyncio
from typing import Any

import google.auth
import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks.engine.transports import (
    InMemoryCloudSchedulerAsyncTransport,
    InMemoryCloudSchedulerTransport,
    InMemoryCloudTasksAsyncTransport,
    InMemoryCloudTasksTransport,
    scheduler_async_client,
    scheduler_client,
    tasks_async_client,
    tasks_client,
)

QUEUE = "projects/p/locations/l/queues/q"
LOCATION = "projects/p/locations/l"


class RecordingTasks:
    """Records every request; lists its tasks two per page."""

    def __init__(self, task_count: int = 3) -> None:
        self.requests: list[Any] = []
        self.tasks = [tasks_v2.Task(name=f"{QUEUE}/tasks/t{i}") for i in range(task_count)]

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        self.requests.append(request)
        return tasks_v2.Task(name=f"{request.parent}/tasks/created")

    def get_task(self, request: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
        self.requests.append(request)
        return tasks_v2.Task(name=request.name)

    def list_tasks(self, request: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
        self.requests.append(request.page_token)
        start = int(request.page_token or 0)
        end = start + 2
        token = str(end) if end < len(self.tasks) else ""
        return tasks_v2.ListTasksResponse(tasks=self.tasks[start:end], next_page_token=token)


class DictScheduler:
    """A tiny Cloud Scheduler keeping jobs in a dict, enough for a CRUD round trip."""

    def __init__(self) -> None:
        self.jobs: dict[str, scheduler_v1.Job] = {}

    def create_job(self, request: scheduler_v1.CreateJobRequest) -> scheduler_v1.Job:
        if request.job.name in self.jobs:
            raise exceptions.AlreadyExists(request.job.name)
        self.jobs[request.job.name] = request.job
        return request.job

    def get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job:
        if request.name not in self.jobs:
            raise exceptions.NotFound(request.name)
        return self.jobs[request.name]

    def update_job(self, request: scheduler_v1.UpdateJobRequest) -> scheduler_v1.Job:
        job = self.get_job(scheduler_v1.GetJobRequest(name=request.job.name))
        for path in request.update_mask.paths:
            setattr(job, path, getattr(request.job, path))
        return job

    def delete_job(self, request: scheduler_v1.DeleteJobRequest) -> None:
        self.get_job(scheduler_v1.GetJobRequest(name=request.name))
        del self.jobs[request.name]


def new_job(name: str = f"{LOCATION}/jobs/j") -> scheduler_v1.Job:
    return scheduler_v1.Job(
        name=name,
        schedule="* * * * *",
        http_target=scheduler_v1.HttpTarget(uri="https://example.com/run"),
    )


def test_create_task_hands_the_request_to_the_service_and_returns_its_response() -> None:
    service = RecordingTasks()
    request = tasks_v2.CreateTaskRequest(
        parent=QUEUE,
        task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="https://example.com/t")),
    )

    task = tasks_client(service).create_task(request=request, timeout=5.0)

    assert task == tasks_v2.Task(name=f"{QUEUE}/tasks/created")
    [received] = service.requests
    assert isinstance(received, tasks_v2.CreateTaskRequest)
    assert received == request


def test_flattened_arguments_are_turned_into_a_request_by_the_real_client() -> None:
    service = RecordingTasks()

    tasks_client(service).create_task(parent=QUEUE, task=tasks_v2.Task(name=f"{QUEUE}/tasks/x"))

    assert service.requests == [
        tasks_v2.CreateTaskRequest(parent=QUEUE, task=tasks_v2.Task(name=f"{QUEUE}/tasks/x"))
    ]


def test_service_errors_reach_the_caller_unchanged() -> None:
    error = exceptions.NotFound("x")

    class Failing:
        def get_task(self, request: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
            raise error

    with pytest.raises(exceptions.NotFound) as excinfo:
        tasks_client(Failing()).get_task(name=f"{QUEUE}/tasks/t")
    assert excinfo.value is error


def test_transient_errors_are_not_retried_by_default() -> None:
    calls = []

    class Unavailable:
        def get_task(self, request: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
            calls.append(request)
            raise exceptions.ServiceUnavailable("down")

    with pytest.raises(exceptions.ServiceUnavailable):
        tasks_client(Unavailable()).get_task(name=f"{QUEUE}/tasks/t")
    assert len(calls) == 1


def test_a_missing_service_method_raises_method_not_implemented_naming_the_rpc() -> None:
    with pytest.raises(exceptions.MethodNotImplemented, match=r"CloudTasks\.PurgeQueue"):
        tasks_client(object()).purge_queue(name=QUEUE)
    with pytest.raises(exceptions.MethodNotImplemented, match=r"CloudScheduler\.RunJob"):
        scheduler_client(object()).run_job(name=f"{LOCATION}/jobs/j")


def test_list_tasks_pages_through_next_page_token() -> None:
    service = RecordingTasks(task_count=3)

    names = [task.name for task in tasks_client(service).list_tasks(parent=QUEUE)]

    assert names == [task.name for task in service.tasks]
    assert service.requests == ["", "2"]


def test_async_tasks_client_awaits_rpcs_and_pages() -> None:
    service = RecordingTasks(task_count=3)

    async def scenario() -> tuple[tasks_v2.Task, tasks_v2.Task, list[str]]:
        async with tasks_async_client(service) as client:
            created = await client.create_task(parent=QUEUE, task=tasks_v2.Task(), timeout=5.0)
            fetched = await client.get_task(name=created.name)
            pager = await client.list_tasks(parent=QUEUE)
            return created, fetched, [task.name async for task in pager]

    created, fetched, names = asyncio.run(scenario())

    assert created.name == fetched.name == f"{QUEUE}/tasks/created"
    assert names == [task.name for task in service.tasks]
    assert service.requests[-2:] == ["", "2"]


def test_async_client_surfaces_service_errors() -> None:
    async def scenario() -> None:
        await tasks_async_client(object()).get_task(name=f"{QUEUE}/tasks/t")

    with pytest.raises(exceptions.MethodNotImplemented, match=r"CloudTasks\.GetTask"):
        asyncio.run(scenario())


def test_scheduler_round_trip() -> None:
    client = scheduler_client(DictScheduler())
    job = new_job()

    assert client.create_job(parent=LOCATION, job=job) == job
    with pytest.raises(exceptions.AlreadyExists):
        client.create_job(parent=LOCATION, job=job)
    assert client.get_job(name=job.name) == job
    updated = client.update_job(
        job=scheduler_v1.Job(name=job.name, schedule="0 * * * *"),
        update_mask={"paths": ["schedule"]},
    )
    assert updated.schedule == "0 * * * *"
    assert updated.http_target.uri == "https://example.com/run"
    client.delete_job(name=job.name)
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=job.name)


def test_async_scheduler_round_trip() -> None:
    job = new_job()

    async def scenario() -> None:
        client = scheduler_async_client(DictScheduler())
        assert await client.create_job(parent=LOCATION, job=job) == job
        assert await client.get_job(name=job.name) == job
        updated = await client.update_job(
            job=scheduler_v1.Job(name=job.name, schedule="0 * * * *"),
            update_mask={"paths": ["schedule"]},
        )
        assert updated.schedule == "0 * * * *"
        await client.delete_job(name=job.name)
        with pytest.raises(exceptions.NotFound):
            await client.get_job(name=job.name)

    asyncio.run(scenario())


def test_no_credentials_are_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_default(*args: object, **kwargs: object) -> object:
        raise AssertionError("google.auth.default() must not be called")

    monkeypatch.setattr(google.auth, "default", no_default)

    service = DictScheduler()
    sync_scheduler = scheduler_client(service)
    kinds = [
        tasks_client(RecordingTasks()).transport.kind,
        tasks_async_client(RecordingTasks()).transport.kind,
        sync_scheduler.transport.kind,
        scheduler_async_client(service).transport.kind,
    ]

    assert kinds == ["in-memory"] * 4
    assert sync_scheduler.create_job(parent=LOCATION, job=new_job()).name == new_job().name


@pytest.mark.parametrize(
    "transport_class",
    [
        InMemoryCloudTasksTransport,
        InMemoryCloudTasksAsyncTransport,
        InMemoryCloudSchedulerTransport,
        InMemoryCloudSchedulerAsyncTransport,
    ],
)
def test_every_declared_rpc_is_stable_and_wrapped(transport_class: type[Any]) -> None:
    transport = transport_class(object())
    base = transport_class.__bases__[-1]
    rpcs = [name for name, value in vars(base).items() if isinstance(value, property)]
    rpcs = [name for name in rpcs if name not in {"host", "kind", "operations_client"}]

    assert {"get_location", "list_locations"} <= set(rpcs)
    assert len(transport._wrapped_methods) == 0  # wrapped on first use, not up front
    for name in rpcs:
        assert getattr(transport, name) is getattr(transport, name)
        assert callable(transport._wrapped_methods[getattr(transport, name)])
    assert len(transport._wrapped_methods) == len(rpcs)
    with pytest.raises(KeyError):
        transport._wrapped_methods[lambda request: None]


def test_batch_create_returns_a_finished_operation_through_the_real_client() -> None:
    from datetime import datetime, timezone

    from fastapi_cloud_tasks.engine.clock import VirtualClock
    from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine

    engine = CloudTasksEngine(VirtualClock(datetime(2026, 1, 1, tzinfo=timezone.utc)))
    client = tasks_client(engine)
    queue = "projects/p/locations/l/queues/q"
    requests = [
        tasks_v2.CreateTaskRequest(
            parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="http://w/x"))
        )
        for _ in range(3)
    ]

    operation = client.batch_create_tasks(parent=queue, requests=requests)

    assert operation.done()
    assert len(operation.result().tasks) == 3
    assert len(engine.pending(queue)) == 3
