"""What a type checker sees of a user's app: run under mypy --strict and pyright (tox -e typing).

Each `# type: ignore[...]` / `# pyright: ignore[...]` marks a call that must be an error: with
`warn_unused_ignores` and `reportUnnecessaryTypeIgnoreComment`, a wrong call that stopped being
caught fails the run as surely as a right call that stopped type-checking.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header
from google.cloud import scheduler_v1, tasks_v2
from pydantic import BaseModel
from typing_extensions import assert_type

from fastapi_cloud_tasks import (
    CloudTasksHeaders,
    DelayedRouteBuilder,
    ScheduledJob,
    ScheduledRouteBuilder,
    TaskDelayer,
    delayed_task,
    location_path,
    queue_path,
    scheduled_task,
    task_default_options,
)

WORKER = "https://worker.example.com"
tasks = APIRouter(
    route_class=DelayedRouteBuilder(
        base_url=WORKER, queue_path=queue_path("my-project", "asia-south1", "default")
    ),
    prefix="/tasks",
)
jobs = APIRouter(
    route_class=ScheduledRouteBuilder(
        base_url=WORKER, location_path=location_path("my-project", "asia-south1")
    ),
)


class Recipe(BaseModel):
    ingredients: list[str]


@delayed_task
@tasks.post("/{restaurant}/make_dinner")
async def make_dinner(restaurant: str, recipe: Recipe, guests: int = 2) -> None: ...


@delayed_task
@task_default_options(countdown=60)
@tasks.post("/audit")
def audit(
    event: str,
    x_trace: Annotated[str | None, Header()] = None,
    ct: CloudTasksHeaders = Depends(),  # filled in by FastAPI: a default keeps it optional
) -> str:
    return event


@tasks.post("/plain")
async def plain(n: int) -> None: ...


@scheduled_task
@jobs.post("/home_cook")
async def home_cook(recipe: Recipe) -> None: ...


app = FastAPI()
app.include_router(tasks)
app.include_router(jobs)

dinner = Recipe(ingredients=["Dal"])

# The correct calls, and what they return.
assert_type(make_dinner.delay(restaurant="Taj", recipe=dinner), tasks_v2.Task)
assert_type(make_dinner.delay("Taj", dinner, guests=4), tasks_v2.Task)
later: TaskDelayer[...] = make_dinner.options(countdown=1800)
assert_type(
    make_dinner.options(countdown=timedelta(minutes=30), task_id="x").delay(
        restaurant="Taj", recipe=dinner
    ),
    tasks_v2.Task,
)
assert_type(audit.delay(event="login"), tasks_v2.Task)
assert_type(audit("login"), str)  # calling the task calls the endpoint
assert_type(delayed_task(plain).delay(n=1), tasks_v2.Task)
job = home_cook.scheduler(name="breakfast", schedule="0 7 * * *", time_zone="Asia/Kolkata")
as_job: ScheduledJob[...] = job
assert_type(job.schedule(recipe=dinner), scheduler_v1.Job)


async def sends_without_blocking() -> None:
    assert_type(await make_dinner.adelay(restaurant="Taj", recipe=dinner), tasks_v2.Task)


# The wrong calls: each is an error for both checkers.
make_dinner.delay(restaurant="Taj", recipe=dinner, guest=3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
make_dinner.delay(restaurant="Taj", recipe=["Dal"])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
make_dinner.delay(restaurant="Taj")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
make_dinner.options(countdwn=1800)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
make_dinner.options(countdown="soon")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
delayed_task(plain).delay(n="1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
job.schedule(recipe="Dal")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
home_cook.scheduler(name="x", schedule="0 7 * * *", timezone="UTC")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


@task_default_options(count_down=5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
async def misspelled_default() -> None: ...
