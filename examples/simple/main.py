"""The smallest app: one task, triggered from a request.

Locally it talks to the emulator (`python -m fastapi_cloud_tasks.emulator`); on Google Cloud,
unset CLOUD_TASKS_EMULATOR and it uses your credentials.
"""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from fastapi_cloud_tasks import DelayedRouteBuilder, emulator_client, queue_path

logger = logging.getLogger("examples.simple")

EMULATOR = os.environ.get("CLOUD_TASKS_EMULATOR")  # e.g. "localhost:8123"

# One route class for the whole project: where the worker lives and which queue to use.
DelayedRoute = DelayedRouteBuilder(
    client=emulator_client(EMULATOR) if EMULATOR else None,
    base_url=os.environ.get("WORKER_URL", "http://localhost:8000"),
    queue_path=queue_path(project="gcp-project-id", location="asia-south1", queue="test-queue"),
)

delayed_router = APIRouter(route_class=DelayedRoute, prefix="/delayed")


class Payload(BaseModel):
    message: str


DEFAULT_PAYLOAD = Payload(message="Default")


@delayed_router.post("/hello")
async def hello(p: Payload = DEFAULT_PAYLOAD) -> None:
    logger.warning("Hello task ran with payload: %s", p.message)


app = FastAPI()


@app.get("/trigger")
async def trigger() -> dict[str, str]:
    await hello.adelay(p=Payload(message="Triggered task"))
    return {"message": "Hello task triggered"}


app.include_router(delayed_router)
