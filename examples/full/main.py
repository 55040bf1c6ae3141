"""Every feature in one app: plain, delayed and deduplicated tasks, retries, an
OIDC-authenticated worker and a scheduled job.

Run it against the emulator or Google Cloud (see the README); `python -m examples.demo` runs
the whole flow in-process on a virtual clock.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from google.api_core.exceptions import AlreadyExists
from google.cloud import scheduler_v1, tasks_v2
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    GOOGLE_CERTS_URL,
    CloudSchedulerHeaders,
    CloudTasksHeaders,
    DelayedRouteBuilder,
    ScheduledRouteBuilder,
    delayed_task,
    location_path,
    max_retries,
    oidc_delayed_hook,
    queue_path,
    scheduled_task,
    task_default_options,
    verify_cloud_tasks_token,
)

logger = logging.getLogger("examples.full")

PROJECT = os.environ.get("GCP_PROJECT", "gcp-project-id")
LOCATION = os.environ.get("GCP_LOCATION", "asia-south1")
WORKER_URL = os.environ.get("WORKER_URL", "http://localhost:8000")
# No client= below: with CLOUD_TASKS_EMULATOR_HOST / CLOUD_SCHEDULER_EMULATOR_HOST set (e.g.
# "localhost:8123") tasks and jobs go to the emulator, otherwise to Google Cloud.
SERVICE_ACCOUNT = f"fastapi-cloud-tasks@{PROJECT}.iam.gserviceaccount.com"
# Where the worker gets the keys ID tokens are signed with: Google's, or the emulator's.
CERTS_URL = os.environ.get("OIDC_CERTS_URL", GOOGLE_CERTS_URL)

DelayedRoute = DelayedRouteBuilder(
    base_url=WORKER_URL,
    queue_path=queue_path(PROJECT, LOCATION, "test-queue"),
)
# Tasks for a worker that checks Google-signed ID tokens (Cloud Run with IAM, or your own).
AuthenticatedRoute = DelayedRouteBuilder(
    base_url=WORKER_URL,
    queue_path=queue_path(PROJECT, LOCATION, "secure-queue"),
    pre_create_hook=oidc_delayed_hook(
        tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT, audience=WORKER_URL)
    ),
)
ScheduledRoute = ScheduledRouteBuilder(
    base_url=WORKER_URL,
    location_path=location_path(PROJECT, LOCATION),
)

tasks = APIRouter(route_class=DelayedRoute, prefix="/tasks")
verify_worker_token = verify_cloud_tasks_token(
    audience=WORKER_URL, service_accounts=[SERVICE_ACCOUNT], certs_url=CERTS_URL
)
# Every route of this router admits only Google-signed tokens of our service account.
secure_tasks = APIRouter(route_class=AuthenticatedRoute, prefix="/secure",
                         dependencies=[Depends(verify_worker_token)])
scheduled = APIRouter(route_class=ScheduledRoute, prefix="/scheduled")


class Payload(BaseModel):
    message: str


class Recipe(BaseModel):
    ingredients: list[str]


# @delayed_task makes each name the endpoint's typed task: mypy and pyright check `.delay()`
# against the endpoint's parameters. What FastAPI fills in (here `ct`) takes a default, so a
# type checker does not ask the caller for it.
@delayed_task
@tasks.post("/hello")
async def hello(p: Payload, ct: CloudTasksHeaders = Depends()) -> None:
    logger.warning("hello ran: %r (task %s, attempt %d)", p.message, ct.task_name,
                   ct.retry_count + 1)


@delayed_task
@tasks.post("/{restaurant}/make_dinner")
@task_default_options(countdown=1800)  # dinner is always cooked 30 minutes later
async def make_dinner(restaurant: str, recipe: Recipe) -> None:
    logger.warning("make_dinner ran at %s with %s", restaurant, ", ".join(recipe.ingredients))


@delayed_task
@tasks.post("/fail_twice", dependencies=[Depends(max_retries(5))])
async def fail_twice(ct: CloudTasksHeaders = Depends()) -> None:
    if ct.retry_count < 2:
        logger.warning("fail_twice failing on attempt %d", ct.retry_count + 1)
        raise HTTPException(status_code=503, detail="not yet")
    logger.warning("fail_twice succeeded on attempt %d (previous response %s)",
                   ct.retry_count + 1, ct.previous_response)


@delayed_task
@secure_tasks.post("/audit")
async def audit(event: str, claims: dict[str, Any] = Depends(verify_worker_token)) -> None:
    # The router already verified the token; FastAPI hands this endpoint the same result.
    logger.warning("audit ran for %r, called by %s", event, claims["email"])


@scheduled_task
@scheduled.post("/home_cook")
async def home_cook(recipe: Recipe, job: CloudSchedulerHeaders = Depends()) -> None:
    logger.warning("home_cook (%s) ran for the %s occurrence: %s", job.job_name,
                   job.schedule_time.isoformat() if job.schedule_time else "manual",
                   ", ".join(recipe.ingredients))


breakfast = home_cook.scheduler(
    name="test-home-cook-at-7AM-IST", schedule="0 7 * * *", time_zone="Asia/Kolkata",
    retry_config=scheduler_v1.RetryConfig(retry_count=2),
)

app = FastAPI(title="fastapi-cloud-tasks full example")


@app.post("/trigger/hello")
async def trigger_hello(message: str = "Triggered task") -> dict[str, str]:
    task = await hello.adelay(p=Payload(message=message))
    return {"task": task.name}


@app.post("/trigger/dinner")
async def trigger_dinner(countdown: float | None = None) -> dict[str, str]:
    recipe = Recipe(ingredients=["Pav", "Bhaji"])
    # The endpoint's default countdown (30 min) unless the caller asks for another.
    delayer = make_dinner if countdown is None else make_dinner.options(countdown=countdown)
    task = await delayer.adelay(restaurant="Taj", recipe=recipe)
    return {"task": task.name}


@app.post("/trigger/order/{order_id}")
async def trigger_order(order_id: str) -> dict[str, str]:
    """Deduplicated: one task per order id, however often this is called."""
    try:
        task = await hello.options(task_id=f"order-{order_id}").adelay(
            p=Payload(message=f"order {order_id}")
        )
    except AlreadyExists:
        raise HTTPException(status_code=409, detail=f"order {order_id} is already queued") from None
    return {"task": task.name}


@app.post("/trigger/flaky")
async def trigger_flaky() -> dict[str, str]:
    task = await fail_twice.adelay()
    return {"task": task.name}


@app.post("/trigger/audit")
async def trigger_audit(event: str = "login") -> dict[str, str]:
    task = await audit.adelay(event=event)
    return {"task": task.name}


@app.post("/schedule")
def schedule_breakfast() -> dict[str, str]:
    job = breakfast.schedule(recipe=Recipe(ingredients=["Milk", "Cereal"]))
    return {"job": job.name}


app.include_router(tasks)
app.include_router(secure_tasks)
app.include_router(scheduled)
