from __future__ import annotations

import os

# Loaded before any pytester run: an in-process run drops the modules first imported during
# it, and the next run's fresh copies then sit beside kept references to the old ones (the
# package attribute `fastapi_cloud_tasks.clients`, which `from fastapi_cloud_tasks import
# clients` reads; FastAPI's routing classes, which made a mounted app answer 307).
import fastapi.routing  # noqa: F401
import pytest
from google.cloud import scheduler_v1, tasks_v2

import fastapi_cloud_tasks.clients  # noqa: F401
from fastapi_cloud_tasks.engine.transports import scheduler_client, tasks_client
from tests.recording import RecordingScheduler, RecordingTasks

QUEUE = "projects/test-project/locations/asia-south1/queues/test-queue"
LOCATION = "projects/test-project/locations/asia-south1"
BASE_URL = "https://worker.example.com"

# The README has users export these for the emulator; the suite's default clients (and every
# subprocess it starts) must not follow a developer's shell. Tests that want one set it.
for _variable in ("CLOUD_TASKS_EMULATOR_HOST", "CLOUD_SCHEDULER_EMULATOR_HOST"):
    os.environ.pop(_variable, None)


@pytest.fixture
def tasks_service() -> RecordingTasks:
    return RecordingTasks()


@pytest.fixture
def recording_client(tasks_service: RecordingTasks) -> tasks_v2.CloudTasksClient:
    return tasks_client(tasks_service)


@pytest.fixture
def scheduler_service() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def recording_scheduler(scheduler_service: RecordingScheduler) -> scheduler_v1.CloudSchedulerClient:
    return scheduler_client(scheduler_service)
