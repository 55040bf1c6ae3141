"""pytest plugin for fastapi_cloud_tasks: capture Cloud Tasks, fast-forward a virtual clock and
deliver every task into the app with the headers and retries of the real service."""

from pytest_cloudtasks.captured import CapturedJob, CapturedTask
from pytest_cloudtasks.harness import Attempt, Harness, HarnessConfig, TaskFailed
from pytest_cloudtasks.queue import CloudTasksQueue
from pytest_cloudtasks.scheduler import CloudTasksScheduler

__all__ = [
    # Fixture objects
    "CloudTasksQueue",
    "CloudTasksScheduler",
    "CapturedJob",
    "CapturedTask",
    "Attempt",
    "Harness",
    "HarnessConfig",
    # Exceptions
    "TaskFailed",
]
