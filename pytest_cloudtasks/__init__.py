"""pytest plugin for fastapi_cloud_tasks: capture Cloud Tasks, fast-forward a virtual clock and
deliver every task into the app with the headers and retries of the real service.

The names below are imported on first use: pytest imports this package with the plugin at every
start, and they bring in FastAPI, Google's clients and the `[testing]` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi_cloud_tasks.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pytest_cloudtasks.captured import CapturedJob, CapturedTask
    from pytest_cloudtasks.errors import (
        AssertionArgumentsError,
        ClientOutsideFixtureError,
        CloudTasksUsageError,
        PytestCloudTasksError,
        TaskFailed,
        TaskRoutingError,
    )
    from pytest_cloudtasks.harness import Attempt, Harness, HarnessConfig, PublishedMessage
    from pytest_cloudtasks.lifespan import LifespanFailed
    from pytest_cloudtasks.queue import CloudTasksQueue
    from pytest_cloudtasks.runaway import RunawayError
    from pytest_cloudtasks.scheduler import CloudTasksScheduler
    from pytest_cloudtasks.wsgi import WSGIApp

__all__ = [
    # Fixture objects
    "CloudTasksQueue",
    "CloudTasksScheduler",
    "CapturedJob",
    "CapturedTask",
    "Attempt",
    "Harness",
    "HarnessConfig",
    "PublishedMessage",
    # Serving a WSGI app that is not recognised as one
    "WSGIApp",
    # Exceptions
    "PytestCloudTasksError",
    "TaskFailed",
    "CloudTasksUsageError",
    "TaskRoutingError",
    "AssertionArgumentsError",
    "ClientOutsideFixtureError",
    "LifespanFailed",
    "RunawayError",
]

_MODULES = {
    "CloudTasksQueue": "queue",
    "CloudTasksScheduler": "scheduler",
    "CapturedJob": "captured",
    "CapturedTask": "captured",
    "Attempt": "harness",
    "Harness": "harness",
    "HarnessConfig": "harness",
    "PublishedMessage": "harness",
    "WSGIApp": "wsgi",
    "PytestCloudTasksError": "errors",
    "TaskFailed": "errors",
    "CloudTasksUsageError": "errors",
    "TaskRoutingError": "errors",
    "AssertionArgumentsError": "errors",
    "ClientOutsideFixtureError": "errors",
    "LifespanFailed": "lifespan",
    "RunawayError": "runaway",
}


def _explain_missing(exc: ModuleNotFoundError, name: str) -> str | None:
    if exc.name != "httpx":  # the one extra these modules import at load
        return None
    from pytest_cloudtasks.extras import missing_message

    return missing_message(exc.name, f"pytest_cloudtasks.{name}")


if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, _MODULES, _explain_missing)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
