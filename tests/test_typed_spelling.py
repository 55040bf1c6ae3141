"""`delayed_task()` / `scheduled_task()`: the typed spelling of `.delay()` and `.scheduler()`,
at run time (tests/typing checks what mypy and pyright make of it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from google.cloud import scheduler_v1, tasks_v2
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    CloudTasksHeaders,
    DelayedRouteBuilder,
    DelayedTask,
    ScheduledRouteBuilder,
    ScheduledTask,
    TaskOptionArgs,
    UnknownParamError,
    UnsupportedRouteError,
    delayed_task,
    scheduled_task,
    task_default_options,
)
from fastapi_cloud_tasks.options import TaskOptions
from tests.conftest import BASE_URL, LOCATION, QUEUE
from tests.recording import RecordingScheduler, RecordingTasks, deliver_task


class Recipe(BaseModel):
    ingredients: list[str]


def task_router(client: tasks_v2.CloudTasksClient) -> APIRouter:
    route_class = DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE, client=client)
    return APIRouter(route_class=route_class, prefix="/tasks")


def test_the_decorated_name_is_the_task_and_sends_the_same_request(
    recording_client: tasks_v2.CloudTasksClient, tasks_service: RecordingTasks
) -> None:
    router = task_router(recording_client)

    @delayed_task
    @router.post("/{restaurant}/make_dinner")
    async def make_dinner(restaurant: str, recipe: Recipe) -> None: ...

    assert isinstance(make_dinner, DelayedTask)
    assert make_dinner.__name__ == "make_dinner"
    make_dinner.delay(restaurant="Taj", recipe=Recipe(ingredients=["Dal"]))
    make_dinner.delay("Taj", Recipe(ingredients=["Dal"]))  # positionally, as P allows
    by_keyword, by_position = (r.task.http_request for r in tasks_service.requests)
    assert by_keyword.url == by_position.url == f"{BASE_URL}/tasks/Taj/make_dinner"
    assert by_keyword.body == by_position.body == b'{"ingredients":["Dal"]}'


def test_delayed_of_an_undecorated_endpoint_is_its_task(
    recording_client: tasks_v2.CloudTasksClient, tasks_service: RecordingTasks
) -> None:
    router = task_router(recording_client)

    @router.post("/ping")
    def ping(n: int) -> int:
        return n

    task = delayed_task(ping)
    assert task is delayed_task(ping) is delayed_task(task)
    assert task.options(countdown=60).delay(3).http_request.url == f"{BASE_URL}/tasks/ping?n=3"
    assert ping.delay is not None  # the seed spelling still works at run time
    assert task(4) == 4  # calling the task calls the endpoint


def test_the_task_is_still_served_by_the_app(
    recording_client: tasks_v2.CloudTasksClient, tasks_service: RecordingTasks
) -> None:
    router = task_router(recording_client)
    served: list[Any] = []

    @delayed_task
    @router.post("/audit")
    def audit(event: str, ct: CloudTasksHeaders = Depends()) -> None:
        served.append((event, ct.task_name))

    app = FastAPI()
    app.include_router(router)
    task = audit.delay(event="login")
    assert deliver_task(TestClient(app), task).status_code == 200
    assert served == [("login", "")]  # no X-CloudTasks-TaskName outside Cloud Tasks


def test_positional_arguments_beyond_the_endpoint_or_given_twice_are_refused(
    recording_client: tasks_v2.CloudTasksClient, tasks_service: RecordingTasks
) -> None:
    router = task_router(recording_client)

    @delayed_task
    @router.post("/ping")
    def ping(n: int) -> None: ...

    with pytest.raises(UnknownParamError) as excinfo:
        ping.delay(1, 2)  # type: ignore[call-arg]
    assert "#2: positional argument beyond the endpoint's 1 positional" in str(excinfo.value)
    with pytest.raises(UnknownParamError, match="n: given both by position and by keyword"):
        ping.delay(1, n=2)  # type: ignore[misc]
    assert tasks_service.requests == []


def test_delayed_below_the_route_decorator_or_on_a_plain_function_says_what_to_do() -> None:
    def plain(n: int) -> None: ...

    with pytest.raises(UnsupportedRouteError, match=r"put @delayed_task above the route decorator"):
        delayed_task(plain)
    with pytest.raises(UnsupportedRouteError, match=r"put @scheduled_task above the route"):
        scheduled_task(plain)


def test_task_default_options_above_delayed_set_the_endpoint_defaults(
    recording_client: tasks_v2.CloudTasksClient, tasks_service: RecordingTasks
) -> None:
    router = task_router(recording_client)

    @task_default_options(task_id="only-once")
    @delayed_task
    @router.post("/ping")
    def ping() -> None: ...

    assert isinstance(ping, DelayedTask)
    assert ping.delay().name == f"{QUEUE}/tasks/only-once"


def test_adelay_of_the_typed_task(
    recording_client: tasks_v2.CloudTasksClient, tasks_service: RecordingTasks
) -> None:
    router = task_router(recording_client)

    @delayed_task
    @router.post("/ping")
    async def ping(n: int) -> None: ...

    task = asyncio.run(ping.adelay(7))
    assert task.http_request.url == f"{BASE_URL}/tasks/ping?n=7"


def test_scheduled_types_the_job_and_sends_the_same_job(
    recording_scheduler: scheduler_v1.CloudSchedulerClient, scheduler_service: RecordingScheduler
) -> None:
    route_class = ScheduledRouteBuilder(
        base_url=BASE_URL, location_path=LOCATION, client=recording_scheduler
    )
    router = APIRouter(route_class=route_class)

    @scheduled_task
    @router.post("/home_cook")
    async def home_cook(recipe: Recipe) -> None: ...

    assert isinstance(home_cook, ScheduledTask)
    job = home_cook.scheduler(name="breakfast", schedule="0 7 * * *")
    created = job.schedule(Recipe(ingredients=["Milk"]))
    assert created.http_target.uri == f"{BASE_URL}/home_cook"
    assert created.http_target.body == b'{"ingredients":["Milk"]}'


def test_the_typed_options_name_every_task_option() -> None:
    assert set(TaskOptionArgs.__annotations__) == TaskOptions.names()
