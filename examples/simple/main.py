"""The smallest app: one task, triggered from a request.

Locally it talks to the emulator (`python -m fastapi_cloud_tasks.emulator`) when
CLOUD_TASKS_EMULATOR_HOST is set, as the emulator's READY output prints it; on Google Cloud,
leave it unset and it uses your credentials.
"""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from fastapi_cloud_tasks import DelayedRouteBuilder, delayed_task, queue_path

logger = logging.getLogger("examples.simple")

# One route class for the whole project: where the worker lives and which queue to use.
DelayedRoute = DelayedRouteBuilder(
    base_url=os.environ.get("WORKER_URL", "http://localhost:8000"),
    queue_path=queue_path(project="gcp-project-id", location="asia-south1", queue="test-queue"),
)

delayed_router = APIRouter(route_class=DelayedRoute, prefix="/delayed")


class Payload(BaseModel):
    message: str


DEFAULT_PAYLOAD = Payload(message="Default")


@delayed_task  # `hello.delay(...)` is now checked by mypy and pyright
@delayed_router.post("/hello")
async def hello(p: Payload = DEFAULT_PAYLOAD) -> None:
    logger.warning("Hello task ran with payload: %s", p.message)


app = FastAPI()


@app.get("/trigger")
async def trigger() -> dict[str, str]:
    await hello.adelay(p=Payload(message="Triggered task"))
    return {"message": "Hello task triggered"}


app.include_router(delayed_router)
